//! Scope tokens: which sub-volumes a tenant's host may reach on the bricks.
//!
//! The management API signs them (Ed25519, a key only it holds); bricks
//! verify them with the public half and cannot make one. A token is a
//! compact JWS (`header.claims.signature`, base64url without padding, as in
//! RFC 7515) so any JWT tool can read it, but only one algorithm is ever
//! accepted: the header must say `EdDSA` and name a key the brick knows; a
//! token saying `none`, `HS256` or anything else is refused before its
//! claims are read (the classic JWT mistakes: trusting the header's
//! algorithm, or a shared secret that lets every verifier mint).
//!
//! Key files, both written whole by `brickfs ca init` / `brickfs ca
//! scope-key`:
//! - [`SIGNING_KEY`] (`scope-signing.json`, secret, the API's): the cluster
//!   name, the key id and the PKCS#8 private key;
//! - [`VERIFY_KEYS`] (`scope-keys.json`, public, the bricks'): the cluster
//!   name and every public key accepted, so a new key and the old one are
//!   trusted side by side during a rotation.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::ca::write_whole;
use crate::TlsError;

pub const SIGNING_KEY: &str = "scope-signing.json";
pub const VERIFY_KEYS: &str = "scope-keys.json";

/// Who signs: always the management API.
pub const ISSUER: &str = "brickfs-api";
const ALG: &str = "EdDSA";
/// Bounds on what a verifier reads: a token is a few hundred bytes.
pub const MAX_TOKEN: usize = 16 * 1024;
pub const MAX_ROOTS: usize = 1024;
/// Clocks of the API and of a brick may disagree this much.
const SKEW_SECS: u64 = 60;

