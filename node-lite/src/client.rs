//! The QUIC client used by aggregators, validators, the CLI and the tests.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr, pin: epa_node_lite::tls::Fingerprint) -> Result<(), epa_node_lite::Error> {
//! use epa_node_lite::client::{Client, ClientConfig};
//! use epa_node_lite::wire::{JobId, SubscribeRequest};
//!
//! let client = Client::connect(addr, pin, ClientConfig::default()).await?;
//! let status = client.job_status(JobId(1)).await?;
//! let mut sub = client.subscribe(SubscribeRequest { shards: vec![0], from_height: 1 }).await?;
//! while let Some(commitment) = sub.next().await {
//!     let commitment = commitment?;
//!     println!("shard {} height {}", commitment.shard, commitment.height);
//! }
//! # let _ = status; Ok(()) }
//! ```

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{ConnectionError, RecvStream, VarInt};
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::server::read_message;
use crate::tls::{self, Fingerprint, PinnedVerifier};
use crate::wire::{
    AUTH_EXPORTER_LABEL, Authenticate, Batch, CHALLENGE_LEN, Commitment, FrameDecoder, JobId,
    JobStatusReport, Limits, Message, ProvingJob, Push, RejectCode, Request, Response,
    SubscribeRequest,
};
use crypto::dsa::mldsa65::KeyPair;

/// Client limits and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientConfig {
    /// Wire limits (must match the server's).
    pub limits: Limits,
    /// Deadline for the handshake and for each request's answer.
    pub request_timeout: Duration,
    /// Connection idle timeout.
    pub idle_timeout: Duration,
    /// Commitments buffered per subscription before the stream is back-pressured.
    pub push_queue: usize,
    /// Subscriptions this client may hold at once (the server-opened streams it accepts).
    pub max_subscriptions: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            push_queue: 64,
            max_subscriptions: 8,
        }
    }
}

/// A push stream either waiting for its `Subscribed` answer or the answer waiting for it.
#[derive(Debug)]
enum Slot {
    Waiting(oneshot::Sender<(RecvStream, FrameDecoder)>),
    Arrived(RecvStream, FrameDecoder),
}

type Slots = Arc<Mutex<HashMap<u64, Slot>>>;

/// A connection to an appliance, authenticated by its pinned certificate fingerprint.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
    config: ClientConfig,
    slots: Slots,
    accept_task: tokio::task::JoinHandle<()>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Maps a connection error, turning an EPA application close into [`Error::ClosedByPeer`].
fn connection_error(e: ConnectionError) -> Error {
    if let ConnectionError::ApplicationClosed(close) = &e {
        let code = u16::try_from(close.error_code.into_inner())
            .ok()
            .and_then(|c| RejectCode::from_u16(c).ok());
        if let Some(code) = code {
            return Error::ClosedByPeer {
                code,
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            };
        }
    }
    Error::Connection(e)
}

fn stream_error(e: Error) -> Error {
    match e {
        Error::Connection(c) => connection_error(c),
        Error::Write(quinn::WriteError::ConnectionLost(c)) => connection_error(c),
        Error::Read(quinn::ReadError::ConnectionLost(c)) => connection_error(c),
        other => other,
    }
}

