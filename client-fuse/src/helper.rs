//! `brickfs-mount` as the mount(8) helper `mount.fuse.brickfs`, so that
//! `mount -t fuse.brickfs gv0 /mnt/gv0 -o store=URL` and fstab lines such as
//!
//! ```text
//! gv0  /mnt/gv0  fuse.brickfs  store=file:///var/lib/brickfs,_netdev  0 0
//! ```
//!
//! work. mount(8) runs `/sbin/mount.fuse.brickfs SPEC DIR [-sfnv] [-o OPTS]
//! [-t fuse.brickfs]` and expects it to return once the volume is mounted.
//! So the helper checks its arguments, starts `brickfs-mount --store …` as
//! a detached child (own session, stdin closed, stderr to the log file),
//! waits for its `MOUNTED <pid>` line on stdout (or `ERROR <why>`), and
//! exits 0 with the child serving the mount in the background; on failure
//! it prints the child's reason and exits 32 (mount(8)'s "mount failure";
//! 1 for bad usage). `umount DIR` ends the child like any external unmount.
//!
//! SPEC is `VOLUME` or `HOST[:PORT]:/VOLUME`; the host part is accepted
//! for familiarity (Gluster's `server:/volume`) and otherwise ignored: the
//! volume is found in the store of `-o store=URL`, else `$BRICKFS_STORE`,
//! else `file:///var/lib/brickfs`.
//!
//! TLS credentials come from `-o tls-dir=DIR` (ca.pem, client.pem and
//! client.key there), else `$BRICKFS_TLS_DIR`, else `/etc/brickfs/tls`;
//! `-o insecure` mounts over plaintext.
//!
//! `brickfs-mount --install-helper [DIR]` puts the `mount.fuse.brickfs`
//! symlink to the running binary into DIR (default /sbin).

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The name mount(8) runs for `-t fuse.brickfs`.
pub const NAME: &str = "mount.fuse.brickfs";
/// The store when neither `-o store=` nor `BRICKFS_STORE` names one.
pub const DEFAULT_STORE: &str = "file:///var/lib/brickfs";
/// The TLS credentials when neither `-o tls-dir=` nor `BRICKFS_TLS_DIR`
/// names them.
pub const DEFAULT_TLS_DIR: &str = "/etc/brickfs/tls";
/// Where logs go without `-o log-file=`: `<dir>/<mountpoint, '/' → '-'>.log`.
pub const LOG_DIR: &str = "/var/log/brickfs";
/// Longest wait for the child to mount (it reads the store and waits up to
/// the op timeout for the bricks).
const MOUNT_WAIT: Duration = Duration::from_secs(120);

/// mount(8)'s exit codes.
const EX_USAGE: u8 = 1;
const EX_FAIL: u8 = 32;

/// Options every file system gets from fstab or mount(8) that mean nothing
/// to this helper (mount(8), systemd or the kernel deal with them).
const IGNORED: &[&str] = &[
    "rw",
    "defaults",
    "_netdev",
    "nofail",
    "noauto",
    "auto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    "async",
    "sync",
];

/// What `mount.fuse.brickfs` was asked to do.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub volume: String,
    /// The host part of SPEC, if any (informative only).
    pub host: Option<String>,
    pub mountpoint: PathBuf,
    pub store: String,
    pub read_only: bool,
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    /// `-o tls-dir=DIR`, or `None` for the environment's or the default.
    pub tls_dir: Option<PathBuf>,
    /// `-o insecure`: plaintext.
    pub insecure: bool,
    /// `-f`: check everything, mount nothing.
    pub fake: bool,
    /// `-v`: say what was mounted.
    pub verbose: bool,
    /// Options ignored under `-s` (sloppy) that would otherwise be errors.
    pub ignored: Vec<String>,
}

/// True when this process runs as `mount.fuse.brickfs`.
pub fn invoked_as_helper() -> bool {
    std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n == NAME))
        .unwrap_or(false)
}

