//! The HTTP face on loopback, queried with a hand-written HTTP/1.1 GET; the exposition is
//! checked with a strict parser of the Prometheus text format written here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use epa_node_lite::http::{
    DEFAULT_HTTP_ADDR, Histogram, HistogramFamily, HttpOptions, HttpServer, METRICS_CONTENT_TYPE,
    Metric, MetricKind, STATUS_PAGE, Sample, StatusProvider, page_csp, page_with_nonce,
    render_exposition, render_histograms, render_metrics,
};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

struct Provider {
    ready: AtomicBool,
    batches: AtomicU64,
    latency: Histogram,
}

impl Provider {
    fn new(batches: u64) -> Self {
        Self {
            ready: AtomicBool::new(false),
            batches: AtomicU64::new(batches),
            latency: Histogram::new(&[0.01, 0.1, 1.0]),
        }
    }
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

    fn histograms(&self) -> Vec<HistogramFamily> {
        vec![HistogramFamily {
            name: "epa_stage_duration_seconds".into(),
            help: "Stage run time.".into(),
            series: vec![self.latency.series(vec![("stage".into(), "prove".into())])],
        }]
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
    get_with(addr, path, "").await
}

/// A GET with extra header lines (each ending in CRLF).
async fn get_with(addr: SocketAddr, path: &str, extra: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n");
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
        let provider = Arc::new(Provider::new(41));
        provider.latency.observe(0.05);
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
        assert_eq!(
            body,
            render_exposition(&provider.metrics(), &provider.histograms())
        );
        assert!(body.contains("\nepa_batches_total 42\n"));
        assert!(body.contains("epa_stage_duration_seconds_bucket{stage=\"prove\",le=\"0.1\"} 1\n"));
        check_exposition(&body).expect("the served exposition parses");

        // The page's one script carries a fresh nonce, the only script the policy allows.
        let mut nonces = Vec::new();
        for _ in 0..2 {
            let (code, head, page) = get(addr, "/").await;
            assert_eq!(code, 200);
            assert!(head.contains("content-type: text/html"));
            let csp = head
                .lines()
                .find_map(|l| l.strip_prefix("content-security-policy: "))
                .expect("the page has a content security policy");
            let nonce = csp
                .split("'nonce-")
                .nth(1)
                .and_then(|r| r.split('\'').next())
                .expect("script-src names a nonce")
                .to_string();
            assert_eq!(nonce.len(), 32, "{csp}");
            assert_eq!(csp.trim(), page_csp(&nonce));
            assert!(!csp.contains("script-src 'unsafe-inline'"), "{csp}");
            assert_eq!(page, page_with_nonce(&nonce));
            assert_eq!(
                page.matches(&format!("<script nonce=\"{nonce}\">")).count(),
                1
            );
            assert_eq!(page.matches("<script").count(), 1);
            nonces.push(nonce);
        }
        assert_ne!(nonces[0], nonces[1], "every response gets its own nonce");

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

/// One parsed sample line: name, labels, value.
type Parsed = (String, Vec<(String, String)>, f64);

fn is_name(s: &str, colon: bool) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_' || (colon && x == ':'))
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || (colon && x == ':'))
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) {
                return Err(format!("`{v}` is not a sample value"));
            }
            v.parse().map_err(|e| format!("`{v}`: {e}"))
        }
    }
}

