//! The management API (`brickfs-api`, docs/api.md) as the provisioner uses
//! it: create, get, list, resize, delete and archive sub-volumes with the
//! tenant token. Every answer that is not a success becomes
//! [`Error::Api`] with the API's own code and message, so callers (and the
//! Events they write) can tell a full pool from a refused token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{ApiCode, Error};

/// Where the token comes from. A file is read again for every request, so
/// a rotated Secret takes effect without a restart.
#[derive(Clone, Debug)]
pub enum Token {
    File(PathBuf),
    Value(String),
}

impl Token {
    fn read(&self) -> Result<String, Error> {
        match self {
            Token::Value(v) => Ok(v.clone()),
            Token::File(path) => std::fs::read_to_string(path)
                .map(|t| t.trim().to_string())
                .map_err(|source| Error::TokenFile {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

/// A create (`POST …/subvolumes`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CreateRequest {
    pub name: String,
    pub bytes: u64,
    pub inodes: Option<u64>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub labels: BTreeMap<String, String>,
}

/// A sub-volume as the API shows it (fields the provisioner does not use
/// are not kept).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Subvolume {
    pub volume: String,
    pub name: String,
    pub bytes: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub state: String,
    pub export: String,
    #[serde(default)]
    pub archived: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    #[serde(default)]
    message: String,
}

/// Calls of the management API by operation, for `/metrics`.
pub fn calls() -> &'static Arc<telemetry::OpTable> {
    static TABLE: std::sync::OnceLock<Arc<telemetry::OpTable>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        Arc::new(telemetry::OpTable::new(
            "brickfs_provisioner_api_call",
            "Calls of the management API, by operation (errors: no answer, or a refusal other than 404)",
            &["create", "get", "list", "resize", "delete", "archive"],
        ))
    })
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    http: Arc<Mutex<Http>>,
    /// This provisioner's certificate; `None` with --insecure (plain HTTP).
    identity: Option<Arc<tls::Tls>>,
    timeout: Duration,
    base: String,
    token: Token,
}

/// The HTTP client, and the TLS configuration it was built with: a
/// certificate renewed on disk gives a new configuration, and the next
/// request a new client with it.
struct Http {
    config: Option<Arc<rustls::ClientConfig>>,
    client: reqwest::Client,
}

fn build(
    timeout: Duration,
    config: Option<&Arc<rustls::ClientConfig>>,
) -> Result<reqwest::Client, Error> {
    // reqwest looks for the process's default provider even for plain
    // HTTP; ring is the one every brickfs process uses. A second call
    // finds it installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout);
    if let Some(c) = config {
        builder = builder.tls_backend_preconfigured(rustls::ClientConfig::clone(c));
    }
    builder.build().map_err(|source| Error::Http {
        what: "building the HTTP client".into(),
        source,
    })
}

/// The API's TLS client configuration of `identity`: the server must show
/// a certificate of role api of the same CA.
fn api_config(identity: &tls::Tls) -> Result<Arc<rustls::ClientConfig>, Error> {
    identity
        .client_config(tls::Role::Api, tls::Alpn::Http)
        .ok_or_else(|| Error::Config("no TLS configuration for the management API".into()))
}

impl ApiClient {
    pub fn new(
        base: &str,
        token: Token,
        timeout: Duration,
        identity: Option<Arc<tls::Tls>>,
    ) -> Result<ApiClient, Error> {
        let base = base.trim_end_matches('/').to_string();
        // No plaintext fallback either way: the URL says what the port speaks.
        match (&identity, base.split_once("://").map(|(s, _)| s)) {
            (Some(_), Some("https")) | (None, Some("http")) => {}
            (Some(_), _) => {
                return Err(Error::Config(format!(
                    "--api {base}: the API is reached over TLS with this provisioner's \
                     certificate; give an https:// URL (http:// only with --insecure)"
                )))
            }
            (None, Some("https")) => {
                return Err(Error::Config(format!(
                    "--api {base}: https needs this provisioner's certificate; give --tls-dir \
                     (ca.pem, provisioner.pem, provisioner.key)"
                )))
            }
            (None, _) => {
                return Err(Error::Config(format!(
                    "--api {base}: not an http:// or https:// URL"
                )))
            }
        }
        let config = identity.as_deref().map(api_config).transpose()?;
        let client = build(timeout, config.as_ref())?;
        Ok(ApiClient {
            http: Arc::new(Mutex::new(Http { config, client })),
            identity,
            timeout,
            base,
            token,
        })
    }

