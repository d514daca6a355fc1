//! The `etcd` backend (`etcd://host:2379[,host:2379…]`), over the JSON
//! gateway that etcd (3.4 and later) serves on its client port: plain
//! HTTP/1.1 POSTs of JSON (`/v3/kv/range`, `/v3/kv/txn`, `/v3/watch`),
//! keys and values in base64, int64 fields as strings. No TLS or auth yet.
//! The gateway rather than gRPC so that building needs no protoc, and the
//! HTTP it takes is small enough to be our own ([`http`]).
//!
//! Our key `volumes/gv0` is the etcd key `/brickfs/volumes/gv0`, so a shared
//! etcd is not littered. An entry's revision is the key's `mod_revision`
//! (etcd's store revision of its last write: store-wide and monotonic), and
//! every put/delete is one transaction comparing it, so the check and the
//! write are atomic on the server.
//!
//! Failures: every call has a deadline ([`OP_TIMEOUT`]) and its own
//! connection, so nothing is left to go stale between calls, and a call
//! after etcd came back just works. An endpoint that refuses (or does not
//! accept within its share of the deadline) is passed over for the next;
//! one that fails mid-request makes the next call start with another.

mod http;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::key::{check_key, check_prefix};
use crate::{Entry, Revision, Store, StoreError};

/// Where our keys live in etcd.
const ROOT: &str = "/brickfs/";
/// For `open`'s first contact, and at most for each TCP connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// For one request, connecting included. Requests take milliseconds; etcd
/// answering nothing for this long has no leader or is cut off.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one watch request stays open before the key is read again and
/// the watch made anew. A connection we only read from cannot tell a
/// silently vanished host from a quiet key; this bounds how long we would
/// wait on one (the read that follows has a deadline).
const WATCH_ROUND: Duration = Duration::from_secs(10);
/// etcd's client port when the URL gives none.
const DEFAULT_PORT: u16 = 2379;

pub struct EtcdStore {
    url: String,
    /// `host:port`, as given.
    endpoints: Vec<String>,
    /// `etcds://`: mutual TLS, etcd's certificate of role store.
    tls: bool,
    /// The endpoint to try first: the last one that was reached, or the
    /// one after an endpoint that failed mid-request.
    preferred: AtomicUsize,
}

/// Why a request got no usable answer.
enum Failure {
    /// No connection, a broken one, no answer in time, or etcd saying it
    /// cannot serve now (no leader): `StoreError::Unreachable`.
    Unreachable(String),
    /// An answer we cannot use: `StoreError::Io`.
    Answer(String),
}

impl From<http::Error> for Failure {
    fn from(e: http::Error) -> Failure {
        match e {
            http::Error::Connection(why) => Failure::Unreachable(why),
            http::Error::Protocol(why) => Failure::Answer(why),
        }
    }
}

/// How a watch request ended.
enum Waited {
    /// An event came, or the time given passed: read the key again.
    Done,
    /// etcd dropped the watch, or the connection failed: read the key
    /// again after a pause.
    Failed(String),
}