/// `name{a="x",b="y"} value` with the exposition format's escapes (`\\`, `\"`, `\n`).
fn parse_sample(line: &str) -> Result<Parsed, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| format!("`{line}` has no value"))?;
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unterminated labels")?;
            if r[start..].starts_with('}') {
                rest = &r[start + 1..];
                break;
            }
            let eq = r[start..].find('=').ok_or("label without `=`")? + start;
            let key = &r[start..eq];
            if !is_name(key, false) || key.starts_with("__") {
                return Err(format!("bad label name `{key}`"));
            }
            if !r[eq + 1..].starts_with('"') {
                return Err(format!("label `{key}` value is not quoted"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq + 1) {
                chars.next();
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        'n' => value.push('\n'),
                        c => return Err(format!("bad escape `\\{c}`")),
                    },
                    '\n' => return Err("raw newline in a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.iter().any(|(k, _): &(String, String)| k == key) {
                return Err(format!("label `{key}` repeated"));
            }
            labels.push((key.to_owned(), value));
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                other => return Err(format!("expected `,` or `}}`, found {other:?}")),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or_else(|| format!("`{line}`: no space before the value"))?;
    if value.contains(' ') {
        return Err(format!("`{line}`: timestamps are not emitted"));
    }
    Ok((name.to_owned(), labels, parse_value(value)?))
}

/// A strict check of the text exposition format 0.0.4 as we emit it: every family has one
/// `# HELP` then one `# TYPE` line before its samples, families are not interleaved or
/// repeated, sample names belong to their family (`_bucket`/`_sum`/`_count` for histograms),
/// counters end in `_total` and are non-negative, histogram buckets carry `le`, are cumulative
/// and end with `le="+Inf"` equal to `_count`. Returns the samples.
fn check_exposition(text: &str) -> Result<Vec<Parsed>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition does not end with a newline".into());
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut family: Option<(String, String)> = None;
    let mut help_for: Option<String> = None;
    let mut out = Vec::new();
    // Per histogram series (labels without le): last bucket count, +Inf count, count.
    let mut hist: std::collections::BTreeMap<String, (f64, Option<f64>, Option<f64>)> =
        Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').ok_or("HELP without text")?;
            if !seen.insert(name.to_owned()) {
                return Err(format!("family `{name}` appears twice"));
            }
            help_for = Some(name.to_owned());
            family = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or("TYPE without a type")?;
            if help_for.as_deref() != Some(name) {
                return Err(format!("TYPE of `{name}` without its HELP just before"));
            }
            if !["counter", "gauge", "histogram"].contains(&kind) {
                return Err(format!("unexpected type `{kind}`"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(format!("counter `{name}` does not end in _total"));
            }
            family = Some((name.to_owned(), kind.to_owned()));
            help_for = None;
        } else if line.starts_with('#') || line.is_empty() {
            return Err(format!("unexpected line `{line}`"));
        } else {
            let (fam, kind) = family.as_ref().ok_or("a sample before any TYPE")?;
            let (name, labels, value) = parse_sample(line)?;
            if kind == "histogram" {
                let suffix = name
                    .strip_prefix(fam.as_str())
                    .ok_or_else(|| format!("`{name}` outside family `{fam}`"))?;
                let series: Vec<_> = labels.iter().filter(|(k, _)| k != "le").collect();
                let key = format!("{fam}{series:?}");
                let entry = hist.entry(key).or_insert((0.0, None, None));
                match suffix {
                    "_bucket" => {
                        let le = labels
                            .iter()
                            .find(|(k, _)| k == "le")
                            .ok_or("a bucket without le")?;
                        if value < entry.0 {
                            return Err(format!("bucket counts decrease at `{line}`"));
                        }
                        entry.0 = value;
                        if parse_value(&le.1)? == f64::INFINITY {
                            entry.1 = Some(value);
                        }
                    }
                    "_sum" => {}
                    "_count" => entry.2 = Some(value),
                    _ => return Err(format!("`{name}` is not a histogram sample name")),
                }
            } else {
                if &name != fam {
                    return Err(format!("`{name}` outside family `{fam}`"));
                }
                if kind == "counter" && (value.is_nan() || value < 0.0) {
                    return Err(format!("counter `{name}` is {value}"));
                }
            }
            out.push((name, labels, value));
        }
    }
    for (series, (_, inf, count)) in hist {
        if inf.is_none() || inf != count {
            return Err(format!(
                "{series}: +Inf bucket {inf:?} differs from count {count:?}"
            ));
        }
    }
    Ok(out)
}