    /// The HTTP client, rebuilt when the certificate was renewed.
    fn http(&self) -> Result<reqwest::Client, Error> {
        let mut http = self.http.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(identity) = &self.identity {
            let now = api_config(identity)?;
            if !http.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, &now)) {
                tracing::info!("TLS credentials renewed: new connections to the API use them");
                http.client = build(self.timeout, Some(&now))?;
                http.config = Some(now);
            }
        }
        Ok(http.client.clone())
    }

    fn url(&self, volume: &str, rest: &str) -> String {
        format!("{}/v1/volumes/{volume}/subvolumes{rest}", self.base)
    }

    async fn send(
        &self,
        op: &'static str,
        what: String,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let token = self.token.read()?;
        let started = std::time::Instant::now();
        let sent = req.bearer_auth(token).send().await;
        // 404 is an answer the callers expect (gone already), not a failure.
        let failed = match &sent {
            Ok(r) => !r.status().is_success() && r.status() != reqwest::StatusCode::NOT_FOUND,
            Err(_) => true,
        };
        calls().record(op, started.elapsed(), failed);
        let resp = sent.map_err(|source| Error::Http {
            what: what.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (ApiCode::parse(&b.error), b.message),
            Err(_) => (ApiCode::Other(format!("HTTP {status}")), text),
        };
        Err(Error::Api {
            what,
            status,
            code,
            message,
        })
    }

    async fn json<T: serde::de::DeserializeOwned>(
        what: String,
        resp: reqwest::Response,
    ) -> Result<T, Error> {
        resp.json()
            .await
            .map_err(|source| Error::Http { what, source })
    }

    /// Creates the sub-volume; also answers (`created == false`) when it is
    /// already there with the same settings.
    pub async fn create(
        &self,
        volume: &str,
        req: &CreateRequest,
    ) -> Result<(Subvolume, bool), Error> {
        let what = format!("creating sub-volume {volume}/{}", req.name);
        let resp = self
            .send(
                "create",
                what.clone(),
                self.http()?.post(self.url(volume, "")).json(req),
            )
            .await?;
        let created = resp.status() == reqwest::StatusCode::CREATED;
        Ok((Self::json(what, resp).await?, created))
    }

    /// The sub-volume, or `None` when there is none (or another tenant's).
    pub async fn get(&self, volume: &str, name: &str) -> Result<Option<Subvolume>, Error> {
        let what = format!("reading sub-volume {volume}/{name}");
        match self
            .send(
                "get",
                what.clone(),
                self.http()?.get(self.url(volume, &format!("/{name}"))),
            )
            .await
        {
            Ok(resp) => Ok(Some(Self::json(what, resp).await?)),
            Err(e) if e.api_code() == Some(&ApiCode::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn list(&self, volume: &str) -> Result<Vec<Subvolume>, Error> {
        let what = format!("listing the sub-volumes of {volume}");
        let resp = self
            .send("list", what.clone(), self.http()?.get(self.url(volume, "")))
            .await?;
        Self::json(what, resp).await
    }

    pub async fn resize(&self, volume: &str, name: &str, bytes: u64) -> Result<Subvolume, Error> {
        let what = format!("resizing sub-volume {volume}/{name} to {bytes} bytes");
        let body = serde_json::json!({ "bytes": bytes });
        let resp = self
            .send(
                "resize",
                what.clone(),
                self.http()?
                    .patch(self.url(volume, &format!("/{name}")))
                    .json(&body),
            )
            .await?;
        Self::json(what, resp).await
    }

    /// Deletes the sub-volume; `false` when it was already gone.
    pub async fn delete(&self, volume: &str, name: &str) -> Result<bool, Error> {
        let what = format!("deleting sub-volume {volume}/{name}");
        match self
            .send(
                "delete",
                what,
                self.http()?.delete(self.url(volume, &format!("/{name}"))),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.api_code() == Some(&ApiCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Archives the sub-volume; `false` when it was already gone (archived
    /// or deleted before).
    pub async fn archive(
        &self,
        volume: &str,
        name: &str,
        keep_secs: Option<u64>,
    ) -> Result<bool, Error> {
        let what = format!("archiving sub-volume {volume}/{name}");
        let body = match keep_secs {
            Some(n) => serde_json::json!({ "keep_seconds": n }),
            None => serde_json::json!({}),
        };
        match self
            .send(
                "archive",
                what,
                self.http()?
                    .post(self.url(volume, &format!("/{name}/archive")))
                    .json(&body),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.api_code() == Some(&ApiCode::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str, identity: Option<Arc<tls::Tls>>) -> Result<ApiClient, Error> {
        ApiClient::new(
            url,
            Token::Value("t".into()),
            Duration::from_secs(1),
            identity,
        )
    }

    #[test]
    fn the_url_says_what_the_port_speaks_and_nothing_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        tls::ca::init_with_roles(dir.path(), &[]).unwrap();
        let me = tls::Tls::open(tls::Files {
            ca: dir.path().join(tls::ca::BUNDLE),
            cert: dir.path().join("provisioner.pem"),
            key: dir.path().join("provisioner.key"),
        })
        .unwrap();
        assert!(client("https://api:9240", Some(me.clone())).is_ok());
        assert!(client("http://api:9240", None).is_ok());
        for (url, id) in [
            ("http://api:9240", Some(me.clone())),
            ("https://api:9240", None),
            ("api:9240", Some(me)),
            ("ftp://api", None),
        ] {
            let e = client(url, id).err().expect(url).to_string();
            assert!(e.contains("--api"), "{url}: {e}");
        }
    }
}
