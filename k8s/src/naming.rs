//! Names: the PV of a claim (`pvc-<claim uid>`, so a retry or a second
//! replica finds the one it made) and the sub-volume of a claim, from the
//! class's `pathPattern` in nfs-subdir-external-provisioner's syntax:
//! `${.PVC.namespace}`, `${.PVC.name}`, `${.PVC.labels.X}`,
//! `${.PVC.annotations.X}` (and `${.PV.name}`); a label or annotation the
//! claim lacks is empty. The result is sanitised to the management API's
//! alphabet `[A-Za-z0-9._-]` and shortened to 100 characters with a stable
//! hash suffix. Pure.

use std::collections::BTreeMap;

/// The pattern when a class names none: `<namespace>-<pvc>-<pv>`, unique
/// per claim because the PV name holds the claim's uid.
pub const DEFAULT_PATTERN: &str = "${.PVC.namespace}-${.PVC.name}-${.PV.name}";

/// Longest sub-volume name the management API accepts.
pub const MAX_NAME: usize = 100;
/// Hex digits of the hash that ends a shortened name.
const HASH_HEX: usize = 12;

/// The PV name of the claim with this uid.
pub fn pv_name(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// What a pattern may refer to.
pub struct ClaimFields<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub pv_name: &'a str,
}

enum Piece<'p> {
    Text(&'p str),
    Namespace,
    Name,
    Label(&'p str),
    Annotation(&'p str),
    PvName,
}

fn parse(pattern: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed \"${{\" in {pattern:?}"))?;
        let field = after[..end].trim();
        out.push(match field {
            ".PVC.namespace" => Piece::Namespace,
            ".PVC.name" => Piece::Name,
            ".PV.name" => Piece::PvName,
            f => {
                if let Some(k) = f.strip_prefix(".PVC.labels.").filter(|k| !k.is_empty()) {
                    Piece::Label(k)
                } else if let Some(k) = f
                    .strip_prefix(".PVC.annotations.")
                    .filter(|k| !k.is_empty())
                {
                    Piece::Annotation(k)
                } else {
                    return Err(format!(
                        "unknown field \"${{{f}}}\" (known: ${{.PVC.namespace}}, ${{.PVC.name}}, \
                         ${{.PVC.labels.KEY}}, ${{.PVC.annotations.KEY}}, ${{.PV.name}})"
                    ));
                }
            }
        });
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    if out.is_empty() {
        return Err("empty pattern".into());
    }
    Ok(out)
}

/// Whether `pattern` is well-formed (for refusing a class's parameter).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    parse(pattern).map(|_| ())
}

/// The sub-volume name of a claim: the expanded pattern, sanitised and
/// shortened. Fails when nothing usable is left (a pattern of only a
/// missing label, say).
pub fn subvolume_name(pattern: Option<&str>, claim: &ClaimFields<'_>) -> Result<String, String> {
    let pattern = pattern.unwrap_or(DEFAULT_PATTERN);
    let mut raw = String::new();
    for piece in parse(pattern)? {
        raw.push_str(match piece {
            Piece::Text(t) => t,
            Piece::Namespace => claim.namespace,
            Piece::Name => claim.name,
            Piece::PvName => claim.pv_name,
            Piece::Label(k) => claim.labels.get(k).map_or("", String::as_str),
            Piece::Annotation(k) => claim.annotations.get(k).map_or("", String::as_str),
        });
    }
    let name = shorten(&sanitise(&raw));
    if name.is_empty() {
        return Err(format!(
            "pathPattern {pattern:?} gives an empty name for this claim"
        ));
    }
    Ok(name)
}

/// Every character outside `[A-Za-z0-9._-]` becomes `-`; leading dots go
/// (a name may not start with one).
pub fn sanitise(raw: &str) -> String {
    let s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    s.trim_start_matches('.').to_string()
}

/// Names of at most [`MAX_NAME`] stay; longer ones keep their start and
/// end in `-<12 hex of the whole name's blake3>`, so two long names that
/// share a prefix still differ, and the same name always shortens alike.
pub fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME {
        return name.to_string();
    }
    let hash = blake3::hash(name.as_bytes()).to_hex();
    // `name` is ASCII after sanitise, so byte slicing is on characters.
    let keep = MAX_NAME - 1 - HASH_HEX;
    format!("{}-{}", &name[..keep], &hash[..HASH_HEX])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn name(
        pattern: Option<&str>,
        labels: &[(&str, &str)],
        ann: &[(&str, &str)],
    ) -> Result<String, String> {
        let (labels, annotations) = (map(labels), map(ann));
        subvolume_name(
            pattern,
            &ClaimFields {
                namespace: "team-a",
                name: "data",
                labels: &labels,
                annotations: &annotations,
                pv_name: "pvc-1f2e",
            },
        )
    }

    #[test]
    fn default_pattern() {
        assert_eq!(name(None, &[], &[]).unwrap(), "team-a-data-pvc-1f2e");
        assert_eq!(pv_name("abc"), "pvc-abc");
    }

    #[test]
    fn fields() {
        let p = "${.PVC.namespace}.${.PVC.labels.app}_${.PVC.annotations.owner}/${.PVC.name}";
        let n = name(Some(p), &[("app", "web")], &[("owner", "bob")]).unwrap();
        assert_eq!(n, "team-a.web_bob-data");
        // A missing label is empty, as in nfs-subdir-external-provisioner.
        assert_eq!(name(Some("x-${.PVC.labels.nope}"), &[], &[]).unwrap(), "x-");
        assert_eq!(name(Some("fixed"), &[], &[]).unwrap(), "fixed");
    }

    #[test]
    fn sanitised() {
        assert_eq!(sanitise("a/b c:ü"), "a-b-c--");
        assert_eq!(sanitise("..hidden"), "hidden");
        let n = name(Some("${.PVC.annotations.x}"), &[], &[("x", "../../etc")]).unwrap();
        assert_eq!(n, "-..-etc");
        assert!(name(Some("${.PVC.labels.none}"), &[], &[]).is_err());
        assert!(name(Some("..."), &[], &[]).is_err());
    }

    #[test]
    fn shortened_stably() {
        let long = "a".repeat(150);
        let s = shorten(&long);
        assert_eq!(s.len(), MAX_NAME);
        assert_eq!(s, shorten(&long));
        assert!(s.starts_with(&"a".repeat(87)));
        let other = format!("{}b", "a".repeat(149));
        assert_ne!(shorten(&other), s, "names that share a prefix still differ");
        assert_eq!(shorten(&"x".repeat(100)), "x".repeat(100));
        let n = name(Some("${.PVC.labels.l}"), &[("l", &"é".repeat(120))], &[]).unwrap();
        assert_eq!(n.len(), MAX_NAME);
    }

    #[test]
    fn bad_patterns() {
        for p in ["${.PVC.uid}", "${.PVC.name", "${}", "${.PVC.labels.}", ""] {
            assert!(check_pattern(p).is_err(), "{p:?}");
        }
        assert!(check_pattern("${ .PVC.name }-x").is_ok());
    }
}
