//! The QUIC server: accepts connections, reads one request per bidirectional stream,
//! dispatches it to the caller's [`Service`], and pushes commitments to subscribers on
//! server-opened unidirectional streams.
//!
//! Limits, each enforced before work is done: the maximum frame size (a larger frame gets a
//! `TooLarge` rejection and the stream is stopped), the concurrent bidirectional streams a
//! peer may open per connection (QUIC flow control: the peer cannot open more until one
//! finishes), connections per peer IP address (extra connections are closed with
//! `LimitExceeded`), subscriptions per connection, a per-request read deadline (slow-loris:
//! `Busy` and [`ServerStats::request_timeouts`]) and the connection idle timeout, a global
//! budget of request bytes held in memory at once (`Busy`), a per-tenant token bucket on
//! submissions (`Busy`), and a per-connection token bucket on opened streams (a stream flood:
//! `LimitExceeded`, and the connection is closed with `LimitExceeded` once a second's worth of
//! streams was refused). Every refusal is counted in [`ServerStats`] (exported as `epa_quic_*`
//! by [`ServerStats::metrics`]). A misbehaving peer never affects other connections.
//!
//! Authentication: when [`ServerConfig::require_authentication`] is set, a connection must
//! first send an [`Authenticate`] request: an ML-DSA-65 signature over 32 bytes of TLS
//! exporter keying material ([`AUTH_EXPORTER_LABEL`]), which both ends derive from this TLS
//! session only, so a signature cannot be replayed on another connection. The key is mapped to
//! a tenant by [`Service::authorize`]. Until then every request is refused with
//! `Unauthorized` (and a frame larger than [`PRE_AUTH_MAX_FRAME`] is refused from its header,
//! so an anonymous peer cannot make the server buffer large requests), and a connection that
//! does not authenticate within the request deadline is closed with `Unauthorized`.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crypto::dsa::mldsa65::VerifyingKey;
use quinn::{RecvStream, SendStream, VarInt};
use tokio::sync::mpsc;

use crate::Error;
use crate::tls::{Fingerprint, Identity};
use crate::wire::{
    AUTH_EXPORTER_LABEL, Authenticate, CHALLENGE_LEN, Commitment, Frame, FrameDecoder, KeyId,
    Limits, Message, Push, RejectCode, Rejection, Request, Response, SubscribeRequest, kinds,
};

/// The largest frame an unauthenticated connection may send when authentication is required:
/// an [`Authenticate`] (an ML-DSA-65 key and signature, about 5.3 KB) fits, anything larger is
/// refused with `Unauthorized` before its body is read.
pub const PRE_AUTH_MAX_FRAME: u32 = 8 * 1024;

/// The rejection message of a request sent before the connection authenticated.
const NOT_AUTHENTICATED: &str =
    "this connection has not authenticated; send Authenticate with a configured tenant key first";

