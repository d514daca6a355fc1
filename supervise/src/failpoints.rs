//! Arming the `fail` crate's failpoints from `FAILPOINTS` (`NAME=ACTION;…`)
//! for the failpoints builds of our daemons (`brickd-failpoints`,
//! `brickfs-provisioner-failpoints`). `kill` is a SIGKILL of the process
//! (no unwinding, nothing flushed), announced on stderr as
//! `failpoint NAME: SIGKILL` so a crash test tells this death from any
//! other; other actions are the `fail` crate's. Names outside the daemon's
//! list of points are refused.

/// Arms what `FAILPOINTS` names; returns the armed `NAME=ACTION`s.
pub fn arm_from_env(known: &[&str]) -> Result<Vec<String>, String> {
    match std::env::var("FAILPOINTS") {
        Ok(spec) => arm(&spec, known),
        Err(std::env::VarError::NotPresent) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Arms `NAME=ACTION;NAME=ACTION…`, each `NAME` one of `known`.
pub fn arm(spec: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let mut armed = Vec::new();
    for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, action) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected NAME=ACTION"))?;
        let (name, action) = (name.trim(), action.trim());
        if !known.contains(&name) {
            return Err(format!("unknown failpoint {name:?}"));
        }
        if action == "kill" {
            let point = name.to_string();
            fail::cfg_callback(name, move || kill_self(&point))?;
        } else {
            fail::cfg(name, action)?;
        }
        armed.push(format!("{name}={action}"));
    }
    Ok(armed)
}

fn kill_self(point: &str) {
    eprintln!("failpoint {point}: SIGKILL");
    // SAFETY: kill(2) of our own pid; no memory is touched.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; should it be refused, stop all the same.
    std::process::abort();
}
