//! The `s3` command-line tool (see `s3 --help`).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;

fn main() {
    match cli::run() {
        Ok(0) => {}
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::exit(1);
        }
    }
}
