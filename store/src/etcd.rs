//! The `etcd` backend (`etcd://host:2379[,host:2379…]`), over etcd's v3 gRPC
//! API (the `etcd-client` crate, plain HTTP/2; no TLS or auth yet).
//!
//! Our key `volumes/gv0` is the etcd key `/brickfs/volumes/gv0`, so a shared
//! etcd is not littered. An entry's revision is the key's `mod_revision`
//! (etcd's store revision of its last write: store-wide and monotonic), and
//! every put/delete is one transaction comparing it, so the check and the
//! write are atomic on the server.
//!
//! Failures: every call has a deadline ([`OP_TIMEOUT`]); etcd-client queues
//! requests while no endpoint is connected and would otherwise wait for
//! ever. A call that found etcd unreachable drops the client, and the next
//! call connects afresh (etcd-client's own reconnecting is not relied on).

use std::future::Future;
use std::io;
use std::sync::Mutex;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
    TxnResponse, WatchOptions,
};

use crate::key::{check_key, check_prefix};
use crate::{Entry, Revision, Store, StoreError};

/// Where our keys live in etcd.
const ROOT: &str = "/brickfs/";
/// For `open`'s first contact, and for each TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// For one request on a connected client. Requests take milliseconds; etcd
/// answering nothing for this long has no leader or is cut off.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// etcd's client port when the URL gives none.
const DEFAULT_PORT: u16 = 2379;

pub struct EtcdStore {
    url: String,
    endpoints: Vec<String>,
    /// `None` until connected, and again after a call found etcd unreachable.
    client: Mutex<Option<Client>>,
}

