//! Where `brickfs volume ...` looks volumes up (`--store URL` or
//! `BRICKFS_STORE`).
//!
//! Until the real volume store exists, a store is the state directory of
//! `brickfs dev`: `file:///abs/dir` (or the plain directory path) means
//! "read `DIR/cluster.json`", whose `volume` is the one volume it holds and
//! whose `bricks[].addr` are its bricks in volume order
//! (format: `dev/cluster_file.rs`).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, IoContext, Result};

/// The store URLs this build understands, for error messages.
const SUPPORTED: &str = "file:///abs/dir or a plain directory path, naming the state \
                         directory of `brickfs dev`, which prints its store URL";

/// An opened store: the URL as the user gave it, and what it points at.
#[derive(Debug)]
pub struct Store {
    url: String,
    dir: PathBuf,
}

/// A volume as the store describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct StoredVolume {
    pub name: String,
    /// In volume order (a brick's position is its index in the replica set).
    pub bricks: Vec<SocketAddr>,
}

impl Store {
    /// Parses `url`; reads nothing yet.
    pub fn open(url: &str) -> Result<Store> {
        Ok(Store {
            url: url.to_string(),
            dir: parse_store_url(url)?,
        })
    }

    /// Looks up volume `name`.
    pub fn volume(&self, name: &str) -> Result<StoredVolume> {
        let path = self.dir.join("cluster.json");
        let text = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Msg(format!(
                    "no volume store at {}: {} does not exist (a store directory is the \
                     --state-dir of a `brickfs dev` that has started)",
                    self.url,
                    path.display()
                )))
            }
            other => other.ctx(|| format!("reading {}", path.display()))?,
        };
        let vol = parse_cluster_json(&text)
            .map_err(|e| Error::Msg(format!("malformed {}: {e}", path.display())))?;
        if vol.name != name {
            return Err(Error::Msg(format!(
                "unknown volume {name} (the store at {} has: {})",
                self.url, vol.name
            )));
        }
        Ok(vol)
    }
}

/// The directory a store URL names: `file:///abs/dir` (percent-escapes
/// decoded; `file://localhost/abs/dir` and `file:/abs/dir` too) or a plain
/// path. Any other `scheme://` is refused.
pub fn parse_store_url(url: &str) -> Result<PathBuf> {
    if url.trim().is_empty() {
        return Err(Error::Msg(format!(
            "empty store URL (supported: {SUPPORTED})"
        )));
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return Ok(PathBuf::from(url));
    };
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(Error::Msg(format!(
            "unsupported store URL {url:?}: scheme {scheme:?} is not supported yet \
             (supported: {SUPPORTED})"
        )));
    }
    let path = if let Some(after) = rest.strip_prefix("//") {
        // `file://HOST/path`: only the local host makes sense.
        let (host, path) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) || path.is_empty() {
            return Err(Error::Msg(format!(
                "store URL {url:?} must name a local absolute directory, as in file:///abs/dir"
            )));
        }
        path
    } else if rest.starts_with('/') {
        rest
    } else {
        return Err(Error::Msg(format!(
            "store URL {url:?} must name an absolute directory, as in file:///abs/dir"
        )));
    };
    let bytes = percent_decode(path)
        .ok_or_else(|| Error::Msg(format!("store URL {url:?} has a bad %-escape")))?;
    Ok(PathBuf::from(OsString::from_vec(bytes)))
}

