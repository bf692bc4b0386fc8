//! The layout rules DESIGN.md sets, checked on the source: no import circles between the
//! crate's modules (at the level of top-level modules, and of files inside each), and no
//! function in `src/search/` longer than [`MAX_SEARCH_FN_LINES`] lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest function `src/search/` may hold (signature to closing brace).
const MAX_SEARCH_FN_LINES: usize = 80;

/// A module path, e.g. `["search", "runner"]`.
type ModPath = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file below `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The module a file defines (`src/search/mod.rs` → `search`, `src/search/runner.rs` →
/// `search::runner`).
fn module_of(file: &Path) -> ModPath {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: ModPath = rel.iter().map(|s| s.to_string_lossy().into()).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments, string contents and its unit-test module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines()
        .map(|l| l.split("//").next().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths after `crate::` or `super::` in `code`, with `{a, b::c}` groups expanded.
fn referenced_paths(code: &str) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for (prefix, is_crate) in [("crate::", true), ("super::", false)] {
        for (i, _) in code.match_indices(prefix) {
            let before = code[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[i + prefix.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    out.push((is_crate, segments(item.trim())));
                }
            } else {
                out.push((is_crate, segments(rest)));
            }
        }
    }
    out
}

/// The identifier segments at the start of a path like `a::b::C;`.
fn segments(s: &str) -> Vec<String> {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end]
        .split("::")
        .filter(|x| !x.is_empty())
        .map(String::from)
        .collect()
}

/// Which modules each module refers to, collapsed to the first `depth` path segments.
fn graph(depth: usize) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let files = rust_files(&src());
    let modules: BTreeSet<ModPath> = files.iter().map(|f| module_of(f)).collect();
    let resolve = |path: Vec<String>| -> Option<ModPath> {
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| modules.contains(m))
    };
    let mut g: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for f in &files {
        let m = module_of(f);
        let from: ModPath = m.iter().take(depth).cloned().collect();
        let text = code(&std::fs::read_to_string(f).unwrap());
        for (is_crate, segs) in referenced_paths(&text) {
            let mut base: ModPath = if is_crate {
                vec![]
            } else {
                m[..m.len().saturating_sub(1)].to_vec()
            };
            base.extend(segs);
            let Some(target) = resolve(base) else {
                continue;
            };
            let to: ModPath = target.into_iter().take(depth).collect();
            let nested = from.starts_with(&to) || to.starts_with(&from);
            if !nested {
                g.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// A cycle through `start` in `g`, if there is one.
fn cycle_from(g: &BTreeMap<ModPath, BTreeSet<ModPath>>, start: &ModPath) -> Option<Vec<String>> {
    let mut stack = vec![(start.clone(), vec![start.join("::")])];
    let mut seen = BTreeSet::new();
    while let Some((m, path)) = stack.pop() {
        for next in g.get(&m).into_iter().flatten() {
            if next == start {
                return Some([path.clone(), vec![start.join("::")]].concat());
            }
            if seen.insert(next.clone()) {
                stack.push((next.clone(), [path.clone(), vec![next.join("::")]].concat()));
            }
        }
    }
    None
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    for depth in [1, 2] {
        let g = graph(depth);
        assert!(g.len() > 5, "the source was not read: {g:?}");
        let cycles: Vec<String> = g
            .keys()
            .filter_map(|m| cycle_from(&g, m))
            .map(|c| c.join(" → "))
            .collect();
        assert!(cycles.is_empty(), "import circles: {cycles:#?}");
    }
}

/// The detector finds a circle when there is one.
#[test]
fn the_circle_check_sees_a_circle() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string()];
    let mut g = BTreeMap::new();
    g.insert(a.clone(), BTreeSet::from([b.clone()]));
    g.insert(b.clone(), BTreeSet::from([a.clone()]));
    assert_eq!(cycle_from(&g, &a).unwrap(), ["a", "b", "a"]);
    let paths = referenced_paths("use super::{x, y::Z};\nlet v = crate::io::npy::read();");
    assert!(
        paths.contains(&(false, vec!["y".into(), "Z".into()])),
        "{paths:?}"
    );
    assert!(paths.contains(&(true, vec!["io".into(), "npy".into(), "read".into()])));
}

#[test]
fn no_function_in_search_exceeds_the_limit() {
    let mut long = Vec::new();
    for f in rust_files(&src().join("search")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let is_fn = t.starts_with("fn ") || t.starts_with("pub fn ") || t.starts_with("pub(");
            if !is_fn || !t.contains("fn ") || t.ends_with(';') {
                continue;
            }
            let indent = line.len() - t.len();
            let close = " ".repeat(indent) + "}";
            let end = lines[i..].iter().position(|l| *l == close).map(|n| i + n);
            if let Some(end) = end
                && end - i + 1 > MAX_SEARCH_FN_LINES
            {
                long.push(format!("{}:{} ({} lines)", f.display(), i + 1, end - i + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_SEARCH_FN_LINES} lines: {long:#?}"
    );
}