/// `HOST[:PORT]:/VOLUME` or `VOLUME` → (host, volume).
pub fn parse_spec(spec: &str) -> Result<(Option<String>, String), String> {
    let (host, volume) = match spec.rsplit_once(":/") {
        Some((host, volume)) if !host.is_empty() => (Some(host.to_string()), volume),
        Some(_) => return Err(format!("{spec:?}: the host before \":/\" is empty")),
        None if spec.contains(':') || spec.starts_with('/') => {
            return Err(format!(
                "{spec:?} is not a volume: give VOLUME or HOST[:PORT]:/VOLUME (e.g. gv0 or server1:/gv0)"
            ))
        }
        None => (None, spec),
    };
    if volume.is_empty() {
        return Err(format!("{spec:?} names no volume"));
    }
    volgen::spec::validate_name(volume).map_err(|e| format!("{spec:?}: {e}"))?;
    Ok((host, volume.to_string()))
}

/// Parses the helper's arguments (without argv[0]); `env_store` is
/// `$BRICKFS_STORE`.
pub fn parse(args: &[String], env_store: Option<String>) -> Result<Request, String> {
    let mut positional = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let (mut fake, mut verbose, mut sloppy) = (false, false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if let Some(rest) = arg.strip_prefix("-o") {
            let value = if rest.is_empty() {
                it.next().ok_or("-o needs a list of options")?.clone()
            } else {
                rest.to_string()
            };
            opts.push(value);
        } else if let Some(rest) = arg.strip_prefix("-t") {
            let typ = if rest.is_empty() {
                it.next().ok_or("-t needs a type")?.as_str()
            } else {
                rest
            };
            if !matches!(typ, "fuse.brickfs" | "brickfs") {
                return Err(format!("-t {typ}: this helper mounts fuse.brickfs only"));
            }
        } else if arg == "-N" || arg.starts_with("--") {
            return Err(format!("{arg}: not supported by {NAME}"));
        } else if let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) {
            for f in flags.chars() {
                match f {
                    'f' => fake = true,
                    'v' => verbose = true,
                    's' => sloppy = true,
                    // No /etc/mtab to write.
                    'n' => {}
                    _ => return Err(format!("-{f}: unknown flag (known: -f -n -s -v -o -t)")),
                }
            }
        } else {
            positional.push(arg.clone());
        }
    }
    let [spec, mountpoint] = positional.as_slice() else {
        return Err(format!(
            "usage: {NAME} VOLUME|HOST[:PORT]:/VOLUME MOUNTPOINT [-o store=URL,ro,log-level=LEVEL,log-file=FILE,tls-dir=DIR,insecure]"
        ));
    };
    let (host, volume) = parse_spec(spec)?;
    let mut req = Request {
        volume,
        host,
        mountpoint: PathBuf::from(mountpoint),
        store: String::new(),
        read_only: false,
        log_level: "info".into(),
        log_file: None,
        tls_dir: None,
        insecure: false,
        fake,
        verbose,
        ignored: Vec::new(),
    };
    let mut store = None;
    for opt in opts
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (key, value) = match opt.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (opt, None),
        };
        match (key, value) {
            ("store", Some(url)) if !url.is_empty() => store = Some(url.to_string()),
            ("ro", None) => req.read_only = true,
            ("rw", None) => req.read_only = false,
            ("log-level", Some(level)) if !level.is_empty() => req.log_level = level.to_string(),
            ("log-file", Some(file)) if !file.is_empty() => req.log_file = Some(file.into()),
            ("tls-dir", Some(dir)) if !dir.is_empty() => req.tls_dir = Some(dir.into()),
            ("insecure", None) => req.insecure = true,
            (k, None) if IGNORED.contains(&k) => {}
            (k, _) if k.starts_with("x-") || k == "comment" => {}
            _ if sloppy => req.ignored.push(opt.to_string()),
            ("store" | "log-level" | "log-file" | "tls-dir", _) => {
                return Err(format!("mount option {key} needs a value: {key}=…"))
            }
            _ => {
                return Err(format!(
                    "unknown mount option {opt:?} (brickfs knows store=URL, ro, log-level=LEVEL, \
                     log-file=FILE, tls-dir=DIR, insecure and ignores the generic ones: defaults, _netdev, nofail, x-systemd.*, …)"
                ))
            }
        }
    }
    req.store = store
        .or(env_store.filter(|s| !s.is_empty()))
        .unwrap_or_else(|| DEFAULT_STORE.to_string());
    Ok(req)
}