/// Who sent a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's UDP address.
    pub addr: SocketAddr,
    /// A server-local connection number (unique for the server's lifetime).
    pub connection: u64,
    /// The key id the connection authenticated with, if it did.
    pub key: Option<KeyId>,
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

    /// Maps a key that proved possession on this connection to its tenant name, or refuses it
    /// (typically `UnknownKey`). The default accepts every key as the tenant `key-<id prefix>`:
    /// override it to admit only configured tenants.
    fn authorize(&self, peer: PeerInfo, key: &VerifyingKey) -> Result<String, Rejection> {
        let _ = peer;
        Ok(format!("key-{}", &KeyId::of(key).to_hex()[..16]))
    }

    /// The submission rate limit of `tenant` (submissions per second, the burst one second's
    /// worth) when it has its own, replacing [`ServerConfig::submissions_per_second`] and
    /// [`ServerConfig::submission_burst`] for it; `Some(0)` exempts the tenant. The default
    /// gives every tenant the server's limit.
    fn submission_rate(&self, tenant: &str) -> Option<u32> {
        let _ = tenant;
        None
    }
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
    /// Deadline to receive a whole request once its stream is open (the slow-loris bound),
    /// and to authenticate once the handshake is done.
    pub request_timeout: Duration,
    /// Refuse every request of a connection until it authenticates ([`Authenticate`]). Off in
    /// this library's default (embedders and tests choose); the appliance turns it on through
    /// its configuration (`quic.require_authentication`, default `true`).
    pub require_authentication: bool,
    /// Submissions (batches and proving jobs) per second one tenant may make on average
    /// (token-bucket refill rate); `0` turns the rate limit off. Unauthenticated peers are
    /// counted per IP address.
    pub submissions_per_second: u32,
    /// Submissions a tenant may make in a burst (the token-bucket size).
    pub submission_burst: u32,
    /// Request bytes all connections together may hold in memory at once (read but not yet
    /// answered); a request that would go over is refused with `Busy`.
    pub max_inflight_bytes: u64,
    /// Streams a peer may open per second on one connection (token-bucket rate; the bucket
    /// holds one second's worth, at least [`max_concurrent_streams`](Self::max_concurrent_streams));
    /// `0` turns the limit off. A stream over it is refused with `LimitExceeded` without being
    /// read; a connection that had a second's worth of streams refused is closed with
    /// `LimitExceeded`.
    pub max_streams_per_second: u32,
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
            require_authentication: false,
            submissions_per_second: 1000,
            submission_burst: 2000,
            max_inflight_bytes: 512 << 20,
            max_streams_per_second: 500,
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
    /// Frames refused because they announced a length over the frame limit.
    pub too_large: AtomicU64,
    /// Requests whose frame did not arrive within the request deadline (slow-loris).
    pub request_timeouts: AtomicU64,
    /// Connections that authenticated.
    pub authenticated: AtomicU64,
    /// Authentication attempts refused (bad signature, unknown key, repeated).
    pub auth_failures: AtomicU64,
    /// Connections closed for not authenticating within the deadline.
    pub auth_timeouts: AtomicU64,
    /// Requests refused because the connection had not authenticated.
    pub unauthorized: AtomicU64,
    /// Submissions refused by the per-tenant rate limit.
    pub rate_limited: AtomicU64,
    /// Requests refused because the in-memory request budget was spent.
    pub memory_refused: AtomicU64,
    /// Request bytes held in memory now.
    pub inflight_bytes: AtomicU64,
    /// Streams refused because the connection opened them faster than the stream rate.
    pub stream_floods: AtomicU64,
    /// Connections closed for flooding streams.
    pub flood_disconnects: AtomicU64,
    /// Subscriptions refused because the connection holds its maximum.
    pub subscriptions_refused: AtomicU64,
    /// Connections closed by the idle timeout.
    pub idle_timeouts: AtomicU64,
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
            Metric::single(
                "epa_quic_too_large_total",
                "Frames refused for announcing a length over the frame limit.",
                Counter,
                get(&self.too_large),
            ),
            Metric::single(
                "epa_quic_request_timeouts_total",
                "Requests not received whole within the request deadline.",
                Counter,
                get(&self.request_timeouts),
            ),
            Metric::single(
                "epa_quic_authenticated_total",
                "Connections that authenticated with an ML-DSA key.",
                Counter,
                get(&self.authenticated),
            ),
            Metric::single(
                "epa_quic_auth_failures_total",
                "Authentication attempts refused.",
                Counter,
                get(&self.auth_failures),
            ),
            Metric::single(
                "epa_quic_auth_timeouts_total",
                "Connections closed for not authenticating in time.",
                Counter,
                get(&self.auth_timeouts),
            ),
            Metric::single(
                "epa_quic_unauthorized_total",
                "Requests refused before the connection authenticated.",
                Counter,
                get(&self.unauthorized),
            ),
            Metric::single(
                "epa_quic_rate_limited_total",
                "Submissions refused by the per-tenant rate limit.",
                Counter,
                get(&self.rate_limited),
            ),
            Metric::single(
                "epa_quic_memory_refused_total",
                "Requests refused because the in-memory request budget was spent.",
                Counter,
                get(&self.memory_refused),
            ),
            Metric::single(
                "epa_quic_inflight_bytes",
                "Request bytes held in memory now.",
                Gauge,
                get(&self.inflight_bytes),
            ),
            Metric::single(
                "epa_quic_stream_floods_total",
                "Streams refused for exceeding the per-connection stream rate.",
                Counter,
                get(&self.stream_floods),
            ),
            Metric::single(
                "epa_quic_flood_disconnects_total",
                "Connections closed for flooding streams.",
                Counter,
                get(&self.flood_disconnects),
            ),
            Metric::single(
                "epa_quic_subscriptions_refused_total",
                "Subscriptions refused for exceeding the per-connection limit.",
                Counter,
                get(&self.subscriptions_refused),
            ),
            Metric::single(
                "epa_quic_idle_timeouts_total",
                "Connections closed by the idle timeout.",
                Counter,
                get(&self.idle_timeouts),
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

    /// The live counters as a shared handle (for a metrics exporter that outlives a borrow).
    pub fn stats_handle(&self) -> Arc<ServerStats> {
        Arc::clone(&self.stats)
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

/// Shared state of the accept loop: per-address counts, the request-byte budget and the
/// submission token buckets.
struct Shared {
    config: ServerConfig,
    stats: Arc<ServerStats>,
    budget: Budget,
    buckets: RateLimiter,
}

/// A global budget of request bytes held in memory.
#[derive(Debug)]
struct Budget {
    max: u64,
}

/// Bytes of one request held against the [`Budget`]; released on drop.
struct Reservation {
    stats: Arc<ServerStats>,
    held: u64,
}

impl Budget {
    /// Reserves `n` more bytes for `r`; `false` (and nothing reserved) if over the budget.
    fn grow(&self, r: &mut Reservation, n: u64) -> bool {
        let ok = r
            .stats
            .inflight_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok();
        if ok {
            r.held += n;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.stats
            .inflight_bytes
            .fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// A token bucket: `rate` tokens a second up to `burst`, counted in thousandths.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    /// Tokens in thousandths.
    tokens: u64,
    /// Last refill.
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens.
    fn full(burst: u32, now: Instant) -> Self {
        Self {
            tokens: u64::from(burst.max(1)) * 1000,
            at: now,
        }
    }

    /// The thousandths the bucket would hold at `now` (capped at `burst`).
    fn level(&self, rate: u32, burst: u32, now: Instant) -> u64 {
        let ms = u64::try_from(now.duration_since(self.at).as_millis()).unwrap_or(u64::MAX);
        // rate tokens/s = rate thousandths per millisecond.
        self.tokens
            .saturating_add(ms.saturating_mul(u64::from(rate)))
            .min(u64::from(burst.max(1)) * 1000)
    }

    /// Refills for the time since the last call and takes one token; `false` if empty.
    fn take(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        self.tokens = self.level(rate, burst, now);
        self.at = now;
        if self.tokens >= 1000 {
            self.tokens -= 1000;
            true
        } else {
            false
        }
    }
}

/// Per-tenant token buckets: `rate` tokens a second up to `burst`, one per submission.
#[derive(Debug)]
struct RateLimiter {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    /// Takes one token from `tenant`'s bucket; `false` if it is empty. `own_rate` is the
    /// tenant's own limit ([`Service::submission_rate`]; its burst is one second's worth).
    fn take(&self, tenant: &str, own_rate: Option<u32>, now: Instant) -> bool {
        let (rate, burst) = match own_rate {
            Some(rate) => (rate, rate),
            None => (self.rate, self.burst),
        };
        if rate == 0 {
            return true;
        }
        let full = u64::from(burst.max(1)) * 1000;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > 100_000 {
            // Forget buckets that have refilled: they hold no state worth keeping.
            buckets.retain(|_, b| b.level(rate, burst, now) < full);
        }
        buckets
            .entry(tenant.to_owned())
            .or_insert_with(|| TokenBucket::full(burst, now))
            .take(rate, burst, now)
    }
}

async fn accept_loop<S: Service>(
    endpoint: quinn::Endpoint,
    config: ServerConfig,
    service: Arc<S>,
    stats: Arc<ServerStats>,
) {
    let per_ip = Arc::new(PerIp::default());
    let shared = Arc::new(Shared {
        config,
        stats: Arc::clone(&stats),
        budget: Budget {
            max: config.max_inflight_bytes,
        },
        buckets: RateLimiter {
            rate: config.submissions_per_second,
            burst: config.submission_burst,
            buckets: Mutex::default(),
        },
    });
    let mut next_connection = 0u64;
    while let Some(incoming) = endpoint.accept().await {
        next_connection += 1;
        let guard = per_ip.try_acquire(
            incoming.remote_address().ip(),
            config.max_connections_per_ip,
        );
        let service = Arc::clone(&service);
        let stats = Arc::clone(&stats);
        let shared = Arc::clone(&shared);
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
            serve_connection(conn, connection, service, shared).await;
            ServerStats::dec(&stats.connections_open);
            drop(guard);
        });
    }
}

/// The identity a connection authenticated as.
#[derive(Debug)]
struct Authenticated {
    key: KeyId,
    tenant: String,
}

async fn serve_connection<S: Service>(
    conn: quinn::Connection,
    connection: u64,
    service: Arc<S>,
    shared: Arc<Shared>,
) {
    let config = shared.config;
    let addr = conn.remote_address();
    let auth: Arc<OnceLock<Authenticated>> = Arc::default();
    if config.require_authentication {
        let conn = conn.clone();
        let auth = Arc::clone(&auth);
        let stats = Arc::clone(&shared.stats);
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(config.request_timeout) => {
                    if auth.get().is_none() {
                        ServerStats::inc(&stats.auth_timeouts);
                        conn.close(
                            close_code(RejectCode::Unauthorized),
                            b"no authentication within the deadline; send Authenticate first",
                        );
                    }
                }
                _ = conn.closed() => {}
            }
        });
    }
    let subscriptions = Arc::new(AtomicU64::new(0));
    let next_subscription = Arc::new(AtomicU64::new(1));
    let stream_rate = config.max_streams_per_second;
    let stream_burst = stream_rate.max(config.max_concurrent_streams);
    let mut streams = TokenBucket::full(stream_burst, Instant::now());
    let mut flooded = 0u32;
    let ended = loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(e) => break e,
        };
        if stream_rate > 0 && !streams.take(stream_rate, stream_burst, Instant::now()) {
            ServerStats::inc(&shared.stats.stream_floods);
            flooded += 1;
            if flooded >= stream_burst {
                ServerStats::inc(&shared.stats.flood_disconnects);
                conn.close(
                    close_code(RejectCode::LimitExceeded),
                    b"stream flood: too many streams refused; reconnect and open fewer streams",
                );
                continue;
            }
            // Refused without reading a byte of it.
            let _ = recv.stop(close_code(RejectCode::LimitExceeded));
            let msg = format!(
                "stream flood: more than {stream_rate} streams a second on this connection; slow down"
            );
            let limits = config.limits;
            tokio::spawn(async move {
                let rej = Rejection::new(RejectCode::LimitExceeded, msg, limits.max_message_len);
                if write_message(&mut send, &Response::Rejected(rej), &limits)
                    .await
                    .is_ok()
                {
                    let _ = send.finish();
                }
            });
            continue;
        }
        let ctx = StreamCtx {
            conn: conn.clone(),
            peer: PeerInfo {
                addr,
                connection,
                key: auth.get().map(|a| a.key),
            },
            config,
            service: Arc::clone(&service),
            stats: Arc::clone(&shared.stats),
            shared: Arc::clone(&shared),
            auth: Arc::clone(&auth),
            subscriptions: Arc::clone(&subscriptions),
            next_subscription: Arc::clone(&next_subscription),
        };
        tokio::spawn(ctx.serve(send, recv));
    };
    if matches!(ended, quinn::ConnectionError::TimedOut) {
        ServerStats::inc(&shared.stats.idle_timeouts);
    }
}