impl EtcdStore {
    /// Parses the URL and checks that etcd answers, so that a wrong address
    /// is reported by `open` (within [`CONNECT_TIMEOUT`]), not by the first
    /// command that happens to use the store.
    pub async fn open(url: &str) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            url: url.to_string(),
            endpoints: parse_url(url)?,
            tls: url.starts_with("etcds://"),
            preferred: AtomicUsize::new(0),
        };
        let probe = json!({ "key": base64(ROOT.as_bytes()), "count_only": true });
        store
            .call::<RangeResponse>("first request", "/v3/kv/range", &probe, CONNECT_TIMEOUT)
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

    /// Makes the next connection start with the endpoint after `failed`
    /// (unless another call has moved on already).
    fn pass_over(&self, failed: usize) {
        let next = (failed + 1) % self.endpoints.len();
        let _ = self
            .preferred
            .compare_exchange(failed, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A connection to the first endpoint that accepts one before `until`,
    /// starting with the preferred one. Each endpoint gets a fair share of
    /// the time left, so one that swallows packets does not use it all.
    async fn connect(&self, until: Instant) -> Result<(usize, tls::BoxStream), String> {
        let (at, tcp) = self.connect_tcp(until).await?;
        if !self.tls {
            return Ok((at, Box::new(tcp)));
        }
        let endpoint = &self.endpoints[at];
        let tls::Mode::Tls(creds) = tls::mode() else {
            return Err(format!(
                "{endpoint}: etcds:// needs this process's TLS credentials (--tls-dir), not --insecure"
            ));
        };
        let addr = tcp.peer_addr().map_err(|e| format!("{endpoint}: {e}"))?;
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(
            left,
            tls::connect_tls(creds, tcp, addr, tls::Role::Store, tls::Alpn::Http),
        )
        .await
        {
            Ok(Ok(stream)) => Ok((at, stream)),
            Ok(Err(e)) => Err(format!("{endpoint}: {e}")),
            Err(_) => Err(format!("{endpoint}: no TLS handshake within {left:?}")),
        }
    }

    async fn connect_tcp(&self, until: Instant) -> Result<(usize, TcpStream), String> {
        let n = self.endpoints.len();
        let first = self.preferred.load(Ordering::Relaxed) % n;
        let mut failed = Vec::new();
        for i in 0..n {
            let at = (first + i) % n;
            let endpoint = &self.endpoints[at];
            let left = until.saturating_duration_since(Instant::now());
            let share = (left / u32::try_from(n - i).unwrap_or(u32::MAX)).min(CONNECT_TIMEOUT);
            match tokio::time::timeout(share, TcpStream::connect(endpoint.as_str())).await {
                Ok(Ok(stream)) => {
                    // Requests are one write each; no reason to hold one back.
                    let _ = stream.set_nodelay(true);
                    self.preferred.store(at, Ordering::Relaxed);
                    return Ok((at, stream));
                }
                Ok(Err(e)) => failed.push(format!("{endpoint}: {e}")),
                Err(_) => failed.push(format!("{endpoint}: no connection within {share:?}")),
            }
        }
        Err(failed.join("; "))
    }

    /// One POST and its whole answer, all before `until`, decoded as `T`.
    async fn exchange<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
        until: Instant,
        deadline: Duration,
    ) -> Result<T, Failure> {
        let (at, mut stream) = self.connect(until).await.map_err(Failure::Unreachable)?;
        let endpoint = &self.endpoints[at];
        let exchanged = tokio::time::timeout_at(until, async {
            http::send_post(&mut stream, endpoint, path, body).await?;
            http::read_response(&mut stream).await
        })
        .await;
        let decoded = match exchanged {
            Ok(Ok(response)) => decode_answer(&response),
            Ok(Err(e)) => Err(Failure::from(e)),
            Err(_) => Err(Failure::Unreachable(format!(
                "no answer within {deadline:?}"
            ))),
        };
        // Broken, silent, or without a leader: another member may do
        // better for the next call.
        if let Err(Failure::Unreachable(_)) = decoded {
            self.pass_over(at);
        }
        decoded.map_err(|f| f.with_endpoint(endpoint))
    }

    /// One request with a deadline: a JSON body to `path`, the answer
    /// decoded as `T`. Connection trouble and etcd being unable to serve
    /// come back as `Unreachable`, other failures as `Io`.
    async fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        request: &serde_json::Value,
        deadline: Duration,
    ) -> Result<T, StoreError> {
        let until = Instant::now() + deadline;
        let body = request.to_string().into_bytes();
        let answered = self.exchange(path, &body, until, deadline).await;
        match answered {
            Ok(v) => Ok(v),
            Err(Failure::Unreachable(why)) => {
                tracing::warn!(store = %self.url, "etcd {what} failed: {why}");
                Err(self.unreachable(why))
            }
            Err(Failure::Answer(why)) => Err(StoreError::Io {
                context: format!("etcd {what} at {}", self.url),
                source: io::Error::new(io::ErrorKind::InvalidData, why),
            }),
        }
    }

    /// The key's entry and the store revision it was read at.
    async fn read(&self, key: &str) -> Result<(Option<Entry>, i64), StoreError> {
        check_key(key)?;
        let ekey = format!("{ROOT}{key}");
        let request = json!({ "key": base64(ekey.as_bytes()) });
        let resp: RangeResponse = self
            .call("get", "/v3/kv/range", &request, OP_TIMEOUT)
            .await?;
        let entry = resp.kvs.first().map(|kv| entry_of(kv, key)).transpose()?;
        Ok((entry, resp.header.revision))
    }

    /// What a failed transaction's else branch read (a range of the key).
    fn found_revision(
        &self,
        key: &str,
        resp: &TxnResponse,
    ) -> Result<Option<Revision>, StoreError> {
        for op in &resp.responses {
            if let Some(range) = &op.response_range {
                return range
                    .kvs
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

    /// A compare-and-swap transaction on `key`: `then` if its revision is
    /// `expected`, else a read of it to report what was found.
    async fn transact(
        &self,
        what: &str,
        key: &str,
        expected: Option<Revision>,
        then: serde_json::Value,
    ) -> Result<TxnResponse, StoreError> {
        let ekey = base64(format!("{ROOT}{key}").as_bytes());
        let txn = json!({
            "compare": expect(&ekey, expected),
            "success": [then],
            "failure": [{ "request_range": { "key": ekey } }],
        });
        let resp: TxnResponse = self.call(what, "/v3/kv/txn", &txn, OP_TIMEOUT).await?;
        if !resp.succeeded {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected,
                found: self.found_revision(key, &resp)?,
            });
        }
        Ok(resp)
    }

    /// Waits (up to `limit`) for an event on `ekey` at or after revision
    /// `start`.
    async fn await_event(&self, ekey: &str, start: i64, limit: Duration) -> Waited {
        let request = json!({
            "create_request": { "key": base64(ekey.as_bytes()), "start_revision": start.to_string() }
        })
        .to_string()
        .into_bytes();
        let watched = tokio::time::timeout(limit, async {
            let (at, mut stream) = self
                .connect(Instant::now() + CONNECT_TIMEOUT)
                .await
                .map_err(Failure::Unreachable)?;
            let endpoint = &self.endpoints[at];
            let in_stream = async {
                http::send_post(&mut stream, endpoint, "/v3/watch", &request).await?;
                let mut answer = http::Answer::read_head(&mut stream).await?;
                if answer.status != 200 {
                    let body = answer.body_to_end().await?;
                    return decode_answer::<IgnoredAny>(&http::Response {
                        status: answer.status,
                        reason: answer.reason.clone(),
                        body,
                    })
                    .map(|_| ());
                }
                // The first message confirms the watch ("created"); the
                // ones after it carry events.
                loop {
                    let message = answer
                        .next_json::<WatchMessage>()
                        .await?
                        .ok_or_else(|| Failure::Unreachable("the watch stream ended".into()))?;
                    if let Some(e) = message.error {
                        return Err(Failure::Answer(format!("etcd ended the watch: {e}")));
                    }
                    let result = message.result.unwrap_or_default();
                    if result.canceled {
                        let why = if result.compact_revision > 0 {
                            format!("history compacted to {}", result.compact_revision)
                        } else {
                            result.cancel_reason
                        };
                        return Err(Failure::Answer(format!("etcd cancelled the watch: {why}")));
                    }
                    if !result.events.is_empty() {
                        return Ok(());
                    }
                }
            };
            in_stream.await.map_err(|f| f.with_endpoint(endpoint))
        })
        .await;
        match watched {
            Err(_) | Ok(Ok(())) => Waited::Done,
            Ok(Err(Failure::Unreachable(why) | Failure::Answer(why))) => Waited::Failed(why),
        }
    }
}

