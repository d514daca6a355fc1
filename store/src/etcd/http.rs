//! Just enough HTTP/1.1 to talk to etcd's JSON gateway: one POST per
//! connection (`Connection: close`), an answer framed by Content-Length,
//! chunked transfer coding or the end of the connection, and a reader of
//! the JSON messages a streaming answer (a watch) carries.
//!
//! Everything a peer sends is bounded ([`MAX_HEAD`], [`MAX_BODY`]), so a
//! misbehaving or foreign server cannot make us buffer without limit. No
//! deadlines here: the caller puts one around the whole exchange.

use std::fmt;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Status line and headers together; Go's server sends a few hundred bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// One answer's body, or one message of a stream: well above what we store
/// (etcd takes requests of up to 1.5 MiB by default, and base64 adds a
/// third), low enough to bound what a bad peer costs us.
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// Room made in the buffer for each read.
const READ_SIZE: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The connection failed or ended before the answer was whole: worth
    /// trying again (another endpoint, later). For a write, its outcome is
    /// unknown.
    Connection(String),
    /// Something answered, but not HTTP as we speak it, or too much of it.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connection(why) | Error::Protocol(why) => f.write_str(why),
        }
    }
}

fn io_error(doing: &str, e: std::io::Error) -> Error {
    Error::Connection(format!("{doing}: {e}"))
}

/// Sends `POST path` with a JSON body on a fresh connection. Asks the
/// server to close afterwards: a connection is never reused, so a stale
/// one can never be mistaken for etcd having gone away.
pub async fn send_post<W: AsyncWrite + Unpin>(
    io: &mut W,
    host: &str,
    path: &str,
    body: &[u8],
) -> Result<(), Error> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    io.write_all(&request)
        .await
        .map_err(|e| io_error("sending the request", e))?;
    io.flush()
        .await
        .map_err(|e| io_error("sending the request", e))
}

/// A whole (non-streaming) answer.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub body: Vec<u8>,
}

/// Reads one whole answer: head and body, the body at most [`MAX_BODY`].
pub async fn read_response<R: AsyncRead + Unpin>(io: R) -> Result<Response, Error> {
    let mut answer = Answer::read_head(io).await?;
    let body = answer.body_to_end().await?;
    Ok(Response {
        status: answer.status,
        reason: answer.reason,
        body,
    })
}

/// How the body's end is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// This many body bytes (of a Content-Length body, or of the current
    /// chunk) are still to come.
    Data {
        left: usize,
        chunked: bool,
    },
    /// The next thing is a chunk-size line.
    ChunkSize,
    UntilClose,
    Done,
}

/// An answer whose head has been read; its body is read on demand, which
/// is what a stream needs.
pub struct Answer<R> {
    pub status: u16,
    pub reason: String,
    io: R,
    /// Bytes read from `io` and not yet used: `buf[pos..]`.
    buf: Vec<u8>,
    pos: usize,
    state: BodyState,
    /// Body bytes of a stream not yet decoded (`next_json`).
    pending: Vec<u8>,
}

impl<R: AsyncRead + Unpin> Answer<R> {
    /// Reads the status line and headers (skipping any interim 1xx answer).
    pub async fn read_head(io: R) -> Result<Answer<R>, Error> {
        let mut answer = Answer {
            status: 0,
            reason: String::new(),
            io,
            buf: Vec::new(),
            pos: 0,
            state: BodyState::Done,
            pending: Vec::new(),
        };
        loop {
            let head = answer.take_head().await?;
            let (status, reason, framing) = parse_head(&head)?;
            if (100..200).contains(&status) {
                continue;
            }
            answer.status = status;
            answer.reason = reason;
            answer.state = match framing {
                // No body, whatever the headers say.
                _ if status == 204 || status == 304 => BodyState::Done,
                Framing::Length(0) => BodyState::Done,
                Framing::Length(n) => BodyState::Data {
                    left: n,
                    chunked: false,
                },
                Framing::Chunked => BodyState::ChunkSize,
                Framing::UntilClose => BodyState::UntilClose,
            };
            return Ok(answer);
        }
    }