#[test]
fn the_checker_rejects_malformed_expositions() {
    let good = "# HELP epa_x_total x.\n# TYPE epa_x_total counter\nepa_x_total{a=\"1\"} 2\n";
    assert!(check_exposition(good).is_ok());
    for bad in [
        "epa_x_total 1\n",
        "# HELP epa_x_total x.\n# TYPE epa_x_total counter\nepa_y_total 1\n",
        "# HELP epa_x x.\n# TYPE epa_x counter\nepa_x 1\n",
        "# HELP epa_x x.\n# TYPE epa_x gauge\nepa_x{a=1} 1\n",
        "# HELP epa_x x.\n# TYPE epa_x gauge\nepa_x{a=\"1\"\"} 1\n",
        "# HELP epa_x x.\n# TYPE epa_x gauge\nepa_x one\n",
        "# HELP epa_x x.\n# TYPE epa_x gauge\nepa_x 1",
        "# HELP epa_h h.\n# TYPE epa_h histogram\nepa_h_bucket{le=\"1\"} 2\n\
         epa_h_bucket{le=\"+Inf\"} 1\nepa_h_sum 1\nepa_h_count 1\n",
        "# HELP epa_h h.\n# TYPE epa_h histogram\nepa_h_bucket{le=\"+Inf\"} 2\nepa_h_count 1\n",
        "# HELP epa_x x.\n# TYPE epa_x gauge\nepa_x 1\n# HELP epa_x x.\n# TYPE epa_x gauge\n",
    ] {
        assert!(check_exposition(bad).is_err(), "accepted:\n{bad}");
    }
}

#[test]
fn histograms_count_like_a_naive_reference_on_random_observations() {
    let seed = rand::random::<u64>();
    eprintln!("seed {seed}");
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let bounds = Histogram::exponential_bounds(0.001, 4.0, 8);
    assert_eq!(bounds.len(), 8);
    assert!((bounds[7] - 0.001 * 4f64.powi(7)).abs() < 1e-9);
    let h = Histogram::new(&bounds);
    let values: Vec<f64> = (0..rng.gen_range(1..500))
        .map(|_| rng.gen_range(0.0..30.0_f64).powi(2) / 30.0)
        .collect();
    // Observed from several threads at once.
    std::thread::scope(|s| {
        for chunk in values.chunks(50) {
            let h = &h;
            s.spawn(move || chunk.iter().for_each(|v| h.observe(*v)));
        }
    });
    h.observe(f64::NAN);
    let series = h.series(vec![("stage".into(), "prove".into())]);
    assert_eq!(series.count, values.len() as u64);
    let sum: f64 = values.iter().sum();
    assert!((series.sum - sum).abs() <= 1e-9 * sum.max(1.0));
    for (bound, n) in &series.buckets {
        let want = values.iter().filter(|v| **v <= *bound).count() as u64;
        assert_eq!(*n, want, "bucket le={bound}");
    }
    let fam = HistogramFamily {
        name: "epa_test_seconds".into(),
        help: "test".into(),
        series: vec![series.clone()],
    };
    let text = render_histograms(std::slice::from_ref(&fam));
    let parsed = check_exposition(&text).expect("valid histogram exposition");
    assert_eq!(parsed.len(), bounds.len() + 3);
    let inf = parsed
        .iter()
        .find(|(n, l, _)| {
            n == "epa_test_seconds_bucket" && l.contains(&("le".into(), "+Inf".into()))
        })
        .expect("+Inf bucket");
    assert_eq!(inf.2, values.len() as f64);
    assert!(inf.1.contains(&("stage".into(), "prove".into())));
}

#[test]
fn histogram_bounds_are_sorted_finite_and_unique() {
    let h = Histogram::new(&[1.0, f64::INFINITY, 0.5, 1.0, f64::NAN, 2.0]);
    assert_eq!(h.bounds(), &[0.5, 1.0, 2.0]);
    h.observe(1.0);
    h.observe(5.0);
    let s = h.series(Vec::new());
    assert_eq!(s.buckets, vec![(0.5, 0), (1.0, 1), (2.0, 1)]);
    assert_eq!((s.count, s.sum), (2, 6.0));
}