struct StreamCtx<S> {
    conn: quinn::Connection,
    peer: PeerInfo,
    config: ServerConfig,
    service: Arc<S>,
    stats: Arc<ServerStats>,
    shared: Arc<Shared>,
    auth: Arc<OnceLock<Authenticated>>,
    subscriptions: Arc<AtomicU64>,
    next_subscription: Arc<AtomicU64>,
}

/// Reads bytes from `recv` until `decoder` yields one frame; `Ok(None)` if the stream ended
/// cleanly before any frame.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
    what: &'static str,
) -> Result<Option<Frame>, Error> {
    loop {
        if let Some(frame) = decoder.next_frame()? {
            return Ok(Some(frame));
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

/// Reads bytes from `recv` until `decoder` yields one `M`; `Ok(None)` if the stream ended
/// cleanly before any frame.
pub(crate) async fn read_message<M: Message>(
    recv: &mut RecvStream,
    decoder: &mut FrameDecoder,
    limits: &Limits,
    what: &'static str,
) -> Result<Option<M>, Error> {
    match read_frame(recv, decoder, what).await? {
        Some(frame) => M::from_frame(&frame, limits).map(Some),
        None => Ok(None),
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

/// Why reading a request stopped.
enum ReadFail {
    /// The bytes were bad (or the stream failed).
    Wire(Error),
    /// The in-memory request budget is spent.
    Memory,
}

impl<S: Service> StreamCtx<S> {
    /// Reads one request frame, holding its bytes against the global budget.
    async fn read_request(
        &self,
        recv: &mut RecvStream,
        decoder: &mut FrameDecoder,
        held: &mut Reservation,
    ) -> Result<Option<Frame>, ReadFail> {
        loop {
            if let Some(frame) = decoder.next_frame().map_err(ReadFail::Wire)? {
                return Ok(Some(frame));
            }
            let want = decoder.wanted().clamp(1, 64 * 1024);
            match recv.read_chunk(want, true).await {
                Ok(Some(chunk)) => {
                    if !self.shared.budget.grow(held, chunk.bytes.len() as u64) {
                        return Err(ReadFail::Memory);
                    }
                    decoder.push(&chunk.bytes);
                }
                Ok(None) => {
                    decoder.finish("request stream").map_err(ReadFail::Wire)?;
                    return Ok(None);
                }
                Err(e) => return Err(ReadFail::Wire(e.into())),
            }
        }
    }

    async fn serve(self, mut send: SendStream, mut recv: RecvStream) {
        let limits = self.config.limits;
        let anonymous = self.config.require_authentication && self.auth.get().is_none();
        let max_frame = if anonymous {
            limits.max_frame_len.min(PRE_AUTH_MAX_FRAME)
        } else {
            limits.max_frame_len
        };
        let mut decoder = FrameDecoder::new(max_frame);
        let mut held = Reservation {
            stats: Arc::clone(&self.stats),
            held: 0,
        };
        let read = tokio::time::timeout(
            self.config.request_timeout,
            self.read_request(&mut recv, &mut decoder, &mut held),
        )
        .await;
        let frame = match read {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                self.reject(
                    &mut send,
                    RejectCode::Malformed,
                    "empty request stream; send one request frame",
                )
                .await;
                return;
            }
            Ok(Err(ReadFail::Wire(Error::FrameTooLarge { len, .. })))
                if anonymous && len <= u64::from(limits.max_frame_len) =>
            {
                // Within the frame limit, but not the size of an `Authenticate`: the body is
                // never read, the request refused as any other before authentication.
                ServerStats::inc(&self.stats.unauthorized);
                let _ = recv.stop(close_code(RejectCode::Unauthorized));
                self.refuse(&mut send, RejectCode::Unauthorized, NOT_AUTHENTICATED)
                    .await;
                return;
            }
            Ok(Err(ReadFail::Wire(e))) => {
                if matches!(e, Error::FrameTooLarge { .. }) {
                    ServerStats::inc(&self.stats.too_large);
                }
                // Reading stops here: a large frame is never buffered past its header.
                let _ = recv.stop(close_code(e.reject_code()));
                self.reject(&mut send, e.reject_code(), &e.to_string())
                    .await;
                return;
            }
            Ok(Err(ReadFail::Memory)) => {
                ServerStats::inc(&self.stats.memory_refused);
                drop(held);
                let _ = recv.stop(close_code(RejectCode::Busy));
                let msg = format!(
                    "the appliance holds its request-memory budget of {} bytes; retry later",
                    self.shared.budget.max
                );
                self.refuse(&mut send, RejectCode::Busy, &msg).await;
                return;
            }
            Err(_) => {
                ServerStats::inc(&self.stats.request_timeouts);
                let _ = recv.stop(close_code(RejectCode::Busy));
                let msg = format!(
                    "no complete request within {} ms; send the whole frame promptly",
                    self.config.request_timeout.as_millis()
                );
                self.refuse(&mut send, RejectCode::Busy, &msg).await;
                return;
            }
        };
        // One request per stream: anything after it is ignored.
        let _ = recv.stop(VarInt::from_u32(0));
        if frame.kind == kinds::AUTHENTICATE {
            match Authenticate::from_frame(&frame, &limits) {
                Ok(auth) => self.authenticate(&mut send, auth).await,
                Err(e) => {
                    self.reject(&mut send, e.reject_code(), &e.to_string())
                        .await
                }
            }
            return;
        }
        if self.config.require_authentication && self.auth.get().is_none() {
            ServerStats::inc(&self.stats.unauthorized);
            self.refuse(&mut send, RejectCode::Unauthorized, NOT_AUTHENTICATED)
                .await;
            return;
        }
        let request = match Request::from_frame(&frame, &limits) {
            Ok(request) => request,
            Err(e) => {
                self.reject(&mut send, e.reject_code(), &e.to_string())
                    .await;
                return;
            }
        };
        drop(frame);
        if matches!(
            request,
            Request::SubmitBatch(_) | Request::SubmitProvingJob(_)
        ) {
            let tenant = match self.auth.get() {
                Some(a) => a.tenant.clone(),
                None => format!("ip:{}", self.peer.addr.ip()),
            };
            let own_rate = self
                .auth
                .get()
                .and_then(|_| self.service.submission_rate(&tenant));
            if !self.shared.buckets.take(&tenant, own_rate, Instant::now()) {
                ServerStats::inc(&self.stats.rate_limited);
                let (rate, burst) = own_rate.map_or(
                    (
                        self.config.submissions_per_second,
                        self.config.submission_burst,
                    ),
                    |r| (r, r),
                );
                let msg = format!(
                    "submission rate of `{tenant}` is over {rate} a second (burst {burst}); slow down and retry"
                );
                self.refuse(&mut send, RejectCode::Busy, &msg).await;
                return;
            }
        }
        ServerStats::inc(&self.stats.requests);
        let mut peer = self.peer;
        peer.key = self.auth.get().map(|a| a.key);
        match request {
            Request::Subscribe(sub) => {
                drop(held);
                self.subscribe(send, sub).await
            }
            request => {
                let response = self.service.handle(peer, request).await;
                drop(held);
                let _ = self.respond(&mut send, &response).await;
            }
        }
    }

    async fn authenticate(&self, send: &mut SendStream, auth: Authenticate) {
        let mut challenge = [0u8; CHALLENGE_LEN];
        if let Err(e) = self
            .conn
            .export_keying_material(&mut challenge, AUTH_EXPORTER_LABEL, b"")
        {
            let msg = format!("the TLS session exports no keying material ({e:?}); reconnect");
            self.refuse(send, RejectCode::Internal, &msg).await;
            return;
        }
        if self.auth.get().is_some() {
            ServerStats::inc(&self.stats.auth_failures);
            self.refuse(
                send,
                RejectCode::Unauthorized,
                "this connection is already authenticated; open a new connection for another key",
            )
            .await;
            return;
        }
        if let Err(e) = auth.verify(&challenge) {
            ServerStats::inc(&self.stats.auth_failures);
            let msg = format!("{e}; sign this connection's exporter challenge with your key");
            self.refuse(send, RejectCode::BadSignature, &msg).await;
            return;
        }
        let tenant = match self.service.authorize(self.peer, &auth.key) {
            Ok(tenant) => tenant,
            Err(rej) => {
                ServerStats::inc(&self.stats.auth_failures);
                let _ = self.respond(send, &Response::Rejected(rej)).await;
                return;
            }
        };
        let done = Authenticated {
            key: KeyId::of(&auth.key),
            tenant: tenant.clone(),
        };
        if self.auth.set(done).is_err() {
            ServerStats::inc(&self.stats.auth_failures);
            self.refuse(
                send,
                RejectCode::Unauthorized,
                "this connection is already authenticated; open a new connection for another key",
            )
            .await;
            return;
        }
        ServerStats::inc(&self.stats.authenticated);
        let _ = self
            .respond(send, &Response::Authenticated { tenant })
            .await;
    }

    /// Sends a rejection without counting it as malformed input.
    async fn refuse(&self, send: &mut SendStream, code: RejectCode, message: &str) {
        let rej = Rejection::new(code, message, self.config.limits.max_message_len);
        let _ = self.respond(send, &Response::Rejected(rej)).await;
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
            ServerStats::inc(&self.stats.subscriptions_refused);
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

#[cfg(test)]
mod rate_tests {
    use super::*;

    /// A tenant's own rate replaces the server's, with a one-second burst; `Some(0)` exempts
    /// the tenant; others keep the server's limit.
    #[test]
    fn a_tenant_rate_replaces_the_server_rate() {
        let own: u32 = rand::random::<u32>() % 20 + 1;
        let limiter = RateLimiter {
            rate: 1000,
            burst: 2000,
            buckets: Mutex::default(),
        };
        let t0 = Instant::now();
        for i in 0..own {
            assert!(
                limiter.take("slow", Some(own), t0),
                "submission {i} within the burst"
            );
        }
        assert!(
            !limiter.take("slow", Some(own), t0),
            "over the tenant's own rate"
        );
        // One token comes back after 1/own seconds.
        let later = t0 + Duration::from_millis(u64::from(1000 / own) + 1);
        assert!(limiter.take("slow", Some(own), later));
        assert!(!limiter.take("slow", Some(own), later));
        // The server's limit for the others: far more than `own` at once.
        for _ in 0..(own + 100) {
            assert!(limiter.take("fast", None, t0));
        }
        for _ in 0..10_000 {
            assert!(limiter.take("exempt", Some(0), t0));
        }
    }
}
