//! The HTTP face: `/metrics` (Prometheus text exposition 0.0.4), `/status` (JSON),
//! `/healthz` (the process answers), `/readyz` (the appliance accepts work) and `/`, the
//! status page (one embedded HTML file that refreshes itself from `/status`; it fetches
//! nothing else). The numbers come from the caller through [`StatusProvider`]; this module
//! only renders them. It binds to [`DEFAULT_HTTP_ADDR`] (loopback) unless told otherwise.
//!
//! Using it:
//!
//! 1. Implement [`StatusProvider`]: counters and gauges as [`Metric`]s, histograms as
//!    [`HistogramFamily`]s (record them with a [`Histogram`]), the `/status` document.
//! 2. [`HttpServer::bind`] (no token) or [`HttpServer::bind_with`] with [`HttpOptions`]: with a
//!    bearer token set, `/metrics` and `/status` answer `401` unless the request carries
//!    `Authorization: Bearer <token>`; `/`, `/healthz` and `/readyz` stay open (the page holds
//!    no data: it asks for the token, or takes it from the URL fragment `#token=...`, which
//!    browsers never send to the server).
//! 3. Scrape `/metrics`; [`render_exposition`] is exactly what it serves.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::Error;

/// Default bind address: loopback only, port 9464.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9464);

/// The Prometheus text content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic counter.
    Counter,
    /// Value that goes up and down.
    Gauge,
}

/// One metric family: name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`), e.g. `epa_batches_total`.
    pub name: String,
    /// One-line help text.
    pub help: String,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Samples: label pairs and a value.
    pub samples: Vec<Sample>,
}

/// One sample of a metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Label names and values.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Metric {
    /// A metric with one unlabelled sample.
    pub fn single(name: &str, help: &str, kind: MetricKind, value: f64) -> Self {
        Self {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: vec![Sample {
                labels: Vec::new(),
                value,
            }],
        }
    }
}

/// One series of a histogram: its labels and cumulative bucket counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSeries {
    /// Label names and values (never `le`: the renderer adds it).
    pub labels: Vec<(String, String)>,
    /// `(upper bound, observations <= bound)` in increasing bound order, cumulative; the
    /// `+Inf` bucket is not listed (it is [`count`](Self::count)).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// One histogram metric family (rendered as `_bucket{le=..}`, `_sum` and `_count`).
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramFamily {
    /// Base name, e.g. `epa_stage_duration_seconds` (units in the name, no suffix).
    pub name: String,
    /// One-line help text.
    pub help: String,
    /// Its series.
    pub series: Vec<HistogramSeries>,
}

#[derive(Debug, Default)]
struct HistogramState {
    /// Observations per bucket (not cumulative); the last entry is the `+Inf` bucket.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// A thread-safe histogram with fixed bucket bounds, for recording observations.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    state: Mutex<HistogramState>,
}

impl Histogram {
    /// A histogram over `bounds` (upper bounds; non-finite ones are dropped, the rest sorted
    /// and deduplicated; `+Inf` is implicit).
    pub fn new(bounds: &[f64]) -> Self {
        let mut bounds: Vec<f64> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        bounds.sort_by(f64::total_cmp);
        bounds.dedup();
        let counts = vec![0; bounds.len() + 1];
        Self {
            bounds,
            state: Mutex::new(HistogramState {
                counts,
                ..HistogramState::default()
            }),
        }
    }

    /// `count` bounds `start, start * factor, start * factor^2, ...`.
    pub fn exponential_bounds(start: f64, factor: f64, count: usize) -> Vec<f64> {
        std::iter::successors(Some(start), |b| Some(b * factor))
            .take(count)
            .collect()
    }

    /// The upper bounds of the buckets (without `+Inf`).
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HistogramState> {
        // Every update below leaves the state consistent before it can panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one observation (NaN is ignored).
    pub fn observe(&self, value: f64) {
        if value.is_nan() {
            return;
        }
        let i = self.bounds.partition_point(|b| *b < value);
        let mut st = self.lock();
        if let Some(c) = st.counts.get_mut(i) {
            *c += 1;
        }
        st.sum += value;
        st.count += 1;
    }

    /// The current figures as a series with `labels`.
    pub fn series(&self, labels: Vec<(String, String)>) -> HistogramSeries {
        let st = self.lock();
        let mut acc = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(&st.counts)
            .map(|(b, c)| {
                acc += c;
                (*b, acc)
            })
            .collect();
        HistogramSeries {
            labels,
            buckets,
            sum: st.sum,
            count: st.count,
        }
    }
}

/// Supplies what the HTTP endpoints show. Implemented by the appliance (it reads the
/// scheduler and the server stats); this crate knows nothing of where the numbers come from.
pub trait StatusProvider: Send + Sync + 'static {
    /// The metrics to expose.
    fn metrics(&self) -> Vec<Metric>;
    /// The histograms to expose (none by default).
    fn histograms(&self) -> Vec<HistogramFamily> {
        Vec::new()
    }
    /// The `/status` document.
    fn status(&self) -> serde_json::Value;
    /// Whether the appliance is ready to accept work (`/readyz`).
    fn ready(&self) -> bool;
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Renders metrics in the Prometheus text exposition format. Metrics or labels with invalid
/// names are skipped (the format has no way to carry them).
pub fn render_metrics(metrics: &[Metric]) -> String {
    let mut out = String::new();
    for m in metrics.iter().filter(|m| valid_name(&m.name)) {
        let kind = match m.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let help = m.help.replace('\\', "\\\\").replace('\n', "\\n");
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {} {}", m.name, help);
        let _ = writeln!(out, "# TYPE {} {}", m.name, kind);
        for s in &m.samples {
            let labels: Vec<String> = s
                .labels
                .iter()
                .filter(|(k, _)| valid_name(k) && !k.contains(':'))
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{} {}", m.name, format_value(s.value));
            } else {
                let _ = writeln!(
                    out,
                    "{}{{{}}} {}",
                    m.name,
                    labels.join(","),
                    format_value(s.value)
                );
            }
        }
    }
    out
}

