//! The QUIC server: accepts connections, reads one request per bidirectional stream,
//! dispatches it to the caller's [`Service`], and pushes commitments to subscribers on
//! server-opened unidirectional streams.
//!
//! Limits, each enforced before work is done: the maximum frame size (a larger frame gets a
//! `TooLarge` rejection and the stream is stopped), the concurrent bidirectional streams a
//! peer may open per connection (QUIC flow control: the peer cannot open more until one
//! finishes), connections per peer IP address (extra connections are closed with
//! `LimitExceeded`), subscriptions per connection, a per-request read deadline and the
//! connection idle timeout. A misbehaving peer never affects other connections.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

use crate::Error;
use crate::tls::{Fingerprint, Identity};
use crate::wire::{
    Commitment, FrameDecoder, Limits, Message, Push, RejectCode, Rejection, Request, Response,
    SubscribeRequest,
};

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's UDP address.
    pub addr: SocketAddr,
    /// A server-local connection number (unique for the server's lifetime).
    pub connection: u64,
}

/// What a subscription delivers: stored commitments from the requested height (catch-up),
/// then live ones. The server skips live commitments at or below a height already sent for
/// their shard, so history and live may overlap.
#[derive(Debug)]
pub struct SubscriptionFeed {
    /// Stored commitments at or above `from_height`, in order per shard.
    pub history: Vec<Commitment>,
    /// Commitments published from now on (bounded channel: the service chooses its size).
    pub live: mpsc::Receiver<Commitment>,
}

/// The appliance logic behind the server, supplied by the caller.
pub trait Service: Send + Sync + 'static {
    /// Answers a request. `Request::Subscribe` never reaches this method (see
    /// [`Service::subscribe`]).
    fn handle(&self, peer: PeerInfo, request: Request) -> impl Future<Output = Response> + Send;

    /// Opens a subscription, or refuses it with a typed rejection.
    fn subscribe(
        &self,
        peer: PeerInfo,
        request: &SubscribeRequest,
    ) -> Result<SubscriptionFeed, Rejection>;
}

/// Server limits and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Wire limits (frame size and field sizes).
    pub limits: Limits,
    /// Concurrent bidirectional streams a peer may have open on one connection.
    pub max_concurrent_streams: u32,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Open subscriptions per connection.
    pub max_subscriptions_per_connection: usize,
    /// A connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// Deadline to receive a whole request once its stream is open.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_concurrent_streams: 32,
            max_connections_per_ip: 16,
            max_subscriptions_per_connection: 8,
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of a running server.
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Connections accepted (handshake finished).
    pub connections_accepted: AtomicU64,
    /// Connections closed for exceeding the per-IP limit.
    pub connections_refused: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Requests dispatched to the service.
    pub requests: AtomicU64,
    /// Requests that failed to decode (malformed, oversized, unsupported) and were rejected.
    pub malformed: AtomicU64,
    /// Subscriptions open now.
    pub subscriptions_open: AtomicU64,
    /// Commitments pushed to subscribers.
    pub commitments_pushed: AtomicU64,
}

impl ServerStats {
    /// The counters as Prometheus metrics (`epa_quic_*`), for a [`crate::http::StatusProvider`].
    pub fn metrics(&self) -> Vec<crate::http::Metric> {
        use crate::http::{Metric, MetricKind::Counter, MetricKind::Gauge};
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            Metric::single(
                "epa_quic_connections_accepted_total",
                "QUIC connections accepted.",
                Counter,
                get(&self.connections_accepted),
            ),
            Metric::single(
                "epa_quic_connections_refused_total",
                "QUIC connections closed for exceeding the per-address limit.",
                Counter,
                get(&self.connections_refused),
            ),
            Metric::single(
                "epa_quic_connections_open",
                "QUIC connections open now.",
                Gauge,
                get(&self.connections_open),
            ),
            Metric::single(
                "epa_quic_requests_total",
                "Requests decoded and dispatched.",
                Counter,
                get(&self.requests),
            ),
            Metric::single(
                "epa_quic_malformed_total",
                "Requests rejected because they did not decode.",
                Counter,
                get(&self.malformed),
            ),
            Metric::single(
                "epa_quic_subscriptions_open",
                "Subscriptions open now.",
                Gauge,
                get(&self.subscriptions_open),
            ),
            Metric::single(
                "epa_quic_commitments_pushed_total",
                "Commitments pushed to subscribers.",
                Counter,
                get(&self.commitments_pushed),
            ),
        ]
    }

    fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    fn dec(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A running QUIC server. Dropping it (or [`Server::shutdown`]) closes the endpoint.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    fingerprint: Fingerprint,
    stats: Arc<ServerStats>,
    task: tokio::task::JoinHandle<()>,
}