#[derive(Serialize, Deserialize)]
struct SigningFile {
    cluster: String,
    kid: String,
    /// Base64 of the PKCS#8 document.
    pkcs8: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct PublicKeyEntry {
    kid: String,
    /// Base64 of the 32-byte Ed25519 public key.
    ed25519: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct VerifyFile {
    cluster: String,
    keys: Vec<PublicKeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

/// A sub-volume the token lets its holder into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeRoot {
    /// Its name (for logs).
    pub name: String,
    /// Its root directory's gfid, 32 hex digits.
    pub id: String,
    /// Owner and group 0 become 65534 (nobody) in what the holder creates
    /// or chowns.
    pub squash: bool,
}

/// What a token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The cluster it is for (the name in the key files).
    pub aud: String,
    /// The tenant.
    pub sub: String,
    /// The volume the roots are in.
    pub vol: String,
    pub roots: Vec<ScopeRoot>,
    /// Unix seconds.
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

fn bad(why: impl Into<String>) -> TlsError {
    TlsError::Scope(why.into())
}

fn key_id(public: &[u8]) -> String {
    blake3::hash(public).to_hex()[..16].to_string()
}

/// Makes a new signing key for `cluster` in `dir`, and adds its public half
/// to `dir/scope-keys.json` (keeping the keys already there: a rotation
/// trusts both until the old one is removed from the file).
pub fn generate(dir: &Path, cluster: &str) -> Result<String, TlsError> {
    if cluster.is_empty() || cluster.len() > 64 {
        return Err(TlsError::Usage(
            "a cluster name is 1 to 64 characters".into(),
        ));
    }
    let rng = SystemRandom::new();
    let pkcs8 =
        Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| bad("cannot generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| bad("generated key does not load"))?;
    let kid = key_id(pair.public_key().as_ref());
    let keys_path = dir.join(VERIFY_KEYS);
    let mut keys = match std::fs::read(&keys_path) {
        Ok(bytes) => {
            let old: VerifyFile = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("{}: {e}", keys_path.display())))?;
            if old.cluster != cluster {
                return Err(TlsError::Usage(format!(
                    "{} is for cluster {:?}, not {cluster:?}",
                    keys_path.display(),
                    old.cluster
                )));
            }
            old
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => VerifyFile {
            cluster: cluster.to_string(),
            keys: Vec::new(),
        },
        Err(e) => return Err(TlsError::io(&keys_path, e)),
    };
    keys.keys.push(PublicKeyEntry {
        kid: kid.clone(),
        ed25519: STANDARD.encode(pair.public_key().as_ref()),
    });
    let signing = SigningFile {
        cluster: cluster.to_string(),
        kid: kid.clone(),
        pkcs8: STANDARD.encode(pkcs8.as_ref()),
    };
    // The public half first: a token of the new key is verifiable as soon
    // as the API can sign one.
    write_whole(&keys_path, &to_json(&keys)?, false)?;
    write_whole(&dir.join(SIGNING_KEY), &to_json(&signing)?, true)?;
    Ok(kid)
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, TlsError> {
    serde_json::to_vec_pretty(v).map_err(|e| bad(e.to_string()))
}

/// The management API's half: signs claims.
pub struct Signer {
    cluster: String,
    kid: String,
    pair: Ed25519KeyPair,
}

impl Signer {
    pub fn load(path: &Path) -> Result<Signer, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
        let file: SigningFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let pkcs8 = STANDARD
            .decode(file.pkcs8.as_bytes())
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| bad(format!("{}: not an Ed25519 key", path.display())))?;
        Ok(Signer {
            cluster: file.cluster,
            kid: file.kid,
            pair,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// A token for `tenant` into `roots` of `volume`, valid `ttl_secs` from
    /// `now`.
    pub fn issue(
        &self,
        tenant: &str,
        volume: &str,
        roots: Vec<ScopeRoot>,
        now: u64,
        ttl_secs: u64,
    ) -> Result<String, TlsError> {
        self.sign(&Claims {
            iss: ISSUER.to_string(),
            aud: self.cluster.clone(),
            sub: tenant.to_string(),
            vol: volume.to_string(),
            roots,
            iat: now,
            nbf: now,
            exp: now.saturating_add(ttl_secs),
        })
    }

    /// Signs any claims (the tests make wrong ones on purpose).
    pub fn sign(&self, claims: &Claims) -> Result<String, TlsError> {
        let header = Header {
            alg: ALG.to_string(),
            typ: Some("JWT".to_string()),
            kid: Some(self.kid.clone()),
        };
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| bad(e.to_string()))?)
        );
        let sig = self.pair.sign(signed.as_bytes());
        Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// A brick's half: checks tokens.
pub struct Verifier {
    cluster: String,
    keys: Vec<(String, Vec<u8>)>,
}

impl Verifier {
    pub fn load(path: &Path) -> Result<Verifier, TlsError> {
        let bytes = std::fs::read(path).map_err(|e| TlsError::io(path, e))?;
        let file: VerifyFile =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut keys = Vec::new();
        for k in file.keys {
            let public = STANDARD
                .decode(k.ed25519.as_bytes())
                .map_err(|e| bad(format!("{}: key {}: {e}", path.display(), k.kid)))?;
            keys.push((k.kid, public));
        }
        Ok(Verifier {
            cluster: file.cluster,
            keys,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The claims of `token` if it is well-formed, signed by a known key,
    /// issued by the API for this cluster, and valid at `now` (unix
    /// seconds). Whose it is and which volume it names are the caller's
    /// to check against the connection.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TlsError> {
        if token.len() > MAX_TOKEN {
            return Err(bad(format!("scope token over {MAX_TOKEN} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("scope token is not three dot-separated parts"));
        };
        let header: Header = decode_json(h, "header")?;
        if header.alg != ALG {
            return Err(bad(format!(
                "scope token algorithm {:?} refused (only {ALG})",
                header.alg
            )));
        }
        let kid = header.kid.unwrap_or_default();
        let Some((_, public)) = self.keys.iter().find(|(k, _)| *k == kid) else {
            return Err(bad(format!(
                "scope token signed by unknown key {kid:?}: not this cluster's API"
            )));
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| bad("scope token signature is not base64url"))?;
        let signed = &token[..h.len() + 1 + c.len()];
        UnparsedPublicKey::new(&ED25519, public)
            .verify(signed.as_bytes(), &sig)
            .map_err(|_| bad("scope token signature does not verify"))?;
        let claims: Claims = decode_json(c, "claims")?;
        if claims.iss != ISSUER {
            return Err(bad(format!("scope token issued by {:?}", claims.iss)));
        }
        if claims.aud != self.cluster {
            return Err(bad(format!(
                "scope token is for cluster {:?}, this is {:?}",
                claims.aud, self.cluster
            )));
        }
        if claims.nbf > now.saturating_add(SKEW_SECS) {
            return Err(bad("scope token not valid yet"));
        }
        if claims.exp <= now {
            return Err(bad("scope token expired"));
        }
        if claims.roots.len() > MAX_ROOTS {
            return Err(bad(format!(
                "scope token names over {MAX_ROOTS} sub-volumes"
            )));
        }
        Ok(claims)
    }
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str, what: &str) -> Result<T, TlsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.as_bytes())
        .map_err(|_| bad(format!("scope token {what} is not base64url")))?;
    serde_json::from_slice(&bytes).map_err(|e| bad(format!("scope token {what}: {e}")))
}

/// The claims without checking anything: for a client to learn what its
/// own token says (the bricks check it).
pub fn peek(token: &str) -> Result<Claims, TlsError> {
    let c = token
        .split('.')
        .nth(1)
        .ok_or_else(|| bad("scope token is not three dot-separated parts"))?;
    decode_json(c, "claims")
}

/// Now, in unix seconds.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A signer and its verifier of one fixed key, for the fuzz target
/// (`fuzz/fuzz_targets/scope_token.rs`) and its seeds only: not an API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    pub fn fixed_key() -> Option<(Signer, Verifier)> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).ok()?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = key_id(&public);
        let verifier = Verifier {
            cluster: "fuzz".into(),
            keys: vec![(kid.clone(), public)],
        };
        let signer = Signer {
            cluster: "fuzz".into(),
            kid,
            pair,
        };
        Some((signer, verifier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> ScopeRoot {
        ScopeRoot {
            name: "pvc-1".into(),
            id: "0123456789abcdef0123456789abcdef".into(),
            squash: true,
        }
    }

    struct Keys(tempfile::TempDir);

    impl Keys {
        fn new(cluster: &str) -> Keys {
            let d = tempfile::tempdir().unwrap();
            generate(d.path(), cluster).unwrap();
            Keys(d)
        }
        fn signer(&self) -> Signer {
            Signer::load(&self.0.path().join(SIGNING_KEY)).unwrap()
        }
        fn verifier(&self) -> Verifier {
            Verifier::load(&self.0.path().join(VERIFY_KEYS)).unwrap()
        }
        /// acme's token into `root()` of gv, valid 1000..1060.
        fn token(&self) -> String {
            self.signer()
                .issue("acme", "gv", vec![root()], 1000, 60)
                .unwrap()
        }
    }

    fn refused(v: &Verifier, token: &str, now: u64) -> String {
        v.verify(token, now).unwrap_err().to_string()
    }

    #[test]
    fn a_token_of_the_api_verifies_with_its_claims() {
        let k = Keys::new("c1");
        let t = k.token();
        let c = k.verifier().verify(&t, 1010).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.vol.as_str(), c.aud.as_str()),
            ("acme", "gv", "c1")
        );
        assert_eq!(c.roots, vec![root()]);
        assert_eq!(peek(&t).unwrap(), c);
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let k = Keys::new("c1");
        let t = k.token();
        assert!(refused(&k.verifier(), &t, 1060).contains("expired"));
        assert!(refused(&k.verifier(), &t, 900).contains("not valid yet"));
    }

    #[test]
    fn tokens_of_another_issuer_or_cluster_are_refused() {
        let ours = Keys::new("c1");
        let theirs = Keys::new("c1");
        let t = theirs.token();
        assert!(refused(&ours.verifier(), &t, 1000).contains("unknown key"));

        let other_cluster = Keys::new("c2");
        let mut claims = peek(&t).unwrap();
        claims.aud = "c2".into();
        // Signed by a key we trust, but for cluster c2.
        let mut v = ours.verifier();
        v.keys.extend(other_cluster.verifier().keys);
        let t2 = other_cluster.signer().sign(&claims).unwrap();
        assert!(refused(&v, &t2, 1000).contains("cluster"));

        let mut claims = peek(&t).unwrap();
        claims.iss = "someone-else".into();
        let t3 = ours.signer().sign(&claims).unwrap();
        assert!(refused(&ours.verifier(), &t3, 1000).contains("issued by"));
    }

    #[test]
    fn altered_and_unsigned_tokens_are_refused() {
        let k = Keys::new("c1");
        let v = k.verifier();
        let t = k.token();
        let parts: Vec<&str> = t.split('.').collect();

        // Claims of another tenant under the original signature.
        let mut claims = peek(&t).unwrap();
        claims.sub = "globex".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap()),
            parts[2]
        );
        assert!(refused(&v, &forged, 1000).contains("does not verify"));

        // One bit of the signature flipped.
        let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        sig[7] ^= 1;
        let flipped = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(sig));
        assert!(refused(&v, &flipped, 1000).contains("does not verify"));

        // alg none, with and without a signature; and a MAC algorithm.
        for alg in ["none", "None", "HS256"] {
            let h = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            for sig in ["", parts[2]] {
                let t = format!("{h}.{}.{sig}", parts[1]);
                assert!(refused(&v, &t, 1000).contains("algorithm"), "{alg}");
            }
        }

        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!", &"x".repeat(MAX_TOKEN + 1)] {
            assert!(v.verify(junk, 1000).is_err(), "{junk:.20}");
        }
    }

    #[test]
    fn a_rotation_trusts_the_old_and_the_new_key() {
        let d = tempfile::tempdir().unwrap();
        generate(d.path(), "c1").unwrap();
        let old = Signer::load(&d.path().join(SIGNING_KEY)).unwrap();
        generate(d.path(), "c1").unwrap();
        let new = Signer::load(&d.path().join(SIGNING_KEY)).unwrap();
        assert_ne!(old.kid, new.kid);
        let v = Verifier::load(&d.path().join(VERIFY_KEYS)).unwrap();
        for s in [&old, &new] {
            let t = s.issue("acme", "gv", vec![root()], 1000, 60).unwrap();
            v.verify(&t, 1000).unwrap();
        }
        assert!(
            generate(d.path(), "c2").is_err(),
            "a key file is one cluster's"
        );
    }
}
