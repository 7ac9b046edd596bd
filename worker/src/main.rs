//! `plus-worker`: the Fargate container's entry point. See the crate docs.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(plus_worker::main())
}
