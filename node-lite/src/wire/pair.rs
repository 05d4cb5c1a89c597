//! Sans-IO codecs for each side of a stream, and an in-memory pair harness that connects a
//! client codec to a server codec through byte pipes, delivering bytes in chosen chunk sizes.
//!
//! ```
//! use epa_node_lite::wire::{JobId, Limits, MemoryPair, Request, Response};
//!
//! let mut pair = MemoryPair::new(Limits::default());
//! pair.client_send(&Request::JobStatus { id: JobId(7) }).unwrap();
//! let got = pair.pump_to_server(3).unwrap(); // 3-byte chunks
//! assert_eq!(got, vec![Request::JobStatus { id: JobId(7) }]);
//! pair.server_send(&Response::NotFound { id: JobId(7) }).unwrap();
//! assert_eq!(pair.pump_to_client(1).unwrap(), vec![Response::NotFound { id: JobId(7) }]);
//! ```

use std::collections::VecDeque;
use std::marker::PhantomData;

use super::{FrameDecoder, Limits, Message, Request, Response};
use crate::Error;

/// One side of a stream: writes `Out` messages, decodes `In` messages from received bytes.
#[derive(Debug, Clone)]
pub struct Codec<Out: Message, In: Message> {
    limits: Limits,
    decoder: FrameDecoder,
    _marker: PhantomData<fn(Out) -> In>,
}

/// The client side: sends requests, receives responses.
pub type ClientCodec = Codec<Request, Response>;
/// The server side: sends responses, receives requests.
pub type ServerCodec = Codec<Response, Request>;

impl<Out: Message, In: Message> Codec<Out, In> {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            decoder: FrameDecoder::new(limits.max_frame_len),
            _marker: PhantomData,
        }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The frame bytes of `msg`.
    pub fn encode(&self, msg: &Out) -> Result<Vec<u8>, Error> {
        msg.encode(&self.limits)
    }

    /// Feeds received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed, or a typed error.
    pub fn next_message(&mut self) -> Result<Option<In>, Error> {
        match self.decoder.next_frame()? {
            Some(frame) => In::from_frame(&frame, &self.limits).map(Some),
            None => Ok(None),
        }
    }

    /// Bytes buffered toward the next frame.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Checks that the peer's bytes ended on a frame boundary.
    pub fn finish(&self, what: &'static str) -> Result<(), Error> {
        self.decoder.finish(what)
    }
}

/// A client codec and a server codec joined by two in-memory byte pipes.
#[derive(Debug)]
pub struct MemoryPair {
    /// The client's codec.
    pub client: ClientCodec,
    /// The server's codec.
    pub server: ServerCodec,
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
}

impl MemoryPair {
    /// A pair where both sides enforce `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            client: Codec::new(limits),
            server: Codec::new(limits),
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
        }
    }

    /// Encodes `req` on the client and queues its bytes toward the server.
    pub fn client_send(&mut self, req: &Request) -> Result<(), Error> {
        let bytes = self.client.encode(req)?;
        self.to_server.extend(bytes);
        Ok(())
    }

    /// Encodes `resp` on the server and queues its bytes toward the client.
    pub fn server_send(&mut self, resp: &Response) -> Result<(), Error> {
        let bytes = self.server.encode(resp)?;
        self.to_client.extend(bytes);
        Ok(())
    }

    /// Queues raw bytes toward the server (to inject malformed input).
    pub fn client_send_raw(&mut self, bytes: &[u8]) {
        self.to_server.extend(bytes.iter().copied());
    }

    /// Delivers everything queued toward the server in chunks of `chunk` bytes (at least 1),
    /// returning the requests decoded on the way, or the first decode error.
    pub fn pump_to_server(&mut self, chunk: usize) -> Result<Vec<Request>, Error> {
        pump(&mut self.to_server, chunk, |bytes| {
            self.server.push(bytes);
            drain(&mut self.server)
        })
    }

    /// Delivers everything queued toward the client in chunks of `chunk` bytes (at least 1),
    /// returning the responses decoded on the way, or the first decode error.
    pub fn pump_to_client(&mut self, chunk: usize) -> Result<Vec<Response>, Error> {
        pump(&mut self.to_client, chunk, |bytes| {
            self.client.push(bytes);
            drain(&mut self.client)
        })
    }
}

fn drain<O: Message, I: Message>(codec: &mut Codec<O, I>) -> Result<Vec<I>, Error> {
    let mut out = Vec::new();
    while let Some(msg) = codec.next_message()? {
        out.push(msg);
    }
    Ok(out)
}

fn pump<T>(
    pipe: &mut VecDeque<u8>,
    chunk: usize,
    mut deliver: impl FnMut(&[u8]) -> Result<Vec<T>, Error>,
) -> Result<Vec<T>, Error> {
    let chunk = chunk.max(1);
    let mut out = Vec::new();
    while !pipe.is_empty() {
        let n = chunk.min(pipe.len());
        let bytes: Vec<u8> = pipe.drain(..n).collect();
        out.extend(deliver(&bytes)?);
    }
    Ok(out)
}
