//! `brickd`: serves one brick directory (see `brick::daemon`).

fn main() -> std::process::ExitCode {
    brick::daemon::main()
}
