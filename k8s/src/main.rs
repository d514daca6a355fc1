//! `brickfs-provisioner` (see `k8s::args` for what it does, or `--help`).

fn main() -> std::process::ExitCode {
    k8s::daemon::main()
}
