//! The management API (`brickfs-api`, docs/api.md) as the provisioner uses
//! it: create, get, list, resize, delete and archive sub-volumes with the
//! tenant token. Every answer that is not a success becomes
//! [`Error::Api`] with the API's own code and message, so callers (and the
//! Events they write) can tell a full pool from a refused token.

use std::collections::BTreeMap;
use std::path::PathBuf;
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

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Token,
}

impl ApiClient {
    pub fn new(base: &str, token: Token, timeout: Duration) -> Result<ApiClient, Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|source| Error::Http {
                what: "building the HTTP client".into(),
                source,
            })?;
        Ok(ApiClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, volume: &str, rest: &str) -> String {
        format!("{}/v1/volumes/{volume}/subvolumes{rest}", self.base)
    }

    async fn send(
        &self,
        what: String,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let token = self.token.read()?;
        let resp = req
            .bearer_auth(token)
            .send()
            .await
            .map_err(|source| Error::Http {
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
            .send(what.clone(), self.http.post(self.url(volume, "")).json(req))
            .await?;
        let created = resp.status() == reqwest::StatusCode::CREATED;
        Ok((Self::json(what, resp).await?, created))
    }

    /// The sub-volume, or `None` when there is none (or another tenant's).
    pub async fn get(&self, volume: &str, name: &str) -> Result<Option<Subvolume>, Error> {
        let what = format!("reading sub-volume {volume}/{name}");
        match self
            .send(
                what.clone(),
                self.http.get(self.url(volume, &format!("/{name}"))),
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
            .send(what.clone(), self.http.get(self.url(volume, "")))
            .await?;
        Self::json(what, resp).await
    }

    pub async fn resize(&self, volume: &str, name: &str, bytes: u64) -> Result<Subvolume, Error> {
        let what = format!("resizing sub-volume {volume}/{name} to {bytes} bytes");
        let body = serde_json::json!({ "bytes": bytes });
        let resp = self
            .send(
                what.clone(),
                self.http
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
                what,
                self.http.delete(self.url(volume, &format!("/{name}"))),
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
                what,
                self.http
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