    /// The unused bytes read so far.
    fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Reads more from the connection; false at its end.
    async fn fill(&mut self) -> Result<bool, Error> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.reserve(READ_SIZE);
        let n = self
            .io
            .read_buf(&mut self.buf)
            .await
            .map_err(|e| io_error("reading the answer", e))?;
        Ok(n > 0)
    }

    /// Up to the blank line that ends a head, without it.
    async fn take_head(&mut self) -> Result<Vec<u8>, Error> {
        let mut searched = 0;
        loop {
            let avail = self.available();
            // Resume the search a little before where the last one ended,
            // in case the terminator straddles two reads.
            if let Some(at) = find(&avail[searched..], b"\r\n\r\n") {
                let end = searched + at;
                let head = avail[..end].to_vec();
                self.pos += end + 4;
                return Ok(head);
            }
            if avail.len() > MAX_HEAD {
                return Err(Error::Protocol(format!(
                    "answer's header is over {MAX_HEAD} bytes"
                )));
            }
            searched = avail.len().saturating_sub(3);
            if !self.fill().await? {
                return Err(Error::Connection(if self.available().is_empty() {
                    "connection closed before an answer".to_string()
                } else {
                    "connection closed in the middle of the answer's header".to_string()
                }));
            }
        }
    }

    /// One CRLF-terminated line (of chunked framing), without the CRLF.
    async fn take_line(&mut self, max: usize) -> Result<Vec<u8>, Error> {
        let mut searched = 0;
        loop {
            let avail = self.available();
            if let Some(at) = find(&avail[searched..], b"\r\n") {
                let end = searched + at;
                let line = avail[..end].to_vec();
                self.pos += end + 2;
                return Ok(line);
            }
            if avail.len() > max {
                return Err(Error::Protocol(format!(
                    "chunked framing: a line over {max} bytes"
                )));
            }
            searched = avail.len().saturating_sub(1);
            if !self.fill().await? {
                return Err(truncated());
            }
        }
    }

    /// The next piece of the body as it arrives; `None` at its end.
    pub async fn next_data(&mut self) -> Result<Option<Vec<u8>>, Error> {
        loop {
            match self.state {
                BodyState::Done => return Ok(None),
                BodyState::Data { left: 0, chunked } => {
                    if chunked {
                        if !self.take_line(2).await?.is_empty() {
                            return Err(Error::Protocol(
                                "chunked framing: chunk not followed by CRLF".to_string(),
                            ));
                        }
                        self.state = BodyState::ChunkSize;
                    } else {
                        self.state = BodyState::Done;
                    }
                }
                BodyState::Data { left, chunked } => {
                    if self.available().is_empty() && !self.fill().await? {
                        return Err(truncated());
                    }
                    let n = left.min(self.available().len());
                    let data = self.available()[..n].to_vec();
                    self.pos += n;
                    self.state = BodyState::Data {
                        left: left - n,
                        chunked,
                    };
                    return Ok(Some(data));
                }
                BodyState::ChunkSize => {
                    let line = self.take_line(1024).await?;
                    let size = parse_chunk_size(&line)?;
                    if size == 0 {
                        self.skip_trailers().await?;
                        self.state = BodyState::Done;
                    } else {
                        self.state = BodyState::Data {
                            left: size,
                            chunked: true,
                        };
                    }
                }
                BodyState::UntilClose => {
                    if self.available().is_empty() && !self.fill().await? {
                        self.state = BodyState::Done;
                        return Ok(None);
                    }
                    let data = self.available().to_vec();
                    self.pos = self.buf.len();
                    return Ok(Some(data));
                }
            }
        }
    }

    /// Trailer fields after the last chunk (etcd sends none), up to the
    /// blank line.
    async fn skip_trailers(&mut self) -> Result<(), Error> {
        let mut total = 0;
        loop {
            let line = self.take_line(MAX_HEAD).await?;
            if line.is_empty() {
                return Ok(());
            }
            total += line.len() + 2;
            if total > MAX_HEAD {
                return Err(Error::Protocol(format!(
                    "chunked framing: trailers over {MAX_HEAD} bytes"
                )));
            }
        }
    }

    /// The rest of the body, refused past [`MAX_BODY`].
    pub async fn body_to_end(&mut self) -> Result<Vec<u8>, Error> {
        if let BodyState::Data {
            left,
            chunked: false,
        } = self.state
        {
            if left > MAX_BODY {
                return Err(too_big(left));
            }
        }
        let mut body = Vec::new();
        while let Some(data) = self.next_data().await? {
            if body.len() + data.len() > MAX_BODY {
                return Err(too_big(body.len() + data.len()));
            }
            body.extend_from_slice(&data);
        }
        Ok(body)
    }

    /// The next JSON value of a streaming body (values one after another,
    /// whitespace or not between them: no framing is assumed beyond JSON's
    /// own); `None` when the body ended cleanly between two values.
    pub async fn next_json<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        loop {
            let mut values = serde_json::Deserializer::from_slice(&self.pending).into_iter::<T>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.pending.drain(..used);
                    return Ok(Some(value));
                }
                Some(Err(e)) if !e.is_eof() => {
                    return Err(Error::Protocol(format!("a streamed message: {e}")));
                }
                // Incomplete (or only whitespace so far): more is needed.
                Some(Err(_)) | None => {}
            }
            match self.next_data().await? {
                Some(data) => {
                    if self.pending.len() + data.len() > MAX_BODY {
                        return Err(Error::Protocol(format!(
                            "a streamed message over {MAX_BODY} bytes"
                        )));
                    }
                    self.pending.extend_from_slice(&data);
                }
                None if self.pending.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => return Err(truncated()),
            }
        }
    }
}

