//! The HTTP face: `/metrics` (Prometheus text exposition 0.0.4), `/status` (JSON),
//! `/healthz` (the process answers) and `/readyz` (the appliance accepts work). The numbers
//! come from the caller through [`StatusProvider`]; this module only renders them. It binds
//! to [`DEFAULT_HTTP_ADDR`] (loopback) unless told otherwise.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
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

/// Supplies what the HTTP endpoints show. Implemented by the appliance (it reads the
/// scheduler and the server stats); this crate knows nothing of where the numbers come from.
pub trait StatusProvider: Send + Sync + 'static {
    /// The metrics to expose.
    fn metrics(&self) -> Vec<Metric>;
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

type Shared = Arc<dyn StatusProvider>;

async fn metrics(State(p): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        render_metrics(&p.metrics()),
    )
        .into_response()
}

async fn status(State(p): State<Shared>) -> Response {
    axum::Json(p.status()).into_response()
}

async fn healthz() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

async fn readyz(State(p): State<Shared>) -> Response {
    if p.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// The router of the four endpoints over `provider`.
pub fn router(provider: Arc<dyn StatusProvider>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(provider)
}

/// A running HTTP server. Dropping it stops serving.
#[derive(Debug)]
pub struct HttpServer {
    local_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `addr` (use [`DEFAULT_HTTP_ADDR`] for loopback) and serves the endpoints. Must be
    /// called inside a Tokio runtime.
    pub async fn bind(addr: SocketAddr, provider: Arc<dyn StatusProvider>) -> Result<Self, Error> {
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
        let app = router(provider);
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