fn label_value() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\\'),
            Just('\n'),
            Just('}'),
            Just(','),
            Just('='),
            proptest::char::range(' ', '~'),
            proptest::char::any(),
        ],
        0..12,
    )
    .prop_map(|v| v.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any label values and values round-trip through the renderer and the strict parser.
    #[test]
    fn rendered_metrics_parse_back(
        values in proptest::collection::vec((label_value(), 0.0..1e12f64, any::<bool>()), 1..8),
        observations in proptest::collection::vec(0.0..100.0f64, 0..40),
    ) {
        let metrics = vec![
            Metric {
                name: "epa_things_total".into(),
                help: "Things, with a \\ and a\nnewline.".into(),
                kind: MetricKind::Counter,
                samples: values.iter().enumerate().map(|(i, (v, x, _))| Sample {
                    labels: vec![("tenant".into(), v.clone()), ("i".into(), i.to_string())],
                    value: x.floor(),
                }).collect(),
            },
            Metric {
                name: "epa_level_ratio".into(),
                help: "Level.".into(),
                kind: MetricKind::Gauge,
                samples: values.iter().map(|(_, x, neg)| Sample {
                    labels: Vec::new(),
                    value: if *neg { -x } else { *x },
                }).take(1).collect(),
            },
        ];
        let h = Histogram::new(&[1.0, 10.0, 50.0]);
        observations.iter().for_each(|o| h.observe(*o));
        let hist = vec![HistogramFamily {
            name: "epa_size_bytes".into(),
            help: "Sizes.".into(),
            series: vec![h.series(vec![("node".into(), values[0].0.clone())])],
        }];
        let text = render_exposition(&metrics, &hist);
        let parsed = check_exposition(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let counters: Vec<&Parsed> = parsed.iter().filter(|p| p.0 == "epa_things_total").collect();
        prop_assert_eq!(counters.len(), values.len());
        for (p, (v, x, _)) in counters.iter().zip(&values) {
            prop_assert_eq!(&p.1[0], &("tenant".to_string(), v.clone()));
            prop_assert_eq!(p.2, x.floor());
        }
        let count = parsed.iter().find(|p| p.0 == "epa_size_bytes_count").expect("count");
        prop_assert_eq!(count.2, observations.len() as f64);
        prop_assert_eq!(&count.1[0], &("node".to_string(), values[0].0.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_guards_status_and_metrics() {
    timeout(T, async {
        let token = format!("{:032x}", rand::random::<u128>());
        let provider = Arc::new(Provider::new(7));
        let options = HttpOptions {
            bearer_token: Some(token.clone()),
        };
        assert!(
            !format!("{options:?}").contains(&token),
            "Debug hides the token"
        );
        let server = HttpServer::bind_with("127.0.0.1:0".parse().unwrap(), provider, options)
            .await
            .unwrap();
        let addr = server.local_addr();
        for path in ["/status", "/metrics"] {
            let (code, head, body) = get(addr, path).await;
            assert_eq!(code, 401, "{path} without a token");
            assert!(head.contains("www-authenticate: bearer"));
            assert!(body.contains("Authorization: Bearer"), "{body}");
            let wrong = format!("Authorization: Bearer {}x\r\n", &token[1..]);
            let (code, _, _) = get_with(addr, path, &wrong).await;
            assert_eq!(code, 401, "{path} with a wrong token");
            let (code, _, _) = get_with(addr, path, "Authorization: Basic Zm9vOmJhcg==\r\n").await;
            assert_eq!(code, 401, "{path} with another scheme");
            let right = format!("Authorization: Bearer {token}\r\n");
            let (code, _, body) = get_with(addr, path, &right).await;
            assert_eq!(code, 200, "{path} with the token");
            assert!(body.contains('7'), "{body}");
        }
        // The page, liveness and readiness hold no data and stay open.
        assert_eq!(get(addr, "/").await.0, 200);
        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(get(addr, "/readyz").await.0, 503);
        server.shutdown().await;
    })
    .await
    .expect("test timed out");
}

#[test]
fn the_status_page_fetches_nothing_but_status() {
    let page = STATUS_PAGE;
    for forbidden in [
        "http://", "https://", "<link", "src=", "@import", "url(", "//cdn",
    ] {
        assert!(!page.contains(forbidden), "the page contains `{forbidden}`");
    }
    let fetches: Vec<&str> = page
        .match_indices("fetch(")
        .map(|(i, _)| &page[i..i + 16])
        .collect();
    assert_eq!(fetches, vec!["fetch(\"/status\","], "{fetches:?}");
    // It refreshes every second by default, takes the token from the fragment or a prompt.
    assert!(page.contains("|| 1000)"));
    assert!(page.contains("location.hash"));
    assert!(page.contains("window.prompt("));
    for table in [
        "backends", "devices", "nodes", "queues", "inflight", "recent", "proofs", "shards",
    ] {
        assert!(page.contains(&format!("<table id=\"{table}\">")), "{table}");
    }
}