impl EtcdStore {
    /// Parses the URL and checks that etcd answers, so that a wrong address
    /// is reported by `open` (within [`CONNECT_TIMEOUT`]), not by the first
    /// command that happens to use the store.
    pub async fn open(url: &str) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            url: url.to_string(),
            endpoints: parse_url(url)?,
            client: Mutex::new(None),
        };
        store
            .call("first request", CONNECT_TIMEOUT, |mut c| async move {
                c.get(ROOT, Some(GetOptions::new().with_count_only())).await
            })
            .await?;
        tracing::debug!(store = url, "connected to etcd");
        Ok(store)
    }

    fn unreachable(&self, why: String) -> StoreError {
        StoreError::Unreachable {
            url: self.url.clone(),
            why,
        }
    }

    fn cached(&self) -> Option<Client> {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn forget(&self) {
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    async fn connect(&self) -> Result<Client, StoreError> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(OP_TIMEOUT)
            // Notice a silently dead peer (host gone) between calls.
            .with_keep_alive(Duration::from_secs(10), CONNECT_TIMEOUT);
        // Connecting is lazy (the first request dials), so this is quick;
        // the deadline is for the unexpected.
        let client = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Client::connect(&self.endpoints, Some(options)),
        )
        .await
        .map_err(|_| self.unreachable(format!("no connection within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| self.unreachable(e.to_string()))?;
        // Two tasks connecting at once both store theirs; either is fine.
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(client.clone());
        Ok(client)
    }

    /// Runs one request with a deadline, mapping connection trouble to
    /// `Unreachable` (and dropping the client so the next call reconnects).
    async fn call<T, F, Fut>(&self, what: &str, deadline: Duration, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = self.connect().await?;
        match tokio::time::timeout(deadline, f(client)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) if is_connection_error(&e) => {
                self.forget();
                tracing::warn!(store = %self.url, "etcd {what} failed: {e}");
                Err(self.unreachable(e.to_string()))
            }
            Ok(Err(e)) => Err(StoreError::Io {
                context: format!("etcd {what} at {}", self.url),
                source: io::Error::other(e),
            }),
            Err(_) => {
                self.forget();
                tracing::warn!(store = %self.url, "etcd {what}: no answer within {deadline:?}");
                Err(self.unreachable(format!("no answer within {deadline:?}")))
            }
        }
    }

    /// What a failed transaction's else branch read (a `get` of the key).
    fn found_revision(
        &self,
        key: &str,
        resp: &TxnResponse,
    ) -> Result<Option<Revision>, StoreError> {
        for op in resp.op_responses() {
            if let TxnOpResponse::Get(get) = op {
                return get
                    .kvs()
                    .first()
                    .map(|kv| entry_of(kv, key))
                    .transpose()
                    .map(|e| e.map(|e| e.revision));
            }
        }
        Err(StoreError::Corrupt {
            key: key.to_string(),
            why: format!("{}: failed transaction without its read", self.url),
        })
    }
}

impl EtcdStore {
    /// Waits (up to `limit`) for an event on `ekey` at or after revision
    /// `start`. Ok when one came or the limit passed; Err when the
    /// connection failed (the client is then dropped for a fresh one).
    async fn await_event(
        &self,
        ekey: &str,
        start: Option<i64>,
        limit: Duration,
    ) -> Result<(), StoreError> {
        let mut client = self.connect().await?;
        let options = start.map(|r| WatchOptions::new().with_start_revision(r));
        let waited = tokio::time::timeout(limit, async move {
            let mut stream = client.watch(ekey, options).await?;
            while let Some(resp) = stream.message().await? {
                if resp.canceled() || !resp.events().is_empty() {
                    break;
                }
            }
            Ok::<(), etcd_client::Error>(())
        })
        .await;
        match waited {
            Err(_) | Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.forget();
                tracing::warn!(store = %self.url, "etcd watch failed: {e}; reconnecting");
                Err(self.unreachable(e.to_string()))
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        let ekey = format!("{ROOT}{key}");
        let resp = self
            .call(
                "get",
                OP_TIMEOUT,
                |mut c| async move { c.get(ekey, None).await },
            )
            .await?;
        resp.kvs().first().map(|kv| entry_of(kv, key)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix)?;
        let eprefix = format!("{ROOT}{prefix}");
        // A range comes back in key order unless told otherwise. One
        // response, no paging: fine for volume specs (etcd's 2 MiB request
        // and 4 MiB response limits are far away).
        let resp = self
            .call("list", OP_TIMEOUT, |mut c| async move {
                c.get(eprefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        resp.kvs()
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                entry_of(kv, key.strip_prefix(ROOT).unwrap_or(&key))
            })
            .collect()
    }

    async fn put(
        &self,
        key: &str,
        value: &[u8],
        expected: Option<Revision>,
    ) -> Result<Revision, StoreError> {
        check_key(key)?;
        let ekey = format!("{ROOT}{key}");
        let txn = Txn::new()
            .when(expect(&ekey, expected))
            .and_then([TxnOp::put(ekey.as_str(), value, None)])
            .or_else([TxnOp::get(ekey.as_str(), None)]);
        let resp = self
            .call("put", OP_TIMEOUT, |mut c| async move { c.txn(txn).await })
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                found: self.found_revision(key, &resp)?,
            });
        }
        // The transaction's revision is the store revision it created, which
        // is the key's new mod_revision.
        let revision = resp
            .header()
            .and_then(|h| Revision::try_from(h.revision()).ok())
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_string(),
                why: format!("{}: put answered without a revision", self.url),
            })?;
        tracing::debug!(store = %self.url, key, revision, "put");
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(), StoreError> {
        check_key(key)?;
        let ekey = format!("{ROOT}{key}");
        let txn = Txn::new()
            .when(expect(&ekey, Some(expected)))
            .and_then([TxnOp::delete(ekey.as_str(), None)])
            .or_else([TxnOp::get(ekey.as_str(), None)]);
        let resp = self
            .call(
                "delete",
                OP_TIMEOUT,
                |mut c| async move { c.txn(txn).await },
            )
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: Some(expected),
                found: self.found_revision(key, &resp)?,
            });
        }
        tracing::debug!(store = %self.url, key, revision = expected, "delete");
        Ok(())
    }

    async fn watch(
        &self,
        key: &str,
        seen: Option<Revision>,
        timeout: Duration,
    ) -> Result<Option<Entry>, StoreError> {
        check_key(key)?;
        let ekey = format!("{ROOT}{key}");
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let now = match self.get(key).await {
                Ok(now) => now,
                Err(StoreError::Unreachable { .. })
                    if tokio::time::Instant::now() + Duration::from_millis(500) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if now.as_ref().map(|e| e.revision) != seen {
                return Ok(now);
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(now);
            }
            // From just after the revision read, so that a write between
            // the read and the watch is not missed.
            let start = now
                .as_ref()
                .and_then(|e| i64::try_from(e.revision).ok())
                .map(|r| r + 1);
            if self.await_event(&ekey, start, left).await.is_err() {
                tokio::time::sleep(Duration::from_millis(200).min(left)).await;
            }
        }
    }
}