fn truncated() -> Error {
    Error::Connection("connection closed in the middle of the answer's body".to_string())
}

fn too_big(n: usize) -> Error {
    Error::Protocol(format!(
        "answer's body is over {MAX_BODY} bytes ({n} at least)"
    ))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Status, reason and body framing from a head (without its blank line).
fn parse_head(head: &[u8]) -> Result<(u16, String, Framing), Error> {
    let bad = |why: String| Error::Protocol(format!("not an HTTP/1.1 answer: {why}"));
    let head = std::str::from_utf8(head).map_err(|_| bad("header is not UTF-8".to_string()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad(format!("status line {status_line:?}")));
    }
    let status = parts
        .next()
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
    let reason = parts.next().unwrap_or_default().to_string();

    let mut length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line {line:?}")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<usize>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(format!("Content-Length {value:?}")))?;
            // Two different lengths: no telling where the body ends.
            if length.is_some_and(|l| l != n) {
                return Err(bad("conflicting Content-Length headers".to_string()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Only chunked, alone: we ask for no compression, so any other
            // coding means a server we do not understand.
            for coding in value.split(',').map(str::trim) {
                if coding.eq_ignore_ascii_case("chunked") && !chunked {
                    chunked = true;
                } else {
                    return Err(bad(format!("Transfer-Encoding {value:?}")));
                }
            }
        }
    }
    // Chunked wins over a length (RFC 9112 6.3).
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) => Framing::Length(n),
        (false, None) => Framing::UntilClose,
    };
    Ok((status, reason, framing))
}

