//! Tokens: `bfs1.<tenant>.<64 hex>`. The tenant's name in the token finds
//! its record in one read; the 256-bit secret is checked against the
//! stored hash. A plain hash is enough (no slow KDF): the secret is random,
//! not a password someone chose.

use std::fmt;

use rand::RngCore;

const PREFIX: &str = "bfs1";
const SECRET_BYTES: usize = 32;

#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    tenant: String,
    secret: [u8; SECRET_BYTES],
}

impl Token {
    pub fn generate(tenant: &str) -> Token {
        let mut secret = [0u8; SECRET_BYTES];
        rand::rng().fill_bytes(&mut secret);
        Token {
            tenant: tenant.to_string(),
            secret,
        }
    }

    /// `None` for anything not shaped like a token.
    pub fn parse(s: &str) -> Option<Token> {
        let mut parts = s.trim().split('.');
        if parts.next()? != PREFIX {
            return None;
        }
        let tenant = parts.next()?;
        let hex = parts.next()?;
        // Hex digits only: `from_str_radix` alone also takes a sign ("+f"),
        // which gave one secret several spellings.
        if parts.next().is_some()
            || hex.len() != SECRET_BYTES * 2
            || !hex.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        let mut secret = [0u8; SECRET_BYTES];
        for (i, b) in secret.iter_mut().enumerate() {
            *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        crate::validate_name(tenant).ok()?;
        Some(Token {
            tenant: tenant.to_string(),
            secret,
        })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// What the store keeps. The tenant's name is hashed in, so a secret
    /// only ever works with the name it was made for.
    pub fn secret_hash(&self) -> String {
        self.digest().to_hex().to_string()
    }

    fn digest(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        h.update(self.tenant.as_bytes());
        h.update(b"\0");
        h.update(&self.secret);
        h.finalize()
    }

    /// Constant-time comparison with a stored hash.
    pub fn matches(&self, stored_hex: &str) -> bool {
        let Ok(stored) = blake3::Hash::from_hex(stored_hex) else {
            return false;
        };
        // blake3::Hash's PartialEq is constant-time.
        self.digest() == stored
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}.{}.", self.tenant)?;
        for b in self.secret {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Never shows the secret, so a token in a `{:?}` log line leaks nothing.
impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({}, …)", self.tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = Token::generate("a1");
        let s = t.to_string();
        assert_eq!(Token::parse(&s), Some(t.clone()));
        assert!(t.matches(&t.secret_hash()));
        assert!(!Token::generate("a1").matches(&t.secret_hash()));
        assert!(!t.matches("not hex"));
        assert!(!format!("{t:?}").contains(&s[10..]));
        for bad in [
            "",
            "bfs1",
            "bfs1.a1",
            "bfs2.a1.00",
            &format!("{s}.x"),
            &s[..s.len() - 1],
        ] {
            assert!(Token::parse(bad).is_none(), "{bad}");
        }
    }

    /// Found by the `tenant_token` fuzz target: a "+" before a hex digit
    /// parsed, so the same secret had more than one spelling.
    #[test]
    fn only_hex_digits_spell_a_secret() {
        let s = Token::generate("a1").to_string();
        let hex_at = "bfs1.a1.".len();
        let signed = format!("{}+{}", &s[..hex_at], &s[hex_at + 1..]);
        assert_eq!(signed.len(), s.len());
        assert!(Token::parse(&signed).is_none(), "{signed}");
        // Upper case is still the same token.
        let upper = format!("{}{}", &s[..hex_at], s[hex_at..].to_ascii_uppercase());
        assert_eq!(Token::parse(&upper), Token::parse(&s));
    }
}
