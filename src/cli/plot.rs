//! `s3 runs plot RUN… --out curve.png|svg`: the search curves — best-so-far metric value
//! against evaluations — of one or more runs on one picture (the equal-budget comparison of
//! strategies), with each run's best classic seed as a dashed horizontal line.

use super::out::outln;
use super::plot_text::GlyphText;
use super::run_data::{Classic, CurvePoint, RunTrials, load_runs, warn_unequal};
use super::store_arg::StoreArg;
use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::path::Path;

/// Picture width and height in pixels (SVG and PNG alike).
const SIZE: (u32, u32) = (1000, 620);
/// Space around the chart, in pixels.
const MARGIN: u32 = 16;
/// Height of the x axis' tick labels and description, in pixels.
const X_LABEL_AREA: u32 = 56;
/// Width of the y axis' tick labels and description, in pixels.
const Y_LABEL_AREA: u32 = 84;
/// Font sizes (plotters' units) of the caption, the axes and the legend.
const CAPTION_FONT: u32 = 24;
const AXIS_FONT: u32 = 17;
const LEGEND_FONT: u32 = 16;
/// Stroke width of a run's curve and of a classic line.
const CURVE_WIDTH: u32 = 2;
const CLASSIC_WIDTH: u32 = 1;
/// Dash and gap lengths of a classic line, in pixels.
const DASH: u32 = 8;
const DASH_GAP: u32 = 6;
/// Length of a legend's line sample, in pixels.
const LEGEND_LINE: i32 = 24;
/// The y axis is logarithmic when the values span more than this factor (a decade).
const LOG_SCALE_SPAN: f64 = 10.0;
/// Room above and below the values: a share of the range (linear) or a factor (log).
const LINEAR_PAD: f64 = 0.05;
const LOG_PAD: f64 = 1.1;
/// The legend's height per entry and its padding, and the plot area's height, in pixels
/// (approximate: they set the room left above the curves for the legend).
const LEGEND_ROW_PX: f64 = 20.0;
const LEGEND_PAD_PX: f64 = 16.0;
const PLOT_HEIGHT_PX: f64 = 480.0;
/// Significant digits of a y tick label.
const TICK_DIGITS: i32 = 3;
/// Opacity of the legend's background.
const LEGEND_BACKGROUND: f64 = 0.9;
/// Run colours, in order (Tableau 10), and the colour of a classic line shared by runs.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const SHARED_CLASSIC: RGBColor = RGBColor(60, 60, 60);

/// The picture's file format, from the `--out` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Png,
    Svg,
}

/// Reads the format from `--out`'s extension (`png` or `svg`, any case).
fn format_of(out: &Path) -> Result<Format> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        _ => bail!(
            "--out {}: expected a file name ending in .png or .svg (the picture's format comes from the extension)",
            out.display()
        ),
    }
}

/// A line on the picture: a run's curve as stairs, or a classic value across the width.
struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(usize, f64)>,
}

/// What the picture shows.
struct Picture {
    caption: String,
    metric: String,
    curves: Vec<Line>,
    classics: Vec<Line>,
    x_max: usize,
    y: (f64, f64),
    log_y: bool,
}

/// The best-so-far curve as a step line: each improvement drops vertically at its trial.
fn stairs(curve: &[CurvePoint]) -> Vec<(usize, f64)> {
    let mut points = Vec::new();
    let mut prev: Option<f64> = None;
    for p in curve {
        let Some(best) = p.best else { continue };
        if let Some(before) = prev.filter(|&b| b != best) {
            points.push((p.evaluations, before));
        }
        points.push((p.evaluations, best));
        prev = Some(best);
    }
    points
}

