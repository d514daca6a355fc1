//! A StorageClass's `parameters` and the PVC annotations that override
//! some of them, parsed once into [`ClassParams`]. Anything unknown or
//! malformed is refused with [`ParamError`], which names the parameter, so
//! the Event on the claim says exactly what to fix. Pure.

use std::collections::BTreeMap;

use crate::quantity;

/// What a PV's reclaim (`Delete` policy) does with the sub-volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnDelete {
    Delete,
    Archive,
    Retain,
}

impl OnDelete {
    pub fn as_str(self) -> &'static str {
        match self {
            OnDelete::Delete => "delete",
            OnDelete::Archive => "archive",
            OnDelete::Retain => "retain",
        }
    }

    pub fn parse(s: &str) -> Option<OnDelete> {
        match s {
            "delete" => Some(OnDelete::Delete),
            "archive" => Some(OnDelete::Archive),
            "retain" => Some(OnDelete::Retain),
            _ => None,
        }
    }
}

/// The class parameters, with the claim's overrides applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClassParams {
    /// The brickfs volume the sub-volumes are made in.
    pub volume: String,
    /// The NFS gateway's stable address, as PVs name it.
    pub server: String,
    pub path_pattern: Option<String>,
    pub on_delete: OnDelete,
    pub archive_keep_secs: Option<u64>,
    pub inodes: Option<u64>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The parameter names a class may use.
pub const KNOWN: &[&str] = &[
    "volume",
    "server",
    "pathPattern",
    "onDelete",
    "archiveKeep",
    "inodes",
    "mode",
    "uid",
    "gid",
];

/// Claim annotations that override `mode`, `uid`, `gid`.
pub const MODE_ANNOTATION: &str = "brickfs.io/mode";
pub const UID_ANNOTATION: &str = "brickfs.io/uid";
pub const GID_ANNOTATION: &str = "brickfs.io/gid";

pub const DEFAULT_MODE: u32 = 0o755;

/// A refused parameter: which one (as the user wrote it: a class parameter
/// or a claim annotation), and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_kind} {name:?}: {problem}")]
pub struct ParamError {
    /// "parameter" (of the StorageClass) or "annotation" (of the claim).
    pub source_kind: &'static str,
    pub name: String,
    pub problem: String,
}

fn param_err(name: &str, problem: impl Into<String>) -> ParamError {
    ParamError {
        source_kind: "parameter",
        name: name.to_string(),
        problem: problem.into(),
    }
}

/// Volume names as the management API puts them in paths.
pub fn valid_volume_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 100
        && !v.starts_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

