//! Export rules. Every volume exports `/<volume>`; a client may mount it or
//! any directory below it. `--export` adds rules for sub-trees (read-only,
//! allowed client networks, root squash); a mount path falls under the
//! rule with the longest matching prefix, and every handle reached through
//! that mount carries the rule's index, so the rule applies to each call.
//!
//! Spec: `PATH[,ro][,root_squash][,allow=CIDR[+CIDR...]]`, e.g.
//! `/gv0/pvc-123,ro,allow=10.0.0.0/8+192.168.1.7/32`.

use std::net::IpAddr;

pub use tenant::Cidr;

use nfs3_types::mount::mountstat3;
use proto::Name;

use crate::GatewayError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportRule {
    /// `/<volume>` or `/<volume>/sub/dir`, normalised (no trailing slash).
    pub path: String,
    pub read_only: bool,
    /// Client networks allowed; empty means everyone.
    pub allow: Vec<Cidr>,
    /// Calls from uid 0 run as nobody.
    pub root_squash: bool,
}

impl ExportRule {
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip))
    }
}

#[derive(Clone, Debug)]
pub struct Exports {
    volume: String,
    rules: Vec<ExportRule>,
}

/// Path components, refusing anything that is not a plain name.
fn components(path: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for p in &parts {
        if Name::from(*p).validate().is_err() {
            return None;
        }
    }
    Some(parts)
}

impl Exports {
    /// Rule 0 is always the whole volume (read-write, everyone, no squash,
    /// unless a spec for `/<volume>` itself says otherwise).
    pub fn parse(volume: &str, specs: &[String]) -> Result<Exports, GatewayError> {
        let bad = |spec: &str, why: &str| GatewayError::BadExport {
            spec: spec.to_string(),
            why: why.to_string(),
        };
        let mut rules = vec![ExportRule {
            path: format!("/{volume}"),
            read_only: false,
            allow: Vec::new(),
            root_squash: false,
        }];
        for spec in specs {
            let mut parts = spec.split(',');
            let path = parts.next().unwrap_or_default();
            let comps =
                components(path).ok_or_else(|| bad(spec, "path components must be plain names"))?;
            if comps.first() != Some(&volume) {
                return Err(bad(spec, &format!("exports live under /{volume}")));
            }
            let mut rule = ExportRule {
                path: format!("/{}", comps.join("/")),
                read_only: false,
                allow: Vec::new(),
                root_squash: false,
            };
            for opt in parts {
                match opt {
                    "ro" => rule.read_only = true,
                    "rw" => rule.read_only = false,
                    "root_squash" => rule.root_squash = true,
                    "no_root_squash" => rule.root_squash = false,
                    o if o.starts_with("allow=") => {
                        for c in o["allow=".len()..].split('+') {
                            rule.allow.push(
                                Cidr::parse(c)
                                    .ok_or_else(|| bad(spec, &format!("bad network {c:?}")))?,
                            );
                        }
                    }
                    o => {
                        return Err(bad(
                            spec,
                            &format!("unknown option {o:?} (ro, rw, root_squash, allow=CIDR+CIDR)"),
                        ))
                    }
                }
            }
            match rules.iter_mut().find(|r| r.path == rule.path) {
                Some(existing) => *existing = rule,
                None => rules.push(rule),
            }
            if rules.len() > 255 {
                return Err(bad(spec, "at most 255 export rules"));
            }
        }
        Ok(Exports {
            volume: volume.to_string(),
            rules,
        })
    }

    pub fn rule(&self, index: u8) -> Option<&ExportRule> {
        self.rules.get(index as usize)
    }

    pub fn rules(&self) -> &[ExportRule] {
        &self.rules
    }

    /// The rule a MOUNT path falls under (longest matching prefix), its
    /// index, and the names to walk from the volume root to the mounted
    /// directory.
    pub fn for_mount_path(&self, path: &[u8]) -> Result<(u8, &ExportRule, Vec<Name>), mountstat3> {
        let path = std::str::from_utf8(path).map_err(|_| mountstat3::MNT3ERR_INVAL)?;
        if path.len() > nfs3_types::mount::MNTPATHLEN {
            return Err(mountstat3::MNT3ERR_NAMETOOLONG);
        }
        let comps = components(path).ok_or(mountstat3::MNT3ERR_INVAL)?;
        if comps.first() != Some(&self.volume.as_str()) {
            return Err(mountstat3::MNT3ERR_NOENT);
        }
        let mut best: Option<(usize, usize)> = None;
        for (i, r) in self.rules.iter().enumerate() {
            let rc: Vec<&str> = r.path.split('/').filter(|p| !p.is_empty()).collect();
            if comps.len() >= rc.len()
                && comps[..rc.len()] == rc[..]
                && best.is_none_or(|(_, n)| rc.len() > n)
            {
                best = Some((i, rc.len()));
            }
        }
        let (i, _) = best.ok_or(mountstat3::MNT3ERR_NOENT)?;
        let names = comps[1..].iter().map(|c| Name::from(*c)).collect();
        Ok((i as u8, &self.rules[i], names))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(c.contains("10.1.2.3".parse().expect("ip")));
        assert!(!c.contains("10.2.0.1".parse().expect("ip")));
        assert!(Cidr::parse("127.0.0.1")
            .expect("host")
            .contains("127.0.0.1".parse().expect("ip")));
        assert!(Cidr::parse("0.0.0.0/0")
            .expect("all")
            .contains("8.8.8.8".parse().expect("ip")));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
        assert!(Cidr::parse("nonsense").is_none());
    }

    #[test]
    fn mount_paths_pick_the_longest_rule() {
        let e = Exports::parse(
            "gv0",
            &[
                "/gv0/pvc-1,ro,allow=10.0.0.0/8".into(),
                "/gv0/pvc-1/deep,root_squash".into(),
            ],
        )
        .expect("exports");
        let (i, r, names) = e.for_mount_path(b"/gv0/pvc-1/x").expect("mount");
        assert_eq!((i, r.read_only, names.len()), (1, true, 2));
        let (i, r, _) = e.for_mount_path(b"/gv0/pvc-1/deep/y").expect("mount");
        assert_eq!((i, r.root_squash), (2, true));
        let (i, _, names) = e.for_mount_path(b"/gv0").expect("mount");
        assert_eq!((i, names.len()), (0, 0));
        assert!(matches!(
            e.for_mount_path(b"/other"),
            Err(mountstat3::MNT3ERR_NOENT)
        ));
        assert!(matches!(
            e.for_mount_path(b"/gv0/../etc"),
            Err(mountstat3::MNT3ERR_INVAL)
        ));
        assert!(Exports::parse("gv0", &["/etc,ro".into()]).is_err());
        assert!(Exports::parse("gv0", &["/gv0/x,bogus".into()]).is_err());
    }
}