fn render_labels(labels: &[(String, String)], le: Option<f64>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .filter(|(k, _)| valid_name(k) && !k.contains(':') && k != "le")
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{}\"", format_value(le)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// Renders histograms in the Prometheus text exposition format: per series, one
/// `_bucket{le=..}` line per bound plus `le="+Inf"`, then `_sum` and `_count`. Families with
/// invalid names are skipped.
pub fn render_histograms(families: &[HistogramFamily]) -> String {
    let mut out = String::new();
    for h in families.iter().filter(|h| valid_name(&h.name)) {
        let help = h.help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {} {}", h.name, help);
        let _ = writeln!(out, "# TYPE {} histogram", h.name);
        for s in &h.series {
            for (bound, n) in &s.buckets {
                let labels = render_labels(&s.labels, Some(*bound));
                let _ = writeln!(out, "{}_bucket{labels} {n}", h.name);
            }
            let labels = render_labels(&s.labels, Some(f64::INFINITY));
            let _ = writeln!(out, "{}_bucket{labels} {}", h.name, s.count);
            let labels = render_labels(&s.labels, None);
            let _ = writeln!(out, "{}_sum{labels} {}", h.name, format_value(s.sum));
            let _ = writeln!(out, "{}_count{labels} {}", h.name, s.count);
        }
    }
    out
}

/// The whole `/metrics` body: [`render_metrics`] followed by [`render_histograms`].
pub fn render_exposition(metrics: &[Metric], histograms: &[HistogramFamily]) -> String {
    let mut out = render_metrics(metrics);
    out.push_str(&render_histograms(histograms));
    out
}

/// The status page served at `/`: one HTML file with inline CSS and JavaScript that fetches
/// only `/status` (same origin), every second.
pub const STATUS_PAGE: &str = include_str!("status.html");

/// The HTML content type of the status page.
const HTML_CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// The Content-Security-Policy of the status page served with `nonce`: it may load nothing but
/// itself and `/status` (no network fetches elsewhere), and the only script that runs is the
/// page's own, which carries the per-response nonce (a script injected through data the page
/// renders would not).
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'unsafe-inline'; \
         connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The status page as served with `nonce`: [`STATUS_PAGE`] with the nonce on its script.
pub fn page_with_nonce(nonce: &str) -> String {
    STATUS_PAGE.replacen("<script>", &format!("<script nonce=\"{nonce}\">"), 1)
}

/// Options of the HTTP face.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// A bearer token `/metrics` and `/status` require (`Authorization: Bearer <token>`);
    /// `None` serves them to anyone who can reach the port (loopback by default).
    pub bearer_token: Option<String>,
}

impl std::fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpOptions")
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Clone)]
struct AppState {
    provider: Arc<dyn StatusProvider>,
    token: Option<Arc<str>>,
}

/// Compares in time that depends only on the lengths, not on where the bytes differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `None` when the request may see the data, else the `401` to answer.
fn check_token(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let expected = state.token.as_deref()?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(t) if same_secret(t.as_bytes(), expected.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer realm=\"epa\"")],
                "a bearer token is required: send `Authorization: Bearer <token>` \
                 (the token is `http.bearer_token` in the configuration)\n",
            )
                .into_response(),
        ),
    }
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = check_token(&s, &headers) {
        return denied;
    }
    let body = render_exposition(&s.provider.metrics(), &s.provider.histograms());
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body).into_response()
}

async fn status(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = check_token(&s, &headers) {
        return denied;
    }
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(s.provider.status()),
    )
        .into_response()
}

async fn page() -> Response {
    let mut nonce = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut nonce).is_err() {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the system random generator failed: no nonce for the page's script\n",
        )
            .into_response();
    }
    let nonce = hex::encode(nonce);
    (
        [
            (header::CONTENT_TYPE, HTML_CONTENT_TYPE.to_string()),
            (header::CONTENT_SECURITY_POLICY, page_csp(&nonce)),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        page_with_nonce(&nonce),
    )
        .into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.provider.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The router of the endpoints over `provider`, without a token.
pub fn router(provider: Arc<dyn StatusProvider>) -> Router {
    router_with(provider, &HttpOptions::default())
}

/// The router of the endpoints over `provider` with `options`.
pub fn router_with(provider: Arc<dyn StatusProvider>, options: &HttpOptions) -> Router {
    let state = AppState {
        provider,
        token: options.bearer_token.as_deref().map(Arc::from),
    };
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A running HTTP server. Dropping it stops serving.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (use [`DEFAULT_HTTP_ADDR`] for loopback) and serves the endpoints without
    /// a token. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Io`] if the address cannot be bound.
    pub async fn bind(addr: SocketAddr, provider: Arc<dyn StatusProvider>) -> Result<Self, Error> {
        Self::bind_with(addr, provider, HttpOptions::default()).await
    }

    /// As [`bind`](Self::bind), with `options` (a bearer token).
    ///
    /// # Errors
    /// [`Error::Io`] if the address cannot be bound.
    pub async fn bind_with(
        addr: SocketAddr,
        provider: Arc<dyn StatusProvider>,
        options: HttpOptions,
    ) -> Result<Self, Error> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Io {
                what: "binding the HTTP listener",
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Io {
            what: "reading the HTTP listener address",
            source,
        })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let app = router_with(provider, &options);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            local_addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
