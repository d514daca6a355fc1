//! Requests to a brick's RPC port: length-delimited frames (at most
//! `proto::MAX_FRAME`) of bincode `ClientMessage<BrickRequest>`, decoded by
//! the same transport brick/src/server.rs builds (its codec is
//! `proto::wire::ServerCodec`), until the stream ends or a frame is
//! refused (the brick then drops the connection).
#![no_main]

use brickfs_fuzz::{block_on, Wire};
use futures::StreamExt;
use libfuzzer_sys::fuzz_target;
use tarpc::tokio_util::codec::LengthDelimitedCodec;

fuzz_target!(|data: &[u8]| {
    let framed = LengthDelimitedCodec::builder()
        .max_frame_length(proto::MAX_FRAME)
        .new_framed(Wire(data));
    let mut transport: tarpc::serde_transport::Transport<
        _,
        tarpc::ClientMessage<proto::BrickRequest>,
        tarpc::Response<proto::BrickResponse>,
        _,
    > = tarpc::serde_transport::new(framed, proto::wire::ServerCodec::default());
    block_on(async { while let Some(Ok(_request)) = transport.next().await {} });
});
