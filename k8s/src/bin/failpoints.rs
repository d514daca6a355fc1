//! `brickfs-provisioner-failpoints`: the provisioner with the failpoints
//! of `k8s::failpoints` armed from `FAILPOINTS`, for crash tests only.

fn main() -> std::process::ExitCode {
    match k8s::failpoints::arm_from_env() {
        Ok(armed) if !armed.is_empty() => eprintln!("failpoints armed: {}", armed.join(";")),
        Ok(_) => {}
        Err(e) => {
            eprintln!("brickfs-provisioner-failpoints: FAILPOINTS: {e}");
            return std::process::ExitCode::from(2);
        }
    }
    k8s::daemon::main()
}