fn parse_id(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl ClassParams {
    /// Parses a class's parameters, then applies the claim's annotations.
    pub fn parse(
        params: &BTreeMap<String, String>,
        claim_annotations: &BTreeMap<String, String>,
    ) -> Result<ClassParams, ParamError> {
        if let Some(unknown) = params.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(param_err(
                unknown,
                format!("unknown parameter (known: {})", KNOWN.join(", ")),
            ));
        }
        let get = |k: &str| params.get(k).map(|v| v.trim());
        let volume = get("volume").filter(|v| !v.is_empty()).ok_or_else(|| {
            param_err(
                "volume",
                "required: the brickfs volume to make sub-volumes in",
            )
        })?;
        if !valid_volume_name(volume) {
            return Err(param_err(
                "volume",
                format!("{volume:?} is not a volume name"),
            ));
        }
        let server = get("server")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| param_err("server", "required: the NFS gateway's address"))?;
        if server.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(param_err(
                "server",
                format!("{server:?} is not a host name or address"),
            ));
        }
        let path_pattern = match get("pathPattern") {
            None => None,
            Some(p) => {
                crate::naming::check_pattern(p).map_err(|e| param_err("pathPattern", e))?;
                Some(p.to_string())
            }
        };
        let on_delete = match get("onDelete") {
            None => OnDelete::Delete,
            Some(v) => OnDelete::parse(v).ok_or_else(|| {
                param_err(
                    "onDelete",
                    format!("{v:?}: expected delete, archive or retain"),
                )
            })?,
        };
        let archive_keep_secs = match get("archiveKeep") {
            None => None,
            Some(v) => Some(quantity::duration_secs(v).ok_or_else(|| {
                param_err(
                    "archiveKeep",
                    format!("{v:?}: expected a duration such as 720h"),
                )
            })?),
        };
        let inodes = match get("inodes") {
            None => None,
            Some(v) => Some(v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                param_err("inodes", format!("{v:?}: expected a positive number"))
            })?),
        };
        let mut p = ClassParams {
            volume: volume.to_string(),
            server: server.to_string(),
            path_pattern,
            on_delete,
            archive_keep_secs,
            inodes,
            mode: DEFAULT_MODE,
            uid: 0,
            gid: 0,
        };
        let octal =
            |v: &str| parse_mode(v).ok_or(format!("{v:?}: expected an octal mode such as 0775"));
        let id = |v: &str| parse_id(v).ok_or(format!("{v:?}: expected a number"));
        if let Some(v) = get("mode") {
            p.mode = octal(v).map_err(|e| param_err("mode", e))?;
        }
        if let Some(v) = get("uid") {
            p.uid = id(v).map_err(|e| param_err("uid", e))?;
        }
        if let Some(v) = get("gid") {
            p.gid = id(v).map_err(|e| param_err("gid", e))?;
        }
        let ann_err = |name: &str, problem: String| ParamError {
            source_kind: "annotation",
            name: name.to_string(),
            problem,
        };
        if let Some(v) = claim_annotations.get(MODE_ANNOTATION) {
            p.mode = octal(v.trim()).map_err(|e| ann_err(MODE_ANNOTATION, e))?;
        }
        if let Some(v) = claim_annotations.get(UID_ANNOTATION) {
            p.uid = id(v.trim()).map_err(|e| ann_err(UID_ANNOTATION, e))?;
        }
        if let Some(v) = claim_annotations.get(GID_ANNOTATION) {
            p.gid = id(v.trim()).map_err(|e| ann_err(GID_ANNOTATION, e))?;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[("volume", "gv0"), ("server", "10.0.0.5")];

    #[test]
    fn defaults() {
        let p = ClassParams::parse(&map(BASE), &map(&[])).unwrap();
        assert_eq!(p.volume, "gv0");
        assert_eq!(p.server, "10.0.0.5");
        assert_eq!(p.on_delete, OnDelete::Delete);
        assert_eq!((p.mode, p.uid, p.gid), (0o755, 0, 0));
        assert_eq!(
            (p.inodes, p.archive_keep_secs, p.path_pattern),
            (None, None, None)
        );
    }

    #[test]
    fn everything() {
        let mut m = map(BASE);
        m.extend(map(&[
            ("onDelete", "archive"),
            ("archiveKeep", "720h"),
            ("inodes", "1000"),
            ("mode", "0770"),
            ("uid", "1000"),
            ("gid", "2000"),
            ("pathPattern", "${.PVC.namespace}-${.PVC.labels.app}"),
        ]));
        let p = ClassParams::parse(&m, &map(&[])).unwrap();
        assert_eq!(p.on_delete, OnDelete::Archive);
        assert_eq!(p.archive_keep_secs, Some(720 * 3600));
        assert_eq!(p.inodes, Some(1000));
        assert_eq!((p.mode, p.uid, p.gid), (0o770, 1000, 2000));
        assert!(p.path_pattern.is_some());
    }

    #[test]
    fn claim_overrides() {
        let ann = map(&[
            (MODE_ANNOTATION, "700"),
            (UID_ANNOTATION, "5"),
            (GID_ANNOTATION, "6"),
        ]);
        let p = ClassParams::parse(&map(BASE), &ann).unwrap();
        assert_eq!((p.mode, p.uid, p.gid), (0o700, 5, 6));
        let bad = map(&[(UID_ANNOTATION, "-1")]);
        let e = ClassParams::parse(&map(BASE), &bad).unwrap_err();
        assert_eq!(
            (e.source_kind, e.name.as_str()),
            ("annotation", UID_ANNOTATION)
        );
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("server", "s")], "volume"),
            (&[("volume", "gv0")], "server"),
            (
                &[("volume", "gv0"), ("server", "s"), ("color", "red")],
                "color",
            ),
            (&[("volume", "../x"), ("server", "s")], "volume"),
            (&[("volume", "v"), ("server", "a b")], "server"),
            (
                &[("volume", "v"), ("server", "s"), ("onDelete", "shred")],
                "onDelete",
            ),
            (
                &[("volume", "v"), ("server", "s"), ("archiveKeep", "30d")],
                "archiveKeep",
            ),
            (
                &[("volume", "v"), ("server", "s"), ("inodes", "0")],
                "inodes",
            ),
            (
                &[("volume", "v"), ("server", "s"), ("mode", "0899")],
                "mode",
            ),
            (
                &[("volume", "v"), ("server", "s"), ("mode", "17777")],
                "mode",
            ),
            (&[("volume", "v"), ("server", "s"), ("uid", "root")], "uid"),
            (
                &[("volume", "v"), ("server", "s"), ("gid", "99999999999")],
                "gid",
            ),
            (
                &[
                    ("volume", "v"),
                    ("server", "s"),
                    ("pathPattern", "${.PVC.uid}"),
                ],
                "pathPattern",
            ),
        ];
        for (params, name) in cases {
            let e = ClassParams::parse(&map(params), &map(&[])).unwrap_err();
            assert_eq!(e.name, *name, "{params:?}: {e}");
            assert_eq!(e.source_kind, "parameter");
            assert!(e.to_string().contains(name), "{e}");
        }
    }
}
