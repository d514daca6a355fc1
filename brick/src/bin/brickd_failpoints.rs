//! `brickd-failpoints`: brickd built with the `failpoints` feature, for
//! crash tests only. `FAILPOINTS="create::after_stage=kill"` makes it die
//! by SIGKILL the first time a create reaches that point (see
//! `brick::failpoints`); without FAILPOINTS it is brickd.

fn main() -> std::process::ExitCode {
    brick::daemon::main()
}
