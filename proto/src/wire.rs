//! The codec of a brick's RPC connections: tarpc's bincode, plus the one
//! check it lacks.
//!
//! tarpc turns a request's deadline (sent as a `Duration` from now) into
//! an `Instant` with `Instant::now() + deadline`, which panics when the sum
//! overflows: any peer could panic the brick's connection task with one
//! frame (found by the `brick_rpc` fuzz target). The deadline is read here
//! first, and a request whose deadline no clock can reach is refused as
//! malformed, which drops the connection like any undecodable frame.

use std::io;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bincode::Options;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_serde::{Deserializer, Serializer};
use tarpc::tokio_util::bytes::{Bytes, BytesMut};
use tarpc::{ClientMessage, Response};

use crate::{BrickRequest, BrickResponse};

type Inner = Bincode<ClientMessage<BrickRequest>, Response<BrickResponse>>;

/// Decodes `ClientMessage<BrickRequest>` and encodes `Response<BrickResponse>`
/// exactly as `Bincode::default()` does, after [`check_deadline`].
#[derive(Default)]
pub struct ServerCodec(Inner);

impl Deserializer<ClientMessage<BrickRequest>> for ServerCodec {
    type Error = io::Error;

    fn deserialize(
        self: Pin<&mut Self>,
        src: &BytesMut,
    ) -> Result<ClientMessage<BrickRequest>, io::Error> {
        check_deadline(src)?;
        Pin::new(&mut self.get_mut().0).deserialize(src)
    }
}

impl Serializer<Response<BrickResponse>> for ServerCodec {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &Response<BrickResponse>) -> Result<Bytes, io::Error> {
        Pin::new(&mut self.get_mut().0).serialize(item)
    }
}

/// Refuses a request frame whose deadline overflows `Instant`.
///
/// In bincode (tokio-serde's options: `DefaultOptions`, varint integers) a
/// `ClientMessage::Request` starts with its variant index, 0, then its
/// context, whose first field is the deadline: so the frame starts with a
/// `(u32, Duration)`. Anything else (a `Cancel`, a frame too short or
/// undecodable here) is left to the full decode.
pub fn check_deadline(frame: &[u8]) -> io::Result<()> {
    let head = bincode::DefaultOptions::new()
        .allow_trailing_bytes()
        .deserialize::<(u32, Duration)>(frame);
    match head {
        Ok((0, deadline)) if Instant::now().checked_add(deadline).is_none() => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "request deadline {}s from now is out of range",
                deadline.as_secs()
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(msg: &ClientMessage<BrickRequest>) -> BytesMut {
        let mut client = Bincode::<Response<BrickResponse>, ClientMessage<BrickRequest>>::default();
        BytesMut::from(&Pin::new(&mut client).serialize(msg).expect("encodes")[..])
    }

    fn ping(deadline: Instant) -> ClientMessage<BrickRequest> {
        let mut context = tarpc::context::current();
        context.deadline = deadline;
        ClientMessage::Request(tarpc::Request {
            context,
            id: 1,
            message: BrickRequest::Ping {},
        })
    }

    #[test]
    fn a_real_request_decodes_as_with_plain_bincode() {
        let frame = encode(&ping(Instant::now() + Duration::from_secs(10)));
        let mut codec = ServerCodec::default();
        match Pin::new(&mut codec).deserialize(&frame).expect("decodes") {
            ClientMessage::Request(r) => {
                assert_eq!(r.id, 1);
                assert!(matches!(r.message, BrickRequest::Ping {}));
                let left = r.context.deadline - Instant::now();
                assert!(left > Duration::from_secs(8) && left <= Duration::from_secs(10));
            }
            other => panic!("decoded {other:?}"),
        }
    }

    /// The input the fuzz target found: a deadline of u64::MAX seconds
    /// (varint marker 0xfd, eight bytes), which made tarpc's own decode
    /// panic; it must be an error instead.
    #[test]
    fn an_unreachable_deadline_is_an_error_not_a_panic() {
        let mut frame = vec![0u8, 0xfd];
        frame.extend_from_slice(&[0xff; 8]);
        frame.push(0);
        frame.extend_from_slice(&[0; 40]);
        let frame = BytesMut::from(&frame[..]);
        let mut codec = ServerCodec::default();
        let err = Pin::new(&mut codec)
            .deserialize(&frame)
            .expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // The same frame from a real request, its deadline pushed out of
        // range after encoding, is refused too.
        let mut real = encode(&ping(Instant::now())).to_vec();
        assert_eq!(&real[..2], &[0, 0], "variant 0, deadline 0s");
        real.splice(1..2, [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        assert!(check_deadline(&real).is_err());
    }

    #[test]
    fn cancels_and_short_frames_are_left_to_the_decoder() {
        let cancel = encode(&ClientMessage::Cancel {
            trace_context: tarpc::context::current().trace_context,
            request_id: 3,
        });
        assert!(check_deadline(&cancel).is_ok());
        let mut codec = ServerCodec::default();
        assert!(Pin::new(&mut codec).deserialize(&cancel).is_ok());
        assert!(check_deadline(&[]).is_ok());
        assert!(check_deadline(&[0]).is_ok());
    }
}
