//! The HTTP face on loopback, queried with a hand-written HTTP/1.1 GET.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use epa_node_lite::http::{
    DEFAULT_HTTP_ADDR, HttpServer, METRICS_CONTENT_TYPE, Metric, MetricKind, Sample,
    StatusProvider, render_metrics,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

struct Provider {
    ready: AtomicBool,
    batches: AtomicU64,
}

impl StatusProvider for Provider {
    fn metrics(&self) -> Vec<Metric> {
        vec![
            Metric::single(
                "epa_batches_total",
                "Batches accepted.",
                MetricKind::Counter,
                self.batches.load(Ordering::Relaxed) as f64,
            ),
            Metric {
                name: "epa_queue_depth".into(),
                help: "Jobs queued per tenant.".into(),
                kind: MetricKind::Gauge,
                samples: vec![
                    Sample {
                        labels: vec![("tenant".into(), "a\"b".into())],
                        value: 3.0,
                    },
                    Sample {
                        labels: vec![("tenant".into(), "c".into())],
                        value: 0.5,
                    },
                ],
            },
        ]
    }

    fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "batches": self.batches.load(Ordering::Relaxed),
            "shards": { "0": { "height": 7 } },
        })
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
}

/// A minimal HTTP/1.1 GET: returns (status code, headers lower-cased, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_answer_from_the_provider() {
    timeout(T, async {
        let provider = Arc::new(Provider {
            ready: AtomicBool::new(false),
            batches: AtomicU64::new(41),
        });
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap(), provider.clone())
            .await
            .unwrap();
        let addr = server.local_addr();
        assert!(addr.ip().is_loopback());

        let (code, _, body) = get(addr, "/healthz").await;
        assert_eq!((code, body.as_str()), (200, "ok\n"));

        let (code, _, _) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        provider.ready.store(true, Ordering::Relaxed);
        let (code, _, _) = get(addr, "/readyz").await;
        assert_eq!(code, 200);

        provider.batches.store(42, Ordering::Relaxed);
        let (code, head, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(head.contains(&format!("content-type: {METRICS_CONTENT_TYPE}")));
        assert_eq!(body, render_metrics(&provider.metrics()));
        assert!(body.contains("\nepa_batches_total 42\n"));

        let (code, head, body) = get(addr, "/status").await;
        assert_eq!(code, 200);
        assert!(head.contains("content-type: application/json"));
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json, provider.status());

        let (code, _, _) = get(addr, "/nope").await;
        assert_eq!(code, 404);
        server.shutdown().await;
        // After shutdown nothing listens on the port any more.
        assert!(
            timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await
                .map(|r| r.is_err())
                .unwrap_or(true)
        );
    })
    .await
    .expect("test timed out");
}

#[test]
fn prometheus_text_matches_the_exposition_format() {
    let metrics = vec![
        Metric::single("up", "Whether the\nappliance runs.", MetricKind::Gauge, 1.0),
        Metric {
            name: "epa_latency_seconds".into(),
            help: "p50 latency.".into(),
            kind: MetricKind::Gauge,
            samples: vec![Sample {
                labels: vec![
                    ("stage".into(), "prove".into()),
                    ("bad-label".into(), "dropped".into()),
                    ("path".into(), "a\\b\n".into()),
                ],
                value: 0.25,
            }],
        },
        Metric::single("9invalid", "skipped", MetricKind::Counter, 1.0),
        Metric::single("epa_nan", "not a number", MetricKind::Gauge, f64::NAN),
    ];
    let expected = "# HELP up Whether the\\nappliance runs.\n\
                    # TYPE up gauge\n\
                    up 1\n\
                    # HELP epa_latency_seconds p50 latency.\n\
                    # TYPE epa_latency_seconds gauge\n\
                    epa_latency_seconds{stage=\"prove\",path=\"a\\\\b\\n\"} 0.25\n\
                    # HELP epa_nan not a number\n\
                    # TYPE epa_nan gauge\n\
                    epa_nan NaN\n";
    assert_eq!(render_metrics(&metrics), expected);
}

#[test]
fn default_bind_address_is_loopback() {
    assert!(DEFAULT_HTTP_ADDR.ip().is_loopback());
}