fn parse_chunk_size(line: &[u8]) -> Result<usize, Error> {
    let bad = || {
        Error::Protocol(format!(
            "chunked framing: bad chunk size {:?}",
            String::from_utf8_lossy(line)
        ))
    };
    // Extensions after ';' mean nothing to us.
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits).map_err(|_| bad())?.trim();
    if digits.is_empty() || digits.len() > 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let size = usize::from_str_radix(digits, 16).map_err(|_| bad())?;
    if size > MAX_BODY {
        return Err(too_big(size));
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn read(bytes: &[u8]) -> Result<Response, Error> {
        run(read_response(bytes))
    }

    /// Hands out `data` a few bytes per read, so that every boundary falls
    /// in the middle of something.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            let n = self
                .step
                .min(buf.remaining())
                .min(self.data.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.data[at..at + n]);
            self.at += n;
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn trickle(data: &[u8], step: usize) -> Trickle {
        Trickle {
            data: data.to_vec(),
            at: 0,
            step,
        }
    }

    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";

    #[test]
    fn content_length() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhelloTRAILING").unwrap();
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.body, b"hello");
        let r = read(b"HTTP/1.1 404 Not Found\r\ncontent-length:  0 \r\n\r\n").unwrap();
        assert_eq!((r.status, &r.body[..]), (404, &b""[..]));
        for step in [1, 2, 3, 7] {
            let msg = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
            let r = run(read_response(trickle(msg, step))).unwrap();
            assert_eq!(r.body, b"hello world", "step {step}");
        }
    }

    #[test]
    fn chunked() {
        let r = read(CHUNKED).unwrap();
        assert_eq!(r.body, b"hello, world");
        for step in [1, 2, 5, 13] {
            let r = run(read_response(trickle(CHUNKED, step))).unwrap();
            assert_eq!(r.body, b"hello, world", "step {step}");
        }
        // Upper-case hex, trailers, and chunked winning over a length.
        let r = read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
              A\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"0123456789");
    }

    #[test]
    fn until_close_and_interim() {
        let r = read(b"HTTP/1.0 200 OK\r\n\r\nall of it").unwrap();
        assert_eq!(r.body, b"all of it");
        let r =
            read(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        let r = read(b"HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert_eq!((r.status, &r.body[..]), (204, &b""[..]));
    }

    #[test]
    fn truncated_is_a_connection_error() {
        let connection = |r: Result<Response, Error>| matches!(r, Err(Error::Connection(_)));
        assert!(connection(read(b"")));
        assert!(connection(read(b"HTTP/1.1 200 OK\r\nContent-Le")));
        assert!(connection(read(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"
        )));
        for cut in [CHUNKED.len() - 2, CHUNKED.len() - 5, CHUNKED.len() - 20] {
            assert!(connection(read(&CHUNKED[..cut])), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_is_refused() {
        let protocol = |r: Result<Response, Error>| matches!(r, Err(Error::Protocol(_)));
        // A head that never ends.
        let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
        endless.extend(std::iter::repeat_n(b'x', MAX_HEAD + 10));
        assert!(protocol(read(&endless)));
        // A body announced too large: refused before reading it.
        let big = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(protocol(read(big.as_bytes())));
        // A chunk too large, and a chunk size that overflows.
        let big = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY + 1
        );
        assert!(protocol(read(big.as_bytes())));
        assert!(protocol(read(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n"
        )));
        // Chunks that are each fine but add up to too much.
        let mut many = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..9 {
            many.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            many.extend_from_slice(&chunk);
            many.extend_from_slice(b"\r\n");
        }
        many.extend_from_slice(b"0\r\n\r\n");
        assert!(protocol(read(&many)));
        // The same without framing, to the connection's end.
        let mut unframed = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        unframed.extend(std::iter::repeat_n(b'a', MAX_BODY + 1));
        assert!(protocol(read(&unframed)));
    }

    #[test]
    fn malformed_is_refused() {
        for bad in [
            &b"SSH-2.0-OpenSSH_9.2\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
        ] {
            assert!(
                matches!(read(bad), Err(Error::Protocol(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn json_stream() {
        // What etcd's gateway sends for a watch: one message per chunk, each
        // ending in a newline; here split across chunks as well.
        let body = b"{\"a\":1}\n{\"a\":2}\n{\"a\":\n3}\n";
        let mut msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in [&body[..8], &body[8..12], &body[12..20], &body[20..]] {
            msg.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            msg.extend_from_slice(piece);
            msg.extend_from_slice(b"\r\n");
        }
        msg.extend_from_slice(b"0\r\n\r\n");
        for step in [1, 4, 1000] {
            let got = run(async {
                let mut answer = Answer::read_head(trickle(&msg, step)).await?;
                let mut got = Vec::new();
                while let Some(v) = answer.next_json::<serde_json::Value>().await? {
                    got.push(v["a"].as_i64().unwrap_or(-1));
                }
                Ok::<_, Error>(got)
            })
            .unwrap();
            assert_eq!(got, [1, 2, 3], "step {step}");
        }

        // Ended mid-message: the connection broke.
        let cut = b"HTTP/1.1 200 OK\r\n\r\n{\"a\":1}\n{\"a\"";
        let r = run(async {
            let mut answer = Answer::read_head(&cut[..]).await?;
            assert!(answer.next_json::<serde_json::Value>().await?.is_some());
            answer.next_json::<serde_json::Value>().await
        });
        assert!(matches!(r, Err(Error::Connection(_))), "{r:?}");

        // Not JSON at all.
        let junk = b"HTTP/1.1 200 OK\r\n\r\n<html>";
        let r = run(async {
            let mut answer = Answer::read_head(&junk[..]).await?;
            answer.next_json::<serde_json::Value>().await
        });
        assert!(matches!(r, Err(Error::Protocol(_))), "{r:?}");
    }

    #[test]
    fn request() {
        let mut out = Vec::new();
        run(send_post(&mut out, "[::1]:2379", "/v3/kv/range", b"{}")).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /v3/kv/range HTTP/1.1\r\nHost: [::1]:2379\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
    }
}