impl Failure {
    fn with_endpoint(self, endpoint: &str) -> Failure {
        match self {
            Failure::Unreachable(why) => Failure::Unreachable(format!("{endpoint}: {why}")),
            Failure::Answer(why) => Failure::Answer(format!("{endpoint}: {why}")),
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        Ok(self.read(key).await?.0)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        check_prefix(prefix)?;
        let eprefix = format!("{ROOT}{prefix}");
        // A range comes back in key order unless told otherwise. One
        // response, no paging: fine for volume specs (etcd's 2 MiB request
        // and 4 MiB response limits are far away).
        let request = json!({
            "key": base64(eprefix.as_bytes()),
            "range_end": base64(&prefix_end(eprefix.as_bytes())),
        });
        let resp: RangeResponse = self
            .call("list", "/v3/kv/range", &request, OP_TIMEOUT)
            .await?;
        resp.kvs
            .iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(&kv.key);
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
        let ekey = base64(format!("{ROOT}{key}").as_bytes());
        let then = json!({ "request_put": { "key": ekey, "value": base64(value) } });
        let resp = self.transact("put", key, expected, then).await?;
        // The transaction's revision is the store revision it created, which
        // is the key's new mod_revision.
        let revision = Revision::try_from(resp.header.revision)
            .ok()
            .filter(|&r| r > 0)
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_string(),
                why: format!("{}: put answered without a revision", self.url),
            })?;
        tracing::debug!(store = %self.url, key, revision, "put");
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<(), StoreError> {
        check_key(key)?;
        let ekey = base64(format!("{ROOT}{key}").as_bytes());
        let then = json!({ "request_delete_range": { "key": ekey } });
        self.transact("delete", key, Some(expected), then).await?;
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
        let deadline = Instant::now() + timeout;
        loop {
            let (now, read_at) = match self.read(key).await {
                Ok(read) => read,
                Err(StoreError::Unreachable { .. })
                    if Instant::now() + Duration::from_millis(500) < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if now.as_ref().map(|e| e.revision) != seen {
                return Ok(now);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(now);
            }
            // From just after the revision read at, so that a write between
            // the read and the watch is not missed (whether or not the key
            // existed). That is past the key's own revision, so a compaction
            // since its last write does not cancel the watch.
            let revision = now.as_ref().map_or(0, |e| e.revision);
            let start = read_at
                .max(i64::try_from(revision).unwrap_or(i64::MAX))
                .saturating_add(1);
            if let Waited::Failed(why) = self.await_event(&ekey, start, left.min(WATCH_ROUND)).await
            {
                tracing::warn!(store = %self.url, "etcd watch failed: {why}; reading again");
                tokio::time::sleep(Duration::from_millis(200).min(left)).await;
            }
        }
    }
}

/// An answer's body as `T`, or what etcd said went wrong.
fn decode_answer<T: DeserializeOwned>(response: &http::Response) -> Result<T, Failure> {
    if response.status == 200 {
        return serde_json::from_slice(&response.body)
            .map_err(|e| Failure::Answer(format!("unreadable answer: {e}")));
    }
    let status = format!("HTTP {} {}", response.status, response.reason);
    match serde_json::from_slice::<GatewayError>(&response.body) {
        Ok(e) => {
            let message = if e.message.is_empty() {
                e.error
            } else {
                e.message
            };
            let why = format!("{status}: {message} (gRPC code {})", e.code);
            // Unavailable (no leader, or a timed-out proposal), deadline
            // exceeded, cancelled: etcd cannot serve now, not a refusal.
            if matches!(e.code, 1 | 4 | 14) {
                Err(Failure::Unreachable(why))
            } else {
                Err(Failure::Answer(why))
            }
        }
        Err(_) => {
            let start = &response.body[..response.body.len().min(200)];
            let why = format!("{status}: {:?}", String::from_utf8_lossy(start));
            if matches!(response.status, 502..=504) {
                Err(Failure::Unreachable(why))
            } else {
                Err(Failure::Answer(why))
            }
        }
    }
}

/// The compare-and-swap condition on `ekey` (base64).
fn expect(ekey: &str, expected: Option<Revision>) -> serde_json::Value {
    match expected {
        // An absent key has create_revision 0 in comparisons.
        None => json!([
            { "key": ekey, "target": "CREATE", "result": "EQUAL", "create_revision": "0" }
        ]),
        // An absent key also compares as mod_revision 0, hence the version
        // check (Some(0) must not match a missing key). A revision beyond
        // i64 matches nothing: -1, and the caller gets the usual Conflict.
        Some(rev) => json!([
            { "key": ekey, "target": "VERSION", "result": "GREATER", "version": "0" },
            {
                "key": ekey, "target": "MOD", "result": "EQUAL",
                "mod_revision": i64::try_from(rev).unwrap_or(-1).to_string()
            },
        ]),
    }
}

/// The end of the range of keys starting with `prefix`: its last byte
/// that can be, incremented.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace, which is "\0".
    vec![0]
}

