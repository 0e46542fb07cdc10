//! `fibo`: exact Fibonacci numbers for whole batches of inputs, on every core.
//!
//! A thin `main`: everything lives in `src/cli/` (kept out of the library's API).
#![forbid(unsafe_code)]

#[path = "../cli/mod.rs"]
mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