/// One dashed line per distinct best classic seed: runs that share it (the same solver and
/// value, as runs on one dataset do) share one line in a neutral colour.
fn classic_lines(runs: &[RunTrials], x_max: usize) -> Vec<Line> {
    let mut groups: Vec<(Classic, Vec<usize>)> = Vec::new();
    for (i, c) in runs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.best_classic()?)))
    {
        match groups.iter_mut().find(|(g, _)| *g == c) {
            Some((_, members)) => members.push(i),
            None => groups.push((c, vec![i])),
        }
    }
    groups
        .into_iter()
        .map(|(c, members)| {
            let (who, color) = match members.as_slice() {
                [only] => (runs[*only].id.clone(), PALETTE[*only % PALETTE.len()]),
                _ if members.len() == runs.len() => ("all runs".to_string(), SHARED_CLASSIC),
                _ => {
                    let ids: Vec<&str> = members.iter().map(|&i| runs[i].id.as_str()).collect();
                    (ids.join(", "), SHARED_CLASSIC)
                }
            };
            Line {
                label: format!("best classic ({who}): {} = {:.4}", c.label, c.value),
                color,
                points: vec![(0, c.value), (x_max, c.value)],
            }
        })
        .collect()
}

/// The share of the plot's height the legend takes: the room left above the highest value
/// so the legend (top right) covers no line.
fn legend_share(rows: usize) -> f64 {
    let legend = (rows as f64 * LEGEND_ROW_PX + LEGEND_PAD_PX).min(PLOT_HEIGHT_PX / 2.0);
    legend / PLOT_HEIGHT_PX
}

/// The y range of every point drawn, padded, with room above for `legend_rows` legend
/// entries, and whether it is shown on a log scale.
fn y_range(lines: &[&Line], legend_rows: usize) -> (f64, f64, bool) {
    let values = lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let share = legend_share(legend_rows);
    let headroom = |lo: f64, hi: f64| hi + (hi - lo) * share / (1.0 - share);
    if lo > 0.0 && hi / lo > LOG_SCALE_SPAN {
        let (lo, hi) = ((lo / LOG_PAD).ln(), (hi * LOG_PAD).ln());
        return (lo.exp(), headroom(lo, hi).exp(), true);
    }
    let pad = if hi > lo {
        (hi - lo) * LINEAR_PAD
    } else {
        lo.abs().max(1.0) * LINEAR_PAD
    };
    let (lo, hi) = (lo - pad, hi + pad);
    (lo, headroom(lo, hi), false)
}

/// The caption: the metric, and the dataset and NFE when every run shares them.
fn caption(runs: &[RunTrials], metric: &str) -> String {
    let first = &runs[0].config;
    let same = runs
        .iter()
        .all(|r| r.config.dataset == first.dataset && r.config.nfe == first.nfe);
    if same {
        format!("best {metric} so far: {}, NFE {}", first.dataset, first.nfe)
    } else {
        format!("best {metric} so far")
    }
}

/// Gathers the picture's lines from the runs; an error if no run has a finished trial.
fn picture(runs: &[RunTrials]) -> Result<Picture> {
    let metrics: Vec<String> = runs.iter().map(RunTrials::metric_label).collect();
    let metric = if metrics.windows(2).all(|w| w[0] == w[1]) {
        metrics[0].clone()
    } else {
        "value".to_string()
    };
    let curves: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| Line {
            label: format!("{} ({})", r.id, r.config.strategy.as_str()),
            color: PALETTE[i % PALETTE.len()],
            points: stairs(&r.curve()),
        })
        .collect();
    if curves.iter().all(|c| c.points.is_empty()) {
        let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
        bail!("nothing to plot: no finished trial in {}", ids.join(", "));
    }
    let x_max = runs.iter().map(RunTrials::evaluated).max().unwrap_or(0);
    let classics = classic_lines(runs, x_max);
    let lines: Vec<&Line> = curves.iter().chain(&classics).collect();
    let (lo, hi, log_y) = y_range(&lines, lines.len());
    Ok(Picture {
        caption: caption(runs, &metric),
        metric,
        curves,
        classics,
        x_max,
        y: (lo, hi),
        log_y,
    })
}

/// A tick label with [`TICK_DIGITS`] significant digits.
fn tick(v: &f64) -> String {
    if *v == 0.0 {
        return "0".into();
    }
    let decimals = (TICK_DIGITS - 1 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.decimals$}")
}

/// A plotters error as an error naming what failed.
fn drawing<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> Result<T> {
    r.map_err(|e| anyhow!("drawing the plot: {e}"))
}