/// The compare-and-swap condition on `ekey`.
fn expect(ekey: &str, expected: Option<Revision>) -> Vec<Compare> {
    match expected {
        // An absent key has create_revision 0 in comparisons.
        None => vec![Compare::create_revision(ekey, CompareOp::Equal, 0)],
        // An absent key also compares as mod_revision 0, hence the version
        // check (Some(0) must not match a missing key). A revision beyond
        // i64 matches nothing: -1, and the caller gets the usual Conflict.
        Some(rev) => vec![
            Compare::version(ekey, CompareOp::Greater, 0),
            Compare::mod_revision(ekey, CompareOp::Equal, i64::try_from(rev).unwrap_or(-1)),
        ],
    }
}

fn entry_of(kv: &KeyValue, key: &str) -> Result<Entry, StoreError> {
    let revision = Revision::try_from(kv.mod_revision()).map_err(|_| StoreError::Corrupt {
        key: key.to_string(),
        why: format!("negative mod_revision {}", kv.mod_revision()),
    })?;
    Ok(Entry {
        key: key.to_string(),
        value: kv.value().to_vec(),
        revision,
    })
}

/// Connection trouble (worth a reconnect) rather than an answer. (For a
/// put or delete this also means its outcome is unknown: the request may
/// have been applied before the connection broke.)
fn is_connection_error(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    use tonic::Code;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        // Unavailable: refused, reset, or no leader. Cancelled: the
        // connection went away under the request. A connection killed
        // mid-request comes as Unknown, with the transport error as source.
        E::GRpcStatus(s) => {
            matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled
            ) || caused_by_transport(s)
        }
        _ => false,
    }
}

fn caused_by_transport(status: &tonic::Status) -> bool {
    let mut cause = std::error::Error::source(status);
    while let Some(c) = cause {
        if c.is::<tonic::transport::Error>() || c.is::<io::Error>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `etcd://h1:2379,h2:2379` → `["http://h1:2379", "http://h2:2379"]`.
fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
    let bad = || StoreError::BadUrl(url.to_string());
    let rest = url.strip_prefix("etcd://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut endpoints = Vec::new();
    for hostport in rest.split(',') {
        if hostport.is_empty() || hostport.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad());
        }
        // `host`, `host:port`, `[v6]`, `[v6]:port`.
        let has_port = match hostport.rfind(']') {
            Some(close) => hostport[close..].contains(':'),
            None => hostport.contains(':'),
        };
        if has_port {
            let port = &hostport[hostport.rfind(':').unwrap_or(0) + 1..];
            if port.parse::<u16>().is_err() {
                return Err(bad());
            }
            endpoints.push(format!("http://{hostport}"));
        } else {
            endpoints.push(format!("http://{hostport}:{DEFAULT_PORT}"));
        }
    }
    Ok(endpoints)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("etcd://127.0.0.1:2379").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(
            parse_url("etcd://a:1,b,[::1]:3,[::1]/").unwrap(),
            [
                "http://a:1",
                "http://b:2379",
                "http://[::1]:3",
                "http://[::1]:2379"
            ]
        );
        for bad in [
            "etcd://",
            "etcd://a:1,",
            "etcd://a:x",
            "etcd://a:99999",
            "etcd://a/b",
            "etcd://u@a:1",
            "http://a:1",
        ] {
            assert!(
                matches!(parse_url(bad), Err(StoreError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn connection_errors() {
        use etcd_client::Error as E;
        use tonic::{Code, Status};
        // What a connection killed mid-request looks like: Unknown, caused
        // by the broken connection.
        let broken = Status::from_error(Box::new(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert_eq!(broken.code(), Code::Unknown);
        assert!(is_connection_error(&E::GRpcStatus(broken)));
        assert!(is_connection_error(&E::GRpcStatus(Status::unavailable(
            "etcdserver: no leader"
        ))));
        // Answers, not connection trouble.
        for s in [
            Status::unknown("etcdserver: something"),
            Status::invalid_argument("etcdserver: request is too large"),
            Status::permission_denied("etcdserver: permission denied"),
        ] {
            assert!(!is_connection_error(&E::GRpcStatus(s)));
        }
    }
}
