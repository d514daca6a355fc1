//! Volume specs: what the store keeps about a volume, at key
//! `volumes/<name>`, as JSON (`VolumeSpec::to_json` / `from_json`).
//!
//! ```json
//! {"format":1,"name":"gv0","id":"<uuid>","replica":3,
//!  "bricks":[{"addr":"h1:24101","id":"<brick uuid>"}, ...],
//!  "options":{"network.op-timeout":"3"},"state":"created",
//!  "created_by":"brickfs 0.1.0","created_at":1700000000}
//! ```
//!
//! Bricks form replica sets in the order given, `replica` at a time (as in
//! Gluster): bricks 0..3 are replica set 0, 3..6 set 1, ... A brick is
//! identified by its UUID (learned from the brick at `volume create`); its
//! address is how to reach it. `options` holds only what was set
//! (`volume set`), validated against [`OPTIONS`]; defaults are not stored.
//!
//! These documents are volgen's: the serde derives here are the one
//! exception to "only proto types derive Serialize" (which is about wire
//! types).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The format of the JSON document; bumped on incompatible changes.
pub const SPEC_FORMAT: u32 = 1;

/// The only replica count there is for now.
pub const REPLICA: u8 = 3;

/// A volume's life cycle, as `volume info` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeState {
    /// Defined, never started.
    Created,
    Started,
    Stopped,
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VolumeState::Created => "Created",
            VolumeState::Started => "Started",
            VolumeState::Stopped => "Stopped",
        })
    }
}

/// One brick of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrickRef {
    /// `host:port`, as given to `volume create`.
    pub addr: String,
    /// The brick's UUID (`DIR/.brickfs/brick-id`), learned at create.
    pub id: String,
}

/// A volume as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    /// [`SPEC_FORMAT`] of the writer.
    pub format: u32,
    pub name: String,
    /// The volume's UUID, made at create.
    pub id: String,
    pub replica: u8,
    /// In volume order: replica set `i` is `bricks[i*replica..(i+1)*replica]`.
    pub bricks: Vec<BrickRef>,
    /// Options set with `volume set` (canonical values); defaults not stored.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    pub state: VolumeState,
    /// `brickfs <version>` that created the volume.
    #[serde(default)]
    pub created_by: String,
    /// Seconds since the Unix epoch.
    #[serde(default)]
    pub created_at: u64,
}

/// Why a spec, a name, a brick list or an option was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

impl VolumeSpec {
    /// The store key of volume `name`.
    pub fn key(name: &str) -> String {
        format!("{VOLUMES_PREFIX}{name}")
    }

    /// Number of replica sets.
    pub fn replica_sets(&self) -> usize {
        self.bricks.len() / usize::from(self.replica.max(1))
    }