/// The QUIC application close code for `code`.
pub(crate) fn close_code(code: RejectCode) -> VarInt {
    VarInt::from_u32(u32::from(code.to_u16()))
}

/// Tracks connections per IP address.
#[derive(Debug, Default)]
struct PerIp {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

struct IpGuard {
    tracker: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    fn try_acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<IpGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpGuard {
            tracker: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut counts = self
            .tracker
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

fn quic_config_error(e: impl core::fmt::Display) -> Error {
    Error::QuicConfig(e.to_string())
}

fn idle(d: Duration) -> Result<quinn::IdleTimeout, Error> {
    quinn::IdleTimeout::try_from(d).map_err(quic_config_error)
}

impl Server {
    /// Binds a UDP socket on `addr` (port 0 picks one) and starts serving `service`. Must be
    /// called inside a Tokio runtime.
    pub fn bind<S: Service>(
        addr: SocketAddr,
        identity: &Identity,
        config: ServerConfig,
        service: Arc<S>,
    ) -> Result<Self, Error> {
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(identity.server_config()?)
            .map_err(quic_config_error)?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(VarInt::from_u32(config.max_concurrent_streams))
            .max_concurrent_uni_streams(VarInt::from_u32(0))
            .max_idle_timeout(Some(idle(config.idle_timeout)?));
        server_config.transport_config(Arc::new(transport));
        let endpoint =
            quinn::Endpoint::server(server_config, addr).map_err(|source| Error::Io {
                what: "binding the QUIC server socket",
                source,
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| Error::Io {
            what: "reading the QUIC server address",
            source,
        })?;
        let stats = Arc::new(ServerStats::default());
        let task = tokio::spawn(accept_loop(
            endpoint.clone(),
            config,
            service,
            Arc::clone(&stats),
        ));
        Ok(Self {
            endpoint,
            local_addr,
            fingerprint: identity.fingerprint(),
            stats,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificate fingerprint clients must pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Live counters.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }

    /// Closes every connection and waits (up to one second) for the endpoint to go idle.
    pub async fn shutdown(self) {
        self.endpoint
            .close(VarInt::from_u32(0), b"appliance shutting down");
        self.task.abort();
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
        self.endpoint
            .close(VarInt::from_u32(0), b"appliance shutting down");
    }
}

async fn accept_loop<S: Service>(
    endpoint: quinn::Endpoint,
    config: ServerConfig,
    service: Arc<S>,
    stats: Arc<ServerStats>,
) {
    let per_ip = Arc::new(PerIp::default());
    let mut next_connection = 0u64;
    while let Some(incoming) = endpoint.accept().await {
        next_connection += 1;
        let guard = per_ip.try_acquire(
            incoming.remote_address().ip(),
            config.max_connections_per_ip,
        );
        let service = Arc::clone(&service);
        let stats = Arc::clone(&stats);
        let connection = next_connection;
        tokio::spawn(async move {
            let Ok(Ok(conn)) = tokio::time::timeout(config.request_timeout, incoming).await else {
                return;
            };
            let Some(guard) = guard else {
                ServerStats::inc(&stats.connections_refused);
                conn.close(
                    close_code(RejectCode::LimitExceeded),
                    b"too many connections from this address; close one and retry",
                );
                return;
            };
            ServerStats::inc(&stats.connections_accepted);
            ServerStats::inc(&stats.connections_open);
            serve_connection(conn, connection, config, service, Arc::clone(&stats)).await;
            ServerStats::dec(&stats.connections_open);
            drop(guard);
        });
    }
}

async fn serve_connection<S: Service>(
    conn: quinn::Connection,
    connection: u64,
    config: ServerConfig,
    service: Arc<S>,
    stats: Arc<ServerStats>,
) {
    let peer = PeerInfo {
        addr: conn.remote_address(),
        connection,
    };
    let subscriptions = Arc::new(AtomicU64::new(0));
    let next_subscription = Arc::new(AtomicU64::new(1));
    while let Ok((send, recv)) = conn.accept_bi().await {
        let ctx = StreamCtx {
            conn: conn.clone(),
            peer,
            config,
            service: Arc::clone(&service),
            stats: Arc::clone(&stats),
            subscriptions: Arc::clone(&subscriptions),
            next_subscription: Arc::clone(&next_subscription),
        };
        tokio::spawn(ctx.serve(send, recv));
    }
}

struct StreamCtx<S> {
    conn: quinn::Connection,
    peer: PeerInfo,
    config: ServerConfig,
    service: Arc<S>,
    stats: Arc<ServerStats>,
    subscriptions: Arc<AtomicU64>,
    next_subscription: Arc<AtomicU64>,
}

/// Reads bytes from `recv` until `decoder` yields one `M`; `Ok(None)` if the stream ended
/// cleanly before any frame.
pub(crate) async fn read_message<M: Message>(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
    limits: &Limits,
    what: &'static str,
) -> Result<Option<M>, Error> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return M::from_frame(&frame, limits).map(Some);
        }
        let want = decoder.wanted().clamp(1, 64 * 1024);
        match recv.read_chunk(want, true).await? {
            Some(chunk) => decoder.push(&chunk.bytes),
            None => {
                decoder.finish(what)?;
                return Ok(None);
            }
        }
    }
}

/// Writes one message as a frame.
pub(crate) async fn write_message<M: Message>(
    send: &mut SendStream,
    msg: &M,
    limits: &Limits,
) -> Result<(), Error> {
    let bytes = msg.encode(limits)?;
    send.write_all(&bytes).await?;
    Ok(())
}

impl<S: Service> StreamCtx<S> {
    async fn serve(self, mut send: SendStream, mut recv: RecvStream) {
        let limits = self.config.limits;
        let mut decoder = FrameDecoder::new(limits.max_frame_len);
        let read = tokio::time::timeout(
            self.config.request_timeout,
            read_message::<Request>(&mut recv, &mut decoder, &limits, "request stream"),
        )
        .await;
        let request = match read {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => {
                self.reject(
                    &mut send,
                    RejectCode::Malformed,
                    "empty request stream; send one request frame",
                )
                .await;
                return;
            }
            Ok(Err(e)) => {
                // Reading stops here: a large frame is never buffered past its header.
                let _ = recv.stop(close_code(e.reject_code()));
                self.reject(&mut send, e.reject_code(), &e.to_string())
                    .await;
                return;
            }
            Err(_) => {
                let _ = recv.stop(close_code(RejectCode::Busy));
                let msg = format!(
                    "no complete request within {} ms; send the whole frame promptly",
                    self.config.request_timeout.as_millis()
                );
                self.reject(&mut send, RejectCode::Malformed, &msg).await;
                return;
            }
        };
        // One request per stream: anything after it is ignored.
        let _ = recv.stop(VarInt::from_u32(0));
        ServerStats::inc(&self.stats.requests);
        match request {
            Request::Subscribe(sub) => self.subscribe(send, sub).await,
            request => {
                let response = self.service.handle(self.peer, request).await;
                let _ = self.respond(&mut send, &response).await;
            }
        }
    }

    async fn respond(&self, send: &mut SendStream, response: &Response) -> Result<(), Error> {
        let limits = self.config.limits;
        match write_message(send, response, &limits).await {
            Ok(()) => {}
            // A service answer over the limits becomes a typed rejection, never a panic.
            Err(e @ (Error::FrameTooLarge { .. } | Error::Encoding { .. })) => {
                let rej = Rejection::new(
                    RejectCode::Internal,
                    format!("the answer could not be encoded: {e}"),
                    limits.max_message_len,
                );
                write_message(send, &Response::Rejected(rej), &limits).await?;
            }
            Err(e) => return Err(e),
        }
        let _ = send.finish();
        Ok(())
    }

    async fn reject(&self, send: &mut SendStream, code: RejectCode, message: &str) {
        ServerStats::inc(&self.stats.malformed);
        let rej = Rejection::new(code, message, self.config.limits.max_message_len);
        let _ = self.respond(send, &Response::Rejected(rej)).await;
    }

    async fn subscribe(self, mut send: SendStream, sub: SubscribeRequest) {
        let limits = self.config.limits;
        let max = self.config.max_subscriptions_per_connection as u64;
        let open = self.subscriptions.fetch_add(1, Ordering::AcqRel);
        if open >= max {
            self.subscriptions.fetch_sub(1, Ordering::AcqRel);
            let msg = format!("at most {max} subscriptions per connection; close one first");
            let rej = Rejection::new(RejectCode::LimitExceeded, msg, limits.max_message_len);
            let _ = self.respond(&mut send, &Response::Rejected(rej)).await;
            return;
        }
        let feed = match self.service.subscribe(self.peer, &sub) {
            Ok(feed) => feed,
            Err(rej) => {
                self.subscriptions.fetch_sub(1, Ordering::AcqRel);
                let _ = self.respond(&mut send, &Response::Rejected(rej)).await;
                return;
            }
        };
        let id = self.next_subscription.fetch_add(1, Ordering::Relaxed);
        ServerStats::inc(&self.stats.subscriptions_open);
        if self
            .respond(&mut send, &Response::Subscribed { subscription: id })
            .await
            .is_ok()
        {
            let _ = self.push(id, &sub, feed).await;
        }
        ServerStats::dec(&self.stats.subscriptions_open);
        self.subscriptions.fetch_sub(1, Ordering::AcqRel);
    }

    async fn push(
        &self,
        id: u64,
        sub: &SubscribeRequest,
        feed: SubscriptionFeed,
    ) -> Result<(), Error> {
        let limits = self.config.limits;
        let mut uni = self.conn.open_uni().await?;
        write_message(&mut uni, &Push::Start { subscription: id }, &limits).await?;
        let mut last: HashMap<u32, u64> = HashMap::new();
        let SubscriptionFeed { history, mut live } = feed;
        for c in history {
            self.push_one(&mut uni, sub, &mut last, c).await?;
        }
        loop {
            tokio::select! {
                next = live.recv() => match next {
                    Some(c) => self.push_one(&mut uni, sub, &mut last, c).await?,
                    None => break,
                },
                _ = self.conn.closed() => return Ok(()),
            }
        }
        let _ = uni.finish();
        Ok(())
    }

    async fn push_one(
        &self,
        uni: &mut SendStream,
        sub: &SubscribeRequest,
        last: &mut HashMap<u32, u64>,
        c: Commitment,
    ) -> Result<(), Error> {
        if !sub.wants(c.shard) || c.height < sub.from_height {
            return Ok(());
        }
        if last.get(&c.shard).is_some_and(|h| c.height <= *h) {
            return Ok(());
        }
        last.insert(c.shard, c.height);
        write_message(uni, &Push::Commitment(c), &self.config.limits).await?;
        ServerStats::inc(&self.stats.commitments_pushed);
        Ok(())
    }
}