impl Client {
    /// Connects to `addr`, accepting only a server whose certificate has `fingerprint`. Must
    /// be called inside a Tokio runtime.
    pub async fn connect(
        addr: SocketAddr,
        fingerprint: Fingerprint,
        config: ClientConfig,
    ) -> Result<Self, Error> {
        let verifier = Arc::new(PinnedVerifier::new(fingerprint));
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls::client_config(
            Arc::clone(&verifier),
        )?)
        .map_err(|e| Error::QuicConfig(e.to_string()))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(0))
            .max_concurrent_uni_streams(VarInt::from_u32(config.max_subscriptions))
            .max_idle_timeout(Some(
                quinn::IdleTimeout::try_from(config.idle_timeout)
                    .map_err(|e| Error::QuicConfig(e.to_string()))?,
            ));
        client_config.transport_config(Arc::new(transport));
        let local: SocketAddr = if addr.is_ipv6() {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let endpoint = quinn::Endpoint::client(local).map_err(|source| Error::Io {
            what: "binding the QUIC client socket",
            source,
        })?;
        let connecting = endpoint
            .connect_with(client_config, addr, tls::SERVER_NAME)
            .map_err(|source| Error::Connect { addr, source })?;
        let conn = match tokio::time::timeout(config.request_timeout, connecting).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: "QUIC handshake",
                    millis: millis(config.request_timeout),
                });
            }
            Ok(Err(e)) => {
                if let Some(found) = verifier.last_seen().filter(|f| *f != fingerprint) {
                    return Err(Error::FingerprintMismatch {
                        expected: fingerprint.to_hex(),
                        found: found.to_hex(),
                    });
                }
                return Err(connection_error(e));
            }
            Ok(Ok(conn)) => conn,
        };
        let slots: Slots = Arc::default();
        let accept_task = tokio::spawn(accept_push_streams(
            conn.clone(),
            Arc::clone(&slots),
            config,
        ));
        Ok(Self {
            endpoint,
            conn,
            config,
            slots,
            accept_task,
        })
    }

    /// Connects like [`Client::connect`], then authenticates the connection with `key`
    /// ([`Client::authenticate`]); returns the client and the tenant the appliance mapped the
    /// key to.
    pub async fn connect_authenticated(
        addr: SocketAddr,
        fingerprint: Fingerprint,
        config: ClientConfig,
        key: &KeyPair,
    ) -> Result<(Self, String), Error> {
        let client = Self::connect(addr, fingerprint, config).await?;
        let tenant = client.authenticate(key).await?;
        Ok((client, tenant))
    }

    /// This connection's authentication challenge: [`CHALLENGE_LEN`] bytes of TLS exporter
    /// keying material under [`AUTH_EXPORTER_LABEL`]. The server derives the same bytes; no
    /// other TLS session has them.
    pub fn challenge(&self) -> Result<[u8; CHALLENGE_LEN], Error> {
        let mut out = [0u8; CHALLENGE_LEN];
        self.conn
            .export_keying_material(&mut out, AUTH_EXPORTER_LABEL, b"")
            .map_err(|e| {
                Error::QuicConfig(format!("the TLS session exports no keying material: {e:?}"))
            })?;
        Ok(out)
    }

    /// Proves possession of `key` to the appliance: signs this connection's
    /// [`challenge`](Self::challenge) with ML-DSA-65 (deterministic variant: the challenge is
    /// already unique) and sends it as an [`Authenticate`] request. Returns the tenant name.
    pub async fn authenticate(&self, key: &KeyPair) -> Result<String, Error> {
        let challenge = self.challenge()?;
        let auth =
            Authenticate::sign(&challenge, &key.signing_key, &key.verifying_key, &[0u8; 32])?;
        self.send_authenticate(&auth).await
    }

    /// Sends a ready-made [`Authenticate`] (tests use it to replay one on another connection).
    pub async fn send_authenticate(&self, auth: &Authenticate) -> Result<String, Error> {
        let bytes = auth.encode(&self.config.limits)?;
        match self.request_raw(&bytes, "Authenticate").await? {
            Response::Authenticated { tenant } => Ok(tenant),
            Response::Rejected(r) => Err(Error::Rejected {
                code: r.code,
                message: r.message,
            }),
            other => Err(Error::UnexpectedMessage {
                request: "Authenticate",
                got: other.name(),
            }),
        }
    }

    /// The underlying QUIC connection (for tests and diagnostics).
    pub fn connection(&self) -> &quinn::Connection {
        &self.conn
    }

    /// Sends one request on a new stream and waits for its answer.
    pub async fn request(&self, request: &Request) -> Result<Response, Error> {
        let bytes = request.encode(&self.config.limits)?;
        self.request_raw(&bytes, request.name()).await
    }

    /// Sends raw bytes as a request on a new stream and waits for the answer (for testing how
    /// the appliance treats malformed input).
    pub async fn request_raw(&self, bytes: &[u8], what: &'static str) -> Result<Response, Error> {
        let deadline = self.config.request_timeout;
        let fut = async {
            let (mut send, mut recv) = self.conn.open_bi().await.map_err(connection_error)?;
            match send.write_all(bytes).await {
                // The server stopped reading (an oversized or malformed frame): its
                // rejection is still on the way back.
                Ok(()) | Err(quinn::WriteError::Stopped(_)) => {}
                Err(e) => return Err(Error::from(e)),
            }
            let _ = send.finish();
            let mut decoder = FrameDecoder::new(self.config.limits.max_frame_len);
            read_message::<Response>(
                &mut recv,
                &mut decoder,
                &self.config.limits,
                "response stream",
            )
            .await?
            .ok_or(Error::IncompleteFrame {
                what: "response stream",
                buffered: 0,
            })
        };
        match tokio::time::timeout(deadline, fut).await {
            Ok(result) => result.map_err(stream_error),
            Err(_) => Err(Error::Timeout {
                what,
                millis: millis(deadline),
            }),
        }
    }

    fn accepted(request: &'static str, response: Response) -> Result<JobId, Error> {
        match response {
            Response::Accepted { id } => Ok(id),
            Response::Rejected(r) => Err(Error::Rejected {
                code: r.code,
                message: r.message,
            }),
            other => Err(Error::UnexpectedMessage {
                request,
                got: other.name(),
            }),
        }
    }

    /// Submits a signed batch; the appliance answers once it is durable.
    pub async fn submit_batch(&self, batch: &Batch) -> Result<JobId, Error> {
        let response = self.request(&Request::SubmitBatch(batch.clone())).await?;
        Self::accepted("SubmitBatch", response)
    }

    /// Submits a proving job.
    pub async fn submit_proving_job(&self, job: &ProvingJob) -> Result<JobId, Error> {
        let response = self
            .request(&Request::SubmitProvingJob(job.clone()))
            .await?;
        Self::accepted("SubmitProvingJob", response)
    }

    /// A job's status, or `None` if the appliance does not know the id.
    pub async fn job_status(&self, id: JobId) -> Result<Option<JobStatusReport>, Error> {
        match self.request(&Request::JobStatus { id }).await? {
            Response::Status(s) => Ok(Some(s)),
            Response::NotFound { .. } => Ok(None),
            Response::Rejected(r) => Err(Error::Rejected {
                code: r.code,
                message: r.message,
            }),
            other => Err(Error::UnexpectedMessage {
                request: "JobStatus",
                got: other.name(),
            }),
        }
    }

    /// A finished proof envelope, or `None` if the appliance has none for the id.
    pub async fn fetch_proof(&self, id: JobId) -> Result<Option<Vec<u8>>, Error> {
        match self.request(&Request::FetchProof { id }).await? {
            Response::Proof { envelope, .. } => Ok(Some(envelope)),
            Response::NotFound { .. } => Ok(None),
            Response::Rejected(r) => Err(Error::Rejected {
                code: r.code,
                message: r.message,
            }),
            other => Err(Error::UnexpectedMessage {
                request: "FetchProof",
                got: other.name(),
            }),
        }
    }

    /// Subscribes to commitments of `request.shards` from `request.from_height` on.
    pub async fn subscribe(&self, request: SubscribeRequest) -> Result<Subscription, Error> {
        let id = match self.request(&Request::Subscribe(request)).await? {
            Response::Subscribed { subscription } => subscription,
            Response::Rejected(r) => {
                return Err(Error::Rejected {
                    code: r.code,
                    message: r.message,
                });
            }
            other => {
                return Err(Error::UnexpectedMessage {
                    request: "Subscribe",
                    got: other.name(),
                });
            }
        };
        let arrived = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.remove(&id) {
                Some(Slot::Arrived(recv, decoder)) => Ok((recv, decoder)),
                _ => {
                    let (tx, rx) = oneshot::channel();
                    slots.insert(id, Slot::Waiting(tx));
                    Err(rx)
                }
            }
        };
        let (recv, decoder) = match arrived {
            Ok(pair) => pair,
            Err(rx) => match tokio::time::timeout(self.config.request_timeout, rx).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(_)) => return Err(Error::SubscriptionClosed("connection closed")),
                Err(_) => {
                    self.slots
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&id);
                    return Err(Error::Timeout {
                        what: "subscription push stream",
                        millis: millis(self.config.request_timeout),
                    });
                }
            },
        };
        let (tx, rx) = mpsc::channel(self.config.push_queue.max(1));
        let task = tokio::spawn(read_pushes(recv, decoder, self.config.limits, tx));
        Ok(Subscription { id, rx, task })
    }

    /// Closes the connection and waits briefly for the close to be sent.
    pub async fn close(self) {
        self.conn.close(VarInt::from_u32(0), b"client done");
        self.accept_task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Accepts server-opened push streams and hands each to its subscription by id.
async fn accept_push_streams(conn: quinn::Connection, slots: Slots, config: ClientConfig) {
    while let Ok(mut recv) = conn.accept_uni().await {
        let slots = Arc::clone(&slots);
        let limits = config.limits;
        let deadline = config.request_timeout;
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new(limits.max_frame_len);
            let first = tokio::time::timeout(
                deadline,
                read_message::<Push>(&mut recv, &mut decoder, &limits, "push stream"),
            )
            .await;
            let Ok(Ok(Some(Push::Start { subscription }))) = first else {
                let _ = recv.stop(crate::server::close_code(RejectCode::Malformed));
                return;
            };
            let mut slots = slots.lock().unwrap_or_else(|p| p.into_inner());
            match slots.remove(&subscription) {
                Some(Slot::Waiting(tx)) => {
                    let _ = tx.send((recv, decoder));
                }
                _ if slots.len() >= config.max_subscriptions as usize => {
                    let _ = recv.stop(crate::server::close_code(RejectCode::LimitExceeded));
                }
                _ => {
                    slots.insert(subscription, Slot::Arrived(recv, decoder));
                }
            }
        });
    }
}

async fn read_pushes(
    mut recv: RecvStream,
    mut decoder: FrameDecoder,
    limits: Limits,
    tx: mpsc::Sender<Result<Commitment, Error>>,
) {
    loop {
        let item = match read_message::<Push>(&mut recv, &mut decoder, &limits, "push stream").await
        {
            Ok(Some(Push::Commitment(c))) => Ok(c),
            Ok(Some(Push::Start { .. })) => Err(Error::UnexpectedMessage {
                request: "Subscribe",
                got: "a second Start",
            }),
            Ok(None) => return,
            Err(e) => Err(stream_error(e)),
        };
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// A stream of commitments pushed by the appliance.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<Result<Commitment, Error>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The subscription id the appliance assigned.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next commitment; `None` once the appliance ends the stream. An error ends it too.
    pub async fn next(&mut self) -> Option<Result<Commitment, Error>> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}
