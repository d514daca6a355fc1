//! Which keys (and list prefixes) a store accepts. Both backends check the
//! same rules, so a key that works on a laptop's file store also works on
//! etcd, and file-store keys map to paths without any escaping: no empty
//! component, no `.`/`..` (no path can leave the store's directory).

use crate::StoreError;

/// The longest key accepted, in bytes (a file-store key becomes a path; this
/// stays far below PATH_MAX with any sensible store directory).
pub const MAX_KEY_LEN: usize = 512;
/// The longest name between slashes: the file store makes each a file or
/// directory name, and those stop at 255 bytes (NAME_MAX) with the `,v,tmp`
/// suffix included.
pub const MAX_NAME_LEN: usize = 200;

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

fn is_component(c: &str) -> bool {
    !c.is_empty() && c.len() <= MAX_NAME_LEN && c != "." && c != ".." && c.bytes().all(is_name_byte)
}

/// Checks a key: `/`-separated names of `[A-Za-z0-9._-]` (at most
/// [`MAX_NAME_LEN`] bytes each), at most [`MAX_KEY_LEN`] bytes in all.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    if key.len() <= MAX_KEY_LEN && key.split('/').all(is_component) {
        Ok(())
    } else {
        Err(StoreError::BadKey(key.to_string()))
    }
}

/// Checks a `list` prefix. A prefix is a plain string prefix of keys
/// (`vol` matches `vol1` and `volumes/a`), so its last part may be any
/// start of a name (even empty); every part before a `/` must be a whole
/// name. The empty prefix lists everything.
pub fn check_prefix(prefix: &str) -> Result<(), StoreError> {
    let bad = || StoreError::BadKey(prefix.to_string());
    if prefix.len() > MAX_KEY_LEN {
        return Err(bad());
    }
    let mut parts: Vec<&str> = prefix.split('/').collect();
    let last = parts.pop().unwrap_or("");
    if parts.iter().all(|c| is_component(c))
        && last.len() <= MAX_NAME_LEN
        && last.bytes().all(is_name_byte)
    {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        for good in ["a", "volumes/gv0", "a.b/c-d/E_9", ".hidden", "a/..b"] {
            assert!(check_key(good).is_ok(), "{good}");
        }
        let name = "n".repeat(MAX_NAME_LEN);
        let longest = format!(
            "{name}/{name}/{}",
            "n".repeat(MAX_KEY_LEN - 2 * MAX_NAME_LEN - 2)
        );
        assert_eq!(longest.len(), MAX_KEY_LEN);
        assert!(check_key(&longest).is_ok());
        let too_long = format!("{longest}n");
        let long_name = format!("{name}n");
        for bad in [
            "", "/a", "a/", "a//b", ".", "a/./b", "..", "a/../b", "a b", "a\\b", "ä", &too_long,
            &long_name,
        ] {
            assert!(
                matches!(check_key(bad), Err(StoreError::BadKey(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn prefixes() {
        for good in ["", "vol", "volumes/", "volumes/g", "a/b/.", "."] {
            assert!(check_prefix(good).is_ok(), "{good}");
        }
        for bad in ["/", "/a", "a//", "../", "./x", "a b", "a/../"] {
            assert!(
                matches!(check_prefix(bad), Err(StoreError::BadKey(_))),
                "{bad}"
            );
        }
    }
}