/// `file://` URL of an absolute directory, with the bytes that could be
/// misread (space, `%`, `#`, `?`, non-ASCII, ...) percent-escaped.
pub fn file_url(dir: &Path) -> String {
    let mut url = String::from("file://");
    for &b in dir.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~+,=:@".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// `scheme` and the rest for `scheme:...` when the text looks like a URL
/// (`scheme://...`, or `file:` anything); `None` for a plain path (which may
/// well contain a colon).
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    (valid && (rest.starts_with("//") || scheme.eq_ignore_ascii_case("file")))
        .then_some((scheme, rest))
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The volume in a `cluster.json` written by `brickfs dev`.
fn parse_cluster_json(text: &str) -> std::result::Result<StoredVolume, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let name = v
        .get("volume")
        .and_then(Value::as_str)
        .ok_or("no \"volume\" string")?
        .to_string();
    let bricks = v
        .get("bricks")
        .and_then(Value::as_array)
        .ok_or("no \"bricks\" array")?
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let addr = b
                .get("addr")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("bricks[{i}] has no \"addr\" string"))?;
            addr.parse::<SocketAddr>()
                .map_err(|e| format!("bricks[{i}].addr {addr:?}: {e}"))
        })
        .collect::<std::result::Result<Vec<_>, String>>()?;
    if bricks.is_empty() {
        return Err("\"bricks\" is empty".into());
    }
    Ok(StoredVolume { name, bricks })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(url: &str) -> PathBuf {
        match parse_store_url(url) {
            Ok(d) => d,
            Err(e) => panic!("{url}: {e}"),
        }
    }

    fn err(url: &str) -> String {
        match parse_store_url(url) {
            Ok(d) => panic!("{url} parsed as {}", d.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn file_urls() {
        assert_eq!(dir("file:///abs/state"), Path::new("/abs/state"));
        assert_eq!(dir("file://localhost/abs/state"), Path::new("/abs/state"));
        assert_eq!(dir("FILE:///abs"), Path::new("/abs"));
        assert_eq!(dir("file:/abs/state"), Path::new("/abs/state"));
        assert_eq!(dir("file:///a%20b/c%25d"), Path::new("/a b/c%d"));
        assert_eq!(dir("file:///"), Path::new("/"));
    }

    #[test]
    fn plain_paths() {
        assert_eq!(dir("/abs/state"), Path::new("/abs/state"));
        assert_eq!(dir("rel/state"), Path::new("rel/state"));
        assert_eq!(dir("./brickfs-dev"), Path::new("./brickfs-dev"));
        // A colon does not make a URL.
        assert_eq!(dir("/tmp/a:b"), Path::new("/tmp/a:b"));
        assert_eq!(dir("host:dir"), Path::new("host:dir"));
    }

    #[test]
    fn refused_urls() {
        let e = err("etcd://10.0.0.1:2379/brickfs");
        assert!(e.contains("\"etcd\" is not supported"), "{e}");
        assert!(e.contains("file:///abs/dir"), "{e}");
        assert!(err("http://x/y").contains("\"http\""));
        assert!(err("file://otherhost/abs").contains("local absolute directory"));
        assert!(err("file://localhost").contains("local absolute directory"));
        assert!(err("file:rel/dir").contains("absolute"));
        assert!(err("file:///bad%zzescape").contains("%-escape"));
        assert!(err("file:///bad%2").contains("%-escape"));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn file_url_round_trips() {
        for p in ["/tmp/healcli-dev", "/a b/c%d/é#?x", "/"] {
            let url = file_url(Path::new(p));
            assert!(url.starts_with("file:///"), "{url}");
            assert_eq!(dir(&url), Path::new(p), "{url}");
        }
        assert_eq!(file_url(Path::new("/tmp/x y")), "file:///tmp/x%20y");
    }

    #[test]
    fn cluster_json() {
        let text = r#"{"volume":"dev","mount":"/m","bricks":[
            {"name":"brick1","addr":"127.0.0.1:4001"},
            {"name":"brick2","addr":"127.0.0.1:4002"},
            {"name":"brick3","addr":"127.0.0.1:4003"}]}"#;
        let vol = parse_cluster_json(text).unwrap();
        assert_eq!(vol.name, "dev");
        assert_eq!(
            vol.bricks,
            ["127.0.0.1:4001", "127.0.0.1:4002", "127.0.0.1:4003"]
                .map(|a| a.parse::<SocketAddr>().unwrap())
        );
        assert!(parse_cluster_json("{").is_err());
        assert!(parse_cluster_json(r#"{"bricks":[]}"#).is_err());
        assert!(parse_cluster_json(r#"{"volume":"dev","bricks":[]}"#).is_err());
        assert!(parse_cluster_json(r#"{"volume":"dev","bricks":[{"addr":"x"}]}"#).is_err());
    }

    #[test]
    fn unknown_volume_names_what_the_store_has() {
        let tmp = std::env::temp_dir().join(format!("volgen-store-test-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(
            tmp.join("cluster.json"),
            r#"{"volume":"dev","bricks":[{"addr":"127.0.0.1:4001"}]}"#,
        )
        .unwrap();
        let url = file_url(&tmp);
        let store = Store::open(&url).unwrap();
        assert_eq!(store.volume("dev").unwrap().bricks.len(), 1);
        let e = store.volume("nope").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("unknown volume nope (the store at {url} has: dev)")
        );
        let missing = Store::open(&file_url(&tmp.join("none"))).unwrap();
        assert!(missing
            .volume("dev")
            .unwrap_err()
            .to_string()
            .contains("no volume store"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
