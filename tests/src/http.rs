//! A minimal blocking HTTP/1.1 client for the management API's tests: one
//! request per connection (`Connection: close`), JSON in and out, over TLS
//! with a given certificate or in plaintext. Small on purpose, so that
//! tests see the API's bytes as any client would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Where a request goes, and as whom.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `None`: plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    pub fn plain(addr: SocketAddr) -> Target {
        Target { addr, tls: None }
    }

    /// Over TLS as the holder of `who`, checking that the server is the API.
    pub fn as_identity(addr: SocketAddr, who: &tls::Tls) -> Target {
        Target {
            addr,
            tls: Some(
                who.client_config(tls::Role::Api, tls::Alpn::Http)
                    .expect("a client configuration for the API"),
            ),
        }
    }

    /// Over TLS with the harness's certificate of `role`.
    pub fn as_role(addr: SocketAddr, role: tls::Role) -> Target {
        Target::as_identity(addr, &crate::tls::identity(role))
    }

    fn connect(&self) -> std::io::Result<Box<dyn ReadWrite>> {
        let tcp = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let Some(config) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        let conn =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // The handshake now, so that a refused one is a connect error.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Box::new(stream))
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub raw: String,
}

impl Answer {
    /// The `error` code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

pub fn request(
    to: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    request_raw(to, method, path, token, &payload)
}

/// As [`request`] with the body's bytes as given (for malformed JSON).
pub fn request_raw(
    to: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    payload: &str,
) -> Answer {
    try_request(to, method, path, token, payload)
        .unwrap_or_else(|e| panic!("{method} {path} to {}: {e}", to.addr))
}

/// As [`request_raw`], with a failure to connect, handshake or read an
/// answer as an error (for tests of refused connections).
pub fn try_request(
    to: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    payload: &str,
) -> std::io::Result<Answer> {
    let addr = to.addr;
    let mut s = to.connect()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        payload.len()
    );
    if !payload.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    s.flush()?;
    let mut resp = Vec::new();
    match s.read_to_end(&mut resp) {
        Ok(_) => {}
        // A TLS peer closing without close_notify, after the whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {head:?}")))?;
    // The API sends whole bodies with a Content-Length (never chunked).
    Ok(Answer {
        status,
        body: serde_json::from_str(body).unwrap_or(Value::Null),
        raw: text,
    })
}