    /// `Replicate` (one set) or `Distributed-Replicate`, as Gluster says it.
    pub fn type_name(&self) -> &'static str {
        if self.replica_sets() > 1 {
            "Distributed-Replicate"
        } else {
            "Replicate"
        }
    }

    /// The value of option `key`: what was set, else its default.
    pub fn option(&self, key: &str) -> Option<&str> {
        let def = option_def(key)?;
        Some(self.options.get(key).map_or(def.default, String::as_str))
    }

    /// An option in seconds: what was set, else its default. Stored values
    /// were validated on the way in, and the table's defaults parse.
    pub fn option_duration(&self, key: &str) -> std::time::Duration {
        let def = option_def(key).unwrap_or_else(|| panic!("{key} is not an option"));
        let OptionKind::Secs(rule) = def.kind else {
            panic!("{key} is not an option in seconds")
        };
        self.option(key)
            .and_then(|v| rule.parse(v).ok())
            .unwrap_or_else(|| panic!("{key} is not an option in seconds"))
    }

    /// An option that is a ratio: what was set, else its default.
    pub fn option_ratio(&self, key: &str) -> f64 {
        self.option(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} is not a ratio option"))
    }

    /// The default of an option in seconds.
    pub fn default_duration(key: &str) -> std::time::Duration {
        let def = option_def(key).unwrap_or_else(|| panic!("{key} is not an option"));
        let OptionKind::Secs(rule) = def.kind else {
            panic!("{key} is not an option in seconds")
        };
        rule.parse(def.default)
            .unwrap_or_else(|_| panic!("{key} has a bad default"))
    }

    /// Checks everything a stored spec must satisfy.
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_name(&self.name)?;
        if self.id.is_empty() {
            return err(format!("volume {} has no id", self.name));
        }
        validate_replica(self.replica)?;
        let addrs: Vec<&str> = self.bricks.iter().map(|b| b.addr.as_str()).collect();
        validate_bricks(self.replica, &addrs)?;
        let mut ids = BTreeMap::new();
        for (i, b) in self.bricks.iter().enumerate() {
            if b.id.is_empty() {
                return err(format!("brick {} has no id", b.addr));
            }
            if let Some(j) = ids.insert(b.id.as_str(), i) {
                return err(format!(
                    "bricks {} and {} are the same brick (id {})",
                    self.bricks[j].addr, b.addr, b.id
                ));
            }
        }
        for (k, v) in &self.options {
            let canonical = validate_option(k, v)?;
            if &canonical != v {
                return err(format!("option {k} has a non-canonical value {v:?}"));
            }
        }
        Ok(())
    }

    /// The JSON document the store keeps (pretty, newline-terminated).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("specs serialize");
        s.push('\n');
        s
    }

    /// Parses and validates a stored document.
    pub fn from_json(text: &[u8]) -> Result<VolumeSpec, SpecError> {
        let mut spec: VolumeSpec =
            serde_json::from_slice(text).map_err(|e| SpecError(format!("bad JSON: {e}")))?;
        for retired in RETIRED_OPTIONS {
            spec.options.remove(*retired);
        }
        if spec.format > SPEC_FORMAT {
            return err(format!(
                "spec format {} is newer than this brickfs understands ({SPEC_FORMAT})",
                spec.format
            ));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Sets option `key` to `value` after validating both; returns the
    /// canonical value stored.
    pub fn set_option(&mut self, key: &str, value: &str) -> Result<String, SpecError> {
        let canonical = validate_option(key, value)?;
        self.options.insert(key.to_string(), canonical.clone());
        Ok(canonical)
    }
}

/// Where volume specs live in the store.
pub const VOLUMES_PREFIX: &str = "volumes/";

/// Volume names: `[A-Za-z0-9_-]{1,64}`.
pub fn validate_name(name: &str) -> Result<(), SpecError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return err(format!(
            "bad volume name {name:?}: use 1 to 64 of A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

pub fn validate_replica(replica: u8) -> Result<(), SpecError> {
    if replica != REPLICA {
        return err(format!(
            "replica {replica} is not supported: only replica {REPLICA} volumes exist for now"
        ));
    }
    Ok(())
}

/// `host:port` with a non-empty host and a port 1..65535; `[v6]:port` too.
pub fn validate_addr(addr: &str) -> Result<(), SpecError> {
    let bad = || {
        SpecError(format!(
            "bad brick address {addr:?} (expected host:port, e.g. server1:24101)"
        ))
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

/// The form of an address used to spot duplicates (host names are not
/// case-sensitive).
pub fn addr_key(addr: &str) -> String {
    addr.to_ascii_lowercase()
}

/// A brick list for `replica`: a positive multiple of it, valid and
/// distinct addresses.
pub fn validate_bricks(replica: u8, addrs: &[&str]) -> Result<(), SpecError> {
    validate_replica(replica)?;
    let r = usize::from(replica);
    if addrs.is_empty() || !addrs.len().is_multiple_of(r) {
        return err(format!(
            "{} bricks given: a replica {r} volume needs a positive multiple of {r} bricks \
             (each {r} in a row form one replica set)",
            addrs.len()
        ));
    }
    let mut seen = BTreeMap::new();
    for (i, a) in addrs.iter().enumerate() {
        validate_addr(a)?;
        if let Some(j) = seen.insert(addr_key(a), i) {
            return err(format!(
                "brick {a} is given twice (bricks {} and {})",
                j + 1,
                i + 1
            ));
        }
    }
    Ok(())
}

/// What kind of value an option takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptionKind {
    /// Seconds, within the rule's bounds.
    Secs(crate::secs::Rule),
    /// A decimal ratio, from `min` to `max`.
    Ratio { min: f64, max: f64 },
}

/// One settable option.
#[derive(Clone, Copy, Debug)]
pub struct OptionDef {
    pub key: &'static str,
    pub kind: OptionKind,
    /// Default value ("" for none).
    pub default: &'static str,
    pub help: &'static str,
}

/// Every option `volume set` accepts, and who reads it. An option nobody
/// reads is not in this table: `volume set` refuses it.
pub const OPTIONS: &[OptionDef] = &[
    OptionDef {
        key: "performance.attr-timeout",
        kind: OptionKind::Secs(crate::secs::CACHE_TIME),
        default: "1",
        help: "seconds the kernel caches attributes on FUSE mounts (brickfs-mount, live)",
    },
    OptionDef {
        key: "performance.entry-timeout",
        kind: OptionKind::Secs(crate::secs::CACHE_TIME),
        default: "1",
        help: "seconds the kernel caches name lookups on FUSE mounts (brickfs-mount, live)",
    },
    OptionDef {
        key: "network.op-timeout",
        kind: OptionKind::Secs(crate::secs::TIMEOUT),
        default: "5",
        help: "seconds a brick may take for one operation before it counts as down \
               (mounts, NFS gateways, heald, rebalance; live)",
    },
    OptionDef {
        key: "cluster.heal-retry",
        kind: OptionKind::Secs(crate::secs::RETRY),
        default: "60",
        help: "seconds between heald's retries of what could not be healed (heald, live)",
    },
    OptionDef {
        key: "subvolume.overcommit",
        kind: OptionKind::Ratio {
            min: 0.1,
            max: 100.0,
        },
        default: "1",
        help: "how far the sub-volumes' unused limits may exceed the volume's free space \
               (brickfs subvolume create and resize, the management API)",
    },
];

/// Options older versions accepted that nothing reads; a stored spec that
/// still has one loads without it.
const RETIRED_OPTIONS: &[&str] = &["nfs.export"];

pub fn option_def(key: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|o| o.key == key)
}

/// The known keys, for error messages.
pub fn known_keys() -> String {
    OPTIONS.iter().map(|o| o.key).collect::<Vec<_>>().join(", ")
}

/// Validates `value` for option `key`; returns its canonical form (seconds
/// as the shortest decimal: `"3.0"` → `"3"`).
pub fn validate_option(key: &str, value: &str) -> Result<String, SpecError> {
    let Some(def) = option_def(key) else {
        return err(format!(
            "unknown option {key:?} (known options: {})",
            known_keys()
        ));
    };
    let bad = |what: &str| {
        SpecError(format!(
            "bad value {value:?} for {key}: {what} (known options: {})",
            known_keys()
        ))
    };
    match def.kind {
        OptionKind::Secs(rule) => {
            let d = rule.parse(value).map_err(|why| bad(&why))?;
            Ok(crate::secs::canonical(d))
        }
        OptionKind::Ratio { min, max } => match value.trim().parse::<f64>() {
            Ok(r) if r.is_finite() && (min..=max).contains(&r) => Ok(r.to_string()),
            _ => Err(bad(&format!("a ratio from {min} to {max}"))),
        },
    }
}

/// A fixed spec of `sets` replica sets (bricks h1:24101, h2:24101, ...),
/// for tests.
#[cfg(test)]
pub(crate) fn test_spec(sets: usize) -> VolumeSpec {
    VolumeSpec {
        format: SPEC_FORMAT,
        name: "gv0".into(),
        id: "8c3e2f6a-1b4d-4e5f-9a7b-0c1d2e3f4a5b".into(),
        replica: 3,
        bricks: (0..sets * 3)
            .map(|i| BrickRef {
                addr: format!("h{}:24101", i + 1),
                id: format!("00000000-0000-4000-8000-{:012}", i + 1),
            })
            .collect(),
        options: BTreeMap::new(),
        state: VolumeState::Created,
        created_by: "brickfs 0.1.0".into(),
        created_at: 1_700_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn names() {
        for ok in ["gv0", "a", "A_b-9", &"x".repeat(64)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", "a.b", &"x".repeat(65), "../x"] {
            let e = validate_name(bad).unwrap_err().0;
            assert!(e.contains("bad volume name"), "{e}");
        }
    }

    #[test]
    fn replica_counts() {
        assert!(validate_replica(3).is_ok());
        let e = validate_replica(2).unwrap_err().0;
        assert!(e.contains("only replica 3"), "{e}");
    }

    #[test]
    fn addrs() {
        for ok in [
            "h1:24101",
            "127.0.0.1:1",
            "[::1]:24101",
            "a-b.example.com:65535",
        ] {
            assert!(validate_addr(ok).is_ok(), "{ok}");
        }
        for bad in [
            "h1", "h1:", ":24101", "h1:0", "h1:65536", "h1:x", "h 1:2", "[zz]:1",
        ] {
            assert!(validate_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn brick_lists() {
        assert!(validate_bricks(3, &["a:1", "b:1", "c:1"]).is_ok());
        assert!(validate_bricks(3, &["a:1", "b:1", "c:1", "d:1", "e:1", "f:1"]).is_ok());
        let e = validate_bricks(3, &["a:1", "b:1", "c:1", "d:1"])
            .unwrap_err()
            .0;
        assert!(
            e.contains("4 bricks given") && e.contains("multiple of 3"),
            "{e}"
        );
        let e = validate_bricks(3, &[]).unwrap_err().0;
        assert!(e.contains("0 bricks"), "{e}");
        let e = validate_bricks(3, &["a:1", "b:1", "A:1"]).unwrap_err().0;
        assert_eq!(e, "brick A:1 is given twice (bricks 1 and 3)");
        let e = validate_bricks(2, &["a:1", "b:1"]).unwrap_err().0;
        assert!(e.contains("replica 2 is not supported"), "{e}");
    }

    #[test]
    fn options() {
        assert_eq!(validate_option("network.op-timeout", "3").unwrap(), "3");
        assert_eq!(
            validate_option("network.op-timeout", "2.50").unwrap(),
            "2.5"
        );
        assert_eq!(
            validate_option("performance.attr-timeout", "0").unwrap(),
            "0"
        );
        // Read by nothing, so refused (older specs that have it load without it).
        let e = validate_option("nfs.export", "ro").unwrap_err().0;
        assert!(e.contains("unknown option"), "{e}");
        let e = validate_option("network.op-timeout", "0").unwrap_err().0;
        assert!(
            e.contains("more than 0") && e.contains("known options"),
            "{e}"
        );
        for bad in ["-1", "soon", "nan", "inf", "1e9", ""] {
            assert!(validate_option("cluster.heal-retry", bad).is_err(), "{bad}");
        }
        let e = validate_option("performance.quick-read", "on")
            .unwrap_err()
            .0;
        assert!(
            e.contains("unknown option \"performance.quick-read\""),
            "{e}"
        );
        for o in OPTIONS {
            assert!(e.contains(o.key), "{e}");
            assert_eq!(validate_option(o.key, o.default).unwrap(), o.default);
        }
    }

    #[test]
    fn option_values_and_defaults() {
        let mut s = test_spec(1);
        assert_eq!(s.option("network.op-timeout"), Some("5"));
        assert_eq!(
            s.option_duration("performance.attr-timeout"),
            Duration::from_secs(1)
        );
        assert_eq!(s.set_option("network.op-timeout", "3.0").unwrap(), "3");
        assert_eq!(
            s.option_duration("network.op-timeout"),
            Duration::from_secs(3)
        );
        assert_eq!(s.option("nope"), None);
        assert!(s.set_option("nope", "1").is_err());
        assert!(!s.options.contains_key("nope"));
    }

    #[test]
    fn retired_options_are_dropped_on_load() {
        let mut s = test_spec(1);
        s.options.insert("nfs.export".into(), "ro".into());
        let loaded = VolumeSpec::from_json(s.to_json().as_bytes()).unwrap();
        assert!(loaded.options.is_empty());
    }

    #[test]
    fn json_round_trip() {
        let mut s = test_spec(2);
        s.set_option("network.op-timeout", "3").unwrap();
        s.state = VolumeState::Started;
        let text = s.to_json();
        assert!(text.contains("\"state\": \"started\""), "{text}");
        assert_eq!(VolumeSpec::from_json(text.as_bytes()).unwrap(), s);
        assert_eq!(s.replica_sets(), 2);
        assert_eq!(s.type_name(), "Distributed-Replicate");
        assert_eq!(test_spec(1).type_name(), "Replicate");
        assert_eq!(VolumeSpec::key("gv0"), "volumes/gv0");
    }

    #[test]
    fn bad_documents_are_refused() {
        let good = test_spec(1);
        let check = |f: &dyn Fn(&mut VolumeSpec), want: &str| {
            let mut s = good.clone();
            f(&mut s);
            let e = VolumeSpec::from_json(s.to_json().as_bytes()).unwrap_err().0;
            assert!(e.contains(want), "{want}: {e}");
        };
        check(&|s| s.name = "a b".into(), "bad volume name");
        check(&|s| s.replica = 2, "replica 2");
        check(&|s| s.bricks.truncate(2), "2 bricks given");
        check(&|s| s.bricks[2].id = s.bricks[0].id.clone(), "same brick");
        check(
            &|s| s.bricks[2].addr = s.bricks[0].addr.clone(),
            "given twice",
        );
        check(&|s| s.bricks[1].id.clear(), "has no id");
        check(&|s| s.id.clear(), "has no id");
        check(&|s| s.format = 99, "newer");
        check(
            &|s| {
                s.options.insert("x.y".into(), "1".into());
            },
            "unknown option",
        );
        check(
            &|s| {
                s.options.insert("network.op-timeout".into(), "3.0".into());
            },
            "non-canonical",
        );
        assert!(VolumeSpec::from_json(b"{")
            .unwrap_err()
            .0
            .contains("bad JSON"));
        assert!(VolumeSpec::from_json(b"{}").is_err());
    }
}