/// Draws the chart on `root` with the y coordinate `y` (linear or logarithmic).
fn draw_chart<DB, Y>(root: &DrawingArea<DB, Shift>, y: Y, p: &Picture) -> Result<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = drawing(
        ChartBuilder::on(root)
            .caption(&p.caption, ("sans-serif", CAPTION_FONT))
            .margin(MARGIN)
            .x_label_area_size(X_LABEL_AREA)
            .y_label_area_size(Y_LABEL_AREA)
            .build_cartesian_2d(0..p.x_max, y),
    )?;
    drawing(
        chart
            .configure_mesh()
            .x_desc("evaluations (trials counted against the budget, in trial order)")
            .y_desc(format!("best {} so far", p.metric))
            .y_label_formatter(&tick)
            .label_style(("sans-serif", AXIS_FONT))
            .axis_desc_style(("sans-serif", AXIS_FONT))
            .draw(),
    )?;
    for line in &p.curves {
        let style = line.color.stroke_width(CURVE_WIDTH);
        drawing(chart.draw_series(LineSeries::new(line.points.iter().copied(), style)))?
            .label(&line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + LEGEND_LINE, y)], style));
    }
    for line in &p.classics {
        let style = line.color.stroke_width(CLASSIC_WIDTH);
        let dashes = DashedLineSeries::new(line.points.iter().copied(), DASH, DASH_GAP, style);
        drawing(chart.draw_series(dashes))?
            .label(&line.label)
            .legend(move |(x, y)| {
                let half = (LEGEND_LINE - DASH_GAP as i32) / 2;
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (half, 0)], style)
                    + PathElement::new(vec![(LEGEND_LINE - half, 0), (LEGEND_LINE, 0)], style)
            });
    }
    drawing(
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(LEGEND_BACKGROUND))
            .border_style(BLACK)
            .label_font(("sans-serif", LEGEND_FONT))
            .draw(),
    )
}

/// Draws the whole picture on a backend.
fn draw<DB: DrawingBackend>(backend: DB, p: &Picture) -> Result<()> {
    let root = backend.into_drawing_area();
    drawing(root.fill(&WHITE))?;
    let (lo, hi) = p.y;
    if p.log_y {
        draw_chart(&root, (lo..hi).log_scale(), p)?;
    } else {
        draw_chart(&root, lo..hi, p)?;
    }
    drawing(root.present())
}

/// The picture as SVG text.
fn render_svg(p: &Picture) -> Result<Vec<u8>> {
    let mut text = String::new();
    draw(
        GlyphText::vector(SVGBackend::with_string(&mut text, SIZE)),
        p,
    )?;
    Ok(text.into_bytes())
}

/// The picture as a PNG file's bytes (8-bit RGB).
fn render_png(p: &Picture) -> Result<Vec<u8>> {
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    draw(
        GlyphText::raster(BitMapBackend::with_buffer(&mut rgb, SIZE)),
        p,
    )?;
    let mut bytes = Vec::new();
    let mut enc = png::Encoder::new(&mut bytes, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().context("encoding the PNG")?;
    writer.write_image_data(&rgb).context("encoding the PNG")?;
    writer.finish().context("encoding the PNG")?;
    Ok(bytes)
}

/// Plots the runs named in `ids` into `out` (PNG or SVG by its extension); a bad `--out` is
/// refused before the store is opened.
pub(crate) fn plot(store: &StoreArg, ids: &[String], out: &Path) -> Result<()> {
    let format = format_of(out)?;
    let runs = load_runs(&store.open_view()?, ids)?;
    warn_unequal(&runs);
    let picture = picture(&runs)?;
    let bytes = match format {
        Format::Png => render_png(&picture)?,
        Format::Svg => render_svg(&picture)?,
    };
    std::fs::write(out, bytes)
        .with_context(|| format!("--out {}: writing the picture", out.display()))?;
    outln!(
        "wrote {} ({} run{}, {} evaluations, {} scale)",
        out.display(),
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        picture.x_max,
        if picture.log_y { "log" } else { "linear" }
    );
    Ok(())
}