fn base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn entry_of(kv: &KeyValue, key: &str) -> Result<Entry, StoreError> {
    // Any key that exists was written at some store revision, which starts
    // at 1; 0 or less is not an answer from etcd.
    let revision = Revision::try_from(kv.mod_revision)
        .ok()
        .filter(|&r| r > 0)
        .ok_or_else(|| StoreError::Corrupt {
            key: key.to_string(),
            why: format!("mod_revision {}", kv.mod_revision),
        })?;
    Ok(Entry {
        key: key.to_string(),
        value: kv.value.clone(),
        revision,
    })
}

// What the gateway answers. It leaves out fields at their default (false,
// 0, empty), hence `default` everywhere; fields we do not use are ignored.

#[derive(Deserialize, Default)]
#[serde(default)]
struct Header {
    #[serde(deserialize_with = "int64")]
    revision: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyValue {
    #[serde(deserialize_with = "bytes")]
    key: Vec<u8>,
    #[serde(deserialize_with = "bytes")]
    value: Vec<u8>,
    #[serde(deserialize_with = "int64")]
    mod_revision: i64,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RangeResponse {
    header: Header,
    kvs: Vec<KeyValue>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct TxnResponse {
    header: Header,
    succeeded: bool,
    responses: Vec<ResponseOp>,
}

/// One of `response_range`, `response_put`, `response_delete_range`; only
/// the first is read.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseOp {
    response_range: Option<RangeResponse>,
}

/// One message of a watch stream: a result, or an error (the stream
/// failed after its start).
#[derive(Deserialize, Default)]
#[serde(default)]
struct WatchMessage {
    result: Option<WatchResponse>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WatchResponse {
    canceled: bool,
    cancel_reason: String,
    #[serde(deserialize_with = "int64")]
    compact_revision: i64,
    /// Only whether there are any matters: the key is read again.
    events: Vec<IgnoredAny>,
}

/// A non-200 answer's body.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GatewayError {
    error: String,
    message: String,
    code: i64,
}

/// int64 fields come as strings (JSON numbers cannot hold them all);
/// numbers are taken too.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Text(String),
        Number(i64),
    }
    match Int64::deserialize(d)? {
        Int64::Number(n) => Ok(n),
        Int64::Text(s) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("not an int64: {s:?}"))),
    }
}

fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    BASE64
        .decode(text.as_bytes())
        .map_err(|e| D::Error::custom(format!("bad base64: {e}")))
}

/// `etcd://h1:2379,h2` → `["h1:2379", "h2:2379"]`.
fn parse_url(url: &str) -> Result<Vec<String>, StoreError> {
    let bad = || StoreError::BadUrl(url.to_string());
    let rest = url
        .strip_prefix("etcd://")
        .or_else(|| url.strip_prefix("etcds://"))
        .ok_or_else(bad)?;
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
            endpoints.push(hostport.to_string());
        } else {
            endpoints.push(format!("{hostport}:{DEFAULT_PORT}"));
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
            ["127.0.0.1:2379"]
        );
        assert_eq!(
            parse_url("etcd://a:1,b,[::1]:3,[::1]/").unwrap(),
            ["a:1", "b:2379", "[::1]:3", "[::1]:2379"]
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
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/brickfs/"), b"/brickfs0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
    }

    /// Answers as etcd 3.4's gateway gives them (defaults left out).
    #[test]
    fn answers() {
        let range: RangeResponse = serde_json::from_str(
            r#"{"header":{"cluster_id":"7349750752473463000","revision":"3","raft_term":"2"},
                "kvs":[{"key":"L2JyaWNrZnMvYQ==","create_revision":"2","mod_revision":"3","version":"2"}],
                "count":"1"}"#,
        )
        .unwrap();
        assert_eq!(range.header.revision, 3);
        let e = entry_of(&range.kvs[0], "a").unwrap();
        assert_eq!((e.value, e.revision), (vec![], 3));
        assert_eq!(range.kvs[0].key, b"/brickfs/a");

        let failed: TxnResponse = serde_json::from_str(
            r#"{"header":{"revision":"4"},"responses":[{"response_range":{"header":{"revision":"4"}}}]}"#,
        )
        .unwrap();
        assert!(!failed.succeeded);
        assert!(failed.responses[0]
            .response_range
            .as_ref()
            .is_some_and(|r| r.kvs.is_empty()));

        let event: WatchMessage = serde_json::from_str(
            r#"{"result":{"header":{"revision":"6"},"events":[{"type":"DELETE","kv":{"key":"eA==","mod_revision":"6"}}]}}"#,
        )
        .unwrap();
        assert_eq!(event.result.map(|r| r.events.len()), Some(1));

        for bad in [
            r#"{"kvs":[{"key":"not base64!"}]}"#,
            r#"{"header":{"revision":"x"}}"#,
            r#"{"kvs":{}}"#,
        ] {
            assert!(serde_json::from_str::<RangeResponse>(bad).is_err(), "{bad}");
        }
        let negative: RangeResponse =
            serde_json::from_str(r#"{"kvs":[{"key":"eA==","mod_revision":"-1"}]}"#).unwrap();
        assert!(matches!(
            entry_of(&negative.kvs[0], "x"),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn errors() {
        let answer = |status, body: &str| http::Response {
            status,
            reason: "Whatever".into(),
            body: body.as_bytes().to_vec(),
        };
        let no_leader = answer(
            503,
            r#"{"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14}"#,
        );
        assert!(matches!(
            decode_answer::<RangeResponse>(&no_leader),
            Err(Failure::Unreachable(why)) if why.contains("no leader")
        ));
        let refused = answer(
            400,
            r#"{"error":"illegal base64 data at input byte 0","message":"illegal base64 data at input byte 0","code":3}"#,
        );
        assert!(matches!(
            decode_answer::<RangeResponse>(&refused),
            Err(Failure::Answer(why)) if why.contains("illegal base64") && why.contains("400")
        ));
        assert!(matches!(
            decode_answer::<RangeResponse>(&answer(404, "Not Found\n")),
            Err(Failure::Answer(why)) if why.contains("Not Found")
        ));
        assert!(matches!(
            decode_answer::<RangeResponse>(&answer(200, "<html>")),
            Err(Failure::Answer(_))
        ));
    }
}