/// The default log of a mount at `mountpoint`: `/mnt/gv0` → `mnt-gv0.log`.
pub fn default_log(mountpoint: &Path) -> PathBuf {
    let name = mountpoint
        .to_string_lossy()
        .trim_matches('/')
        .replace('/', "-");
    let name = if name.is_empty() { "root".into() } else { name };
    Path::new(LOG_DIR).join(format!("{name}.log"))
}

/// Runs as the mount helper: returns once the volume is mounted (or not).
pub fn main() -> ExitCode {
    let args: Vec<String> = match std::env::args_os()
        .skip(1)
        .map(OsString::into_string)
        .collect::<Result<_, _>>()
    {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("{NAME}: argument {bad:?} is not UTF-8");
            return ExitCode::from(EX_USAGE);
        }
    };
    let req = match parse(&args, std::env::var("BRICKFS_STORE").ok()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(EX_USAGE);
        }
    };
    for opt in &req.ignored {
        eprintln!("{NAME}: ignoring unknown option {opt:?} (-s)");
    }
    match mount_in_background(&req) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            ExitCode::from(EX_FAIL)
        }
    }
}

fn mount_in_background(req: &Request) -> Result<(), String> {
    if !req.mountpoint.is_dir() {
        return Err(format!(
            "mountpoint {} does not exist or is not a directory",
            req.mountpoint.display()
        ));
    }
    let mountpoint = req
        .mountpoint
        .canonicalize()
        .map_err(|e| format!("mountpoint {}: {e}", req.mountpoint.display()))?;
    if let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") {
        if mounted_here(&table, &mountpoint, &req.volume) {
            // `mount -a` does not know the mount as its fstab line (the
            // kernel shows `fuse` and `brickfs:VOLUME`) and asks again:
            // mounting twice would stack a second mount on the first.
            if req.verbose {
                println!(
                    "{NAME}: volume {} is already mounted at {}",
                    req.volume,
                    mountpoint.display()
                );
            }
            return Ok(());
        }
    }
    let log_path = req
        .log_file
        .clone()
        .unwrap_or_else(|| default_log(&mountpoint));
    if req.fake {
        if req.verbose {
            println!(
                "{NAME}: would mount volume {} of {} at {} (log {})",
                req.volume,
                req.store,
                mountpoint.display(),
                log_path.display()
            );
        }
        return Ok(());
    }
    if let Some(dir) = log_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create log directory {}: {e} (-o log-file=FILE picks another)",
                dir.display()
            )
        })?;
    }
    let log = supervise::children::open_log(&log_path)
        .map_err(|e| format!("cannot open log {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find brickfs-mount: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg0("brickfs-mount")
        .args(["--store", &req.store, "--log-level", &req.log_level])
        .arg("--announce-mounted");
    if req.read_only {
        cmd.arg("--read-only");
    }
    if req.insecure {
        cmd.arg("--insecure");
    } else if let Some(dir) = &req.tls_dir {
        cmd.arg("--tls-dir").arg(dir);
    } else if std::env::var_os("BRICKFS_TLS_DIR").is_none()
        && std::env::var_os("BRICKFS_INSECURE").is_none()
    {
        cmd.arg("--tls-dir").arg(DEFAULT_TLS_DIR);
    }
    cmd.arg(&req.volume)
        .arg(&mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and touches no memory of ours;
    // it detaches the child from mount(8)'s session and terminal.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start brickfs-mount: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("the child's stdout is not piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let said = match rx.recv_timeout(MOUNT_WAIT) {
        Ok(line) => line,
        Err(_) => {
            supervise::children::kill_and_reap(&mut child);
            return Err(format!(
                "volume {} not mounted within {MOUNT_WAIT:?}; see {}",
                req.volume,
                log_path.display()
            ));
        }
    };
    if let Some(pid) = said.trim_end().strip_prefix("MOUNTED ") {
        if req.verbose {
            println!(
                "{NAME}: mounted volume {} at {} (brickfs-mount pid {pid}, log {})",
                req.volume,
                mountpoint.display(),
                log_path.display()
            );
        }
        // The child serves on; it is not ours to wait for.
        return Ok(());
    }
    let status = supervise::children::wait_until_exit(&mut child, Duration::from_secs(10));
    if status.is_none() {
        supervise::children::kill_and_reap(&mut child);
    }
    match said.trim_end().strip_prefix("ERROR ") {
        Some(why) => Err(why.to_string()),
        None => Err(format!(
            "brickfs-mount ended ({}) before mounting; the end of {}:\n{}",
            status.map_or("killed".to_string(), |s| s.to_string()),
            log_path.display(),
            supervise::children::log_tail(&log_path, 10)
        )),
    }
}

/// True when the topmost mount at `mountpoint` in mountinfo `table` is
/// brickfs volume `volume` (fuser names it `brickfs:VOLUME`).
pub fn mounted_here(table: &str, mountpoint: &Path, volume: &str) -> bool {
    let mut point = String::new();
    for c in mountpoint.to_string_lossy().chars() {
        match c {
            ' ' => point.push_str("\\040"),
            '\t' => point.push_str("\\011"),
            '\n' => point.push_str("\\012"),
            '\\' => point.push_str("\\134"),
            c => point.push(c),
        }
    }
    let source = format!("brickfs:{volume}");
    // The last mount at the point is the one on top.
    table
        .lines()
        .rev()
        .find_map(|line| {
            let (mount, fs) = line.split_once(" - ")?;
            let at = mount.split(' ').nth(4)?;
            let mut fs = fs.split(' ');
            let (typ, src) = (fs.next()?, fs.next()?);
            (at == point).then(|| typ.starts_with("fuse") && src == source)
        })
        .unwrap_or(false)
}

/// `--install-helper DIR`: makes `DIR/mount.fuse.brickfs` a symlink to
/// this binary (replacing an older symlink, never a file). Returns the link.
pub fn install(dir: &Path) -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .map_err(|e| format!("cannot find this binary: {e}"))?;
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let link = dir.join(NAME);
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() => {
            if std::fs::read_link(&link).is_ok_and(|to| to == exe) {
                return Ok(link);
            }
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a symlink; not replaced",
                link.display()
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("{}: {e}", link.display())),
    }
    // A new link renamed over the old one: never a moment without it.
    let tmp = dir.join(format!(".{NAME}.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&exe, &tmp)
        .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &link) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("cannot create {}: {e}", link.display()));
    }
    Ok(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn specs_name_a_volume_with_or_without_a_host() {
        assert_eq!(parse_spec("gv0").unwrap(), (None, "gv0".into()));
        assert_eq!(
            parse_spec("server1:/gv0").unwrap(),
            (Some("server1".into()), "gv0".into())
        );
        assert_eq!(
            parse_spec("server1:24007:/gv0").unwrap(),
            (Some("server1:24007".into()), "gv0".into())
        );
        assert_eq!(
            parse_spec("[::1]:/gv0").unwrap(),
            (Some("[::1]".into()), "gv0".into())
        );
        for bad in [
            "",
            "server1:/",
            ":/gv0",
            "server1:gv0",
            "/gv0",
            "server:/gv0/sub",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fstab_options_are_understood_or_ignored() {
        let r = parse(
            &args("gv0 /mnt/gv0 -o rw,store=file:///srv/store,_netdev,nofail,x-systemd.automount,noatime,ro,log-level=debug,log-file=/tmp/gv0.log"),
            None,
        )
        .unwrap();
        assert_eq!(r.volume, "gv0");
        assert_eq!(r.mountpoint, PathBuf::from("/mnt/gv0"));
        assert_eq!(r.store, "file:///srv/store");
        assert!(r.read_only);
        assert_eq!(r.log_level, "debug");
        assert_eq!(r.log_file, Some(PathBuf::from("/tmp/gv0.log")));
        assert!(!r.fake && !r.verbose);
    }

    #[test]
    fn the_store_comes_from_the_option_then_the_environment_then_the_default() {
        let env = Some("etcd://10.0.0.1:2379".to_string());
        let opt = parse(&args("gv0 /m -o store=file:///a"), env.clone()).unwrap();
        assert_eq!(opt.store, "file:///a");
        assert_eq!(
            parse(&args("gv0 /m"), env).unwrap().store,
            "etcd://10.0.0.1:2379"
        );
        assert_eq!(parse(&args("gv0 /m"), None).unwrap().store, DEFAULT_STORE);
    }

    #[test]
    fn mount8_flags_and_type_are_accepted() {
        let r = parse(&args("-n -fv gv0 /m -t fuse.brickfs -odefaults"), None).unwrap();
        assert!(r.fake && r.verbose);
        assert!(parse(&args("gv0 /m -t fuse.sshfs"), None).is_err());
        assert!(parse(&args("gv0 /m -x"), None).is_err());
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let e = parse(&args("gv0 /m -o store=file:///a,bogus=1"), None).unwrap_err();
        assert!(e.contains("unknown mount option \"bogus=1\""), "{e}");
        let e = parse(&args("/m"), None).unwrap_err();
        assert!(e.contains("usage"), "{e}");
        let e = parse(&args("gv0 /m -o store="), None).unwrap_err();
        assert!(e.contains("needs a value"), "{e}");
        let e = parse(&args("gv0 /m -o"), None).unwrap_err();
        assert!(e.contains("-o needs"), "{e}");
        // Sloppy mounts (-s) ignore what they do not know.
        let r = parse(&args("-s gv0 /m -o bogus"), None).unwrap();
        assert_eq!(r.ignored, vec!["bogus".to_string()]);
    }

    #[test]
    fn a_volume_already_mounted_here_is_recognised() {
        let table = "\
27 1 0:25 / / rw - ext4 /dev/sda1 rw
42 27 0:39 / /mnt/gv0 rw,nosuid - fuse brickfs:gv0 rw,user_id=0
43 27 0:40 / /mnt/my\\040vol rw - fuse brickfs:gv1 rw
";
        assert!(mounted_here(table, Path::new("/mnt/gv0"), "gv0"));
        assert!(!mounted_here(table, Path::new("/mnt/gv0"), "gv1"));
        assert!(mounted_here(table, Path::new("/mnt/my vol"), "gv1"));
        assert!(!mounted_here(table, Path::new("/mnt/other"), "gv0"));
        // Something else mounted on top hides it.
        let covered = format!("{table}44 42 0:41 / /mnt/gv0 rw - tmpfs tmpfs rw\n");
        assert!(!mounted_here(&covered, Path::new("/mnt/gv0"), "gv0"));
    }

    #[test]
    fn logs_are_named_after_the_mountpoint() {
        assert_eq!(
            default_log(Path::new("/mnt/gv0")),
            PathBuf::from("/var/log/brickfs/mnt-gv0.log")
        );
        assert_eq!(
            default_log(Path::new("/")),
            PathBuf::from("/var/log/brickfs/root.log")
        );
    }
}
