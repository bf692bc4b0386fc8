//! The `s3` command-line tool (see `s3 --help`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() {
    if let Err(e) = cli::run() {
        eprintln!("Error: {e:#}");
        std::process::exit(1);
    }
}
