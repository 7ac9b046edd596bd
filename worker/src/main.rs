//! `plus-worker`: the Fargate container's entry point. See the crate docs.

fn main() -> std::process::ExitCode {
    let runtime = plus_worker::runtime().unwrap_or_else(|e| {
        eprintln!("plus-worker: the async runtime could not start: {e}");
        std::process::exit(1)
    });
    std::process::ExitCode::from(runtime.block_on(plus_worker::main_entry()))
}
