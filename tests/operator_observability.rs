//! Observability end to end: the Grafana dashboard queries only metrics a running appliance
//! exports, exported names follow the Prometheus conventions (histograms included), the JSON
//! logs of a full run carry the job fields on every job event, and the output of a run holds
//! no secret key bytes (raw, hex or base64).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;

use epa::appliance::{Appliance, Settings, keys};

/// `GET path` over plain HTTP/1.1; returns the body.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("the HTTP port accepts");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request written");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let shard = keys::generate_keys(&dir.join("keys"), "shard").expect("keys");
    let agg = keys::generate_keys(&dir.join("keys"), "agg").expect("keys");
    let config = dir.join("epa.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[appliance]\ndata_dir = \"{}\"\n[quic]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[workers]\nthreads = 1\n[[shards]]\nid = 0\n\
             kem_key = \"{}\"\n[[tenants]]\nid = \"agg\"\npublic_key = \"{}\"\nshards = [0]\n",
            dir.join("data").display(),
            shard.kem_secret.display(),
            agg.dsa_public.display()
        ),
    )
    .expect("config written");
    config
}

/// The metric families a freshly started appliance exports, by `# TYPE` line.
fn exported_metrics() -> Vec<(String, String)> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = firmware_config::Config::load(&write_config(dir.path())).expect("valid config");
    let settings = Settings::from_config(&cfg).expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let appliance = Appliance::start(settings)
            .await
            .expect("the appliance starts");
        let addr = appliance.http_addr().expect("HTTP is served");
        let body = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
            .await
            .expect("scrape");
        appliance.shutdown().await;
        body.lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(n, k)| (n.to_string(), k.to_string()))
            .collect()
    })
}

/// Metric names a PromQL expression mentions (`epa_…`, with histogram suffixes removed).
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(pos) = expr[i..].find("epa_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary {
            let name = &expr[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "expr" || k == "definition" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    dashboard_exprs(x, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| dashboard_exprs(x, out)),
        _ => {}
    }
}

#[test]
fn dashboard_queries_only_exported_metrics_and_names_follow_conventions() {
    let exported = exported_metrics();
    let names: BTreeSet<String> = exported.iter().map(|(n, _)| n.clone()).collect();
    eprintln!("exported: {names:?}");
    assert!(names.len() >= 8, "{names:?}");
    for (name, kind) in [
        ("epa_stage_duration_seconds", "histogram"),
        ("epa_proof_size_bytes", "histogram"),
        ("epa_node_queue_depth", "gauge"),
        ("epa_node_utilisation_ratio", "gauge"),
        ("epa_node_running_stages", "gauge"),
        ("epa_device_healthy", "gauge"),
        ("epa_device_memory_bytes", "gauge"),
        ("epa_backend_info", "gauge"),
        ("epa_backend_cpu_fallbacks_total", "counter"),
    ] {
        assert!(
            exported.contains(&(name.to_string(), kind.to_string())),
            "{name} ({kind}) is not exported: {exported:?}"
        );
    }
    for (name, kind) in &exported {
        assert!(name.starts_with("epa_"), "`{name}` lacks the epa_ prefix");
        if name.contains("seconds") || name.contains("bytes") || name.contains("ratio") {
            let unit = ["_seconds", "_bytes", "_ratio"];
            let base = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                unit.iter().any(|u| base.ends_with(u)),
                "`{name}`: the unit comes last (before _total)"
            );
        }
        match kind.as_str() {
            "counter" => assert!(name.ends_with("_total"), "counter `{name}` lacks _total"),
            _ => assert!(!name.ends_with("_total"), "{kind} `{name}` ends in _total"),
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/epa.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard exists"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dash, &mut exprs);
    assert!(exprs.len() >= 6, "{exprs:?}");
    for expr in &exprs {
        let used = names_in(expr);
        assert!(!used.is_empty(), "query `{expr}` names no epa_ metric");
        for n in used {
            assert!(
                names.contains(&n),
                "query `{expr}` uses `{n}`, which is not exported"
            );
        }
    }
}

#[test]
fn names_in_extracts_metric_names() {
    let got = names_in(
        "sum(rate(epa_stage_seconds_total{stage=\"prove\"}[5m])) / x_epa_no + histogram_quantile(0.9, rate(epa_proof_bytes_bucket[5m]))",
    );
    let want: BTreeSet<String> = ["epa_stage_seconds_total", "epa_proof_bytes"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    assert_eq!(got, want);
}

/// Standard base64 with padding (RFC 4648), for the leak check.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every 16-byte window of `secret` in lower- and upper-case hex, the raw bytes, and any
/// 15-byte run in base64 (standard or URL-safe, at each of the three alignments).
fn leaks(secret: &[u8], output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let lower = text.to_ascii_lowercase();
    for w in secret.windows(16) {
        let h = hex::encode(w);
        if lower.contains(&h) {
            return Some(format!("hex {h}"));
        }
        if output.windows(16).any(|o| o == w) {
            return Some("raw bytes".into());
        }
    }
    let url_safe = text.replace('-', "+").replace('_', "/");
    for start in 0..3.min(secret.len()) {
        let enc = base64(&secret[start..]);
        let enc = enc.trim_end_matches('=');
        for i in (0..enc.len().saturating_sub(20)).step_by(4) {
            let run = &enc[i..i + 20];
            if text.contains(run) || url_safe.contains(run) {
                return Some(format!("base64 {run}"));
            }
        }
    }
    None
}

#[test]
fn base64_matches_rfc_4648_and_the_leak_check_finds_it() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    let secret: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
    for start in 0..5 {
        let mut out = b"log line ".to_vec();
        out.extend(base64(&secret[start..start + 24]).as_bytes());
        assert!(leaks(&secret, &out).is_some(), "offset {start}");
        let url = base64(&secret[start..start + 24])
            .replace('+', "-")
            .replace('/', "_");
        assert!(
            leaks(&secret, url.as_bytes()).is_some(),
            "url-safe offset {start}"
        );
    }
    assert!(leaks(&secret, b"nothing here").is_none());
}

/// Checks that every log line on `stderr` is one JSON object and that every job event carries
/// `job_id`, `tenant`, `shard` and `stage`; returns the stages logged as completed. Lines
/// that native libraries write to standard error themselves (a Vulkan driver's notice, say)
/// are not ours and are only printed.
fn check_json_logs(stderr: &[u8]) -> Vec<(u64, String)> {
    let text = String::from_utf8_lossy(stderr);
    let mut completed = Vec::new();
    let mut accepted = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if !line.starts_with('{') {
            assert!(
                !line.contains("job_id") && !line.contains("epa::") && !line.contains("panicked"),
                "a log line of ours (or a panic) is not JSON: {line}"
            );
            eprintln!("not a log line of ours: {line}");
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for field in ["timestamp", "level", "message", "target"] {
            assert!(v.get(field).is_some(), "no `{field}` in {line}");
        }
        let message = v["message"].as_str().unwrap_or_default();
        let job_event = message.starts_with("stage ") || message.starts_with("job ");
        if job_event {
            assert!(v["job_id"].is_u64(), "job_id in {line}");
            assert!(v["tenant"].is_string(), "tenant in {line}");
            assert!(v["shard"].is_i64(), "shard in {line}");
            assert!(v["stage"].is_string(), "stage in {line}");
        }
        if message == "stage completed" {
            completed.push((
                v["job_id"].as_u64().expect("checked above"),
                v["stage"].as_str().expect("checked above").to_string(),
            ));
            assert_eq!(v["tenant"], "agg", "{line}");
            assert_eq!(v["shard"], 0, "{line}");
        }
        if message.starts_with("job accepted") {
            accepted += 1;
        }
    }
    assert_eq!(accepted, 1, "one batch accepted:\n{text}");
    completed
}

#[test]
fn a_full_run_prints_no_secret_key_bytes() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let kdir = dir.path().join("keys");
    let mut child = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["run", "--config"])
        .arg(&config)
        .env("EPA_PROVER__SMT_DEPTH", "16")
        .env("EPA_PROVER__HASH", "blake3-256")
        .env("EPA_LOGGING__FORMAT", "json")
        .env("EPA_LOGGING__LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("epa run starts");
    let stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let out_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            all.extend_from_slice(line.as_bytes());
            all.push(b'\n');
            let _ = tx.send(line);
        }
        all
    });
    let err_thread = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stderr.read_to_end(&mut all);
        all
    });
    let (mut addr, mut fingerprint) = (String::new(), String::new());
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("`epa run` gets ready within 60 s");
        if let Some(a) = line.strip_prefix("epa: QUIC listening on ") {
            addr = a.to_string();
        }
        if let Some(f) = line.strip_prefix("epa: certificate fingerprint ") {
            fingerprint = f.to_string();
        }
        if line == "epa: ready" {
            break;
        }
    }
    let data = dir.path().join("data");
    let submit = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["submit", "--addr", &addr, "--fingerprint", &fingerprint])
        .args([
            "--shard",
            "0",
            "--depth",
            "16",
            "--batches",
            "1",
            "--txs",
            "2",
        ])
        .arg("--key")
        .arg(kdir.join("agg.mldsa65.sk"))
        .arg("--shard-key")
        .arg(kdir.join("shard.mlkem768.ek"))
        .arg("--appliance-key")
        .arg(data.join(keys::IDENTITY_PUBLIC_FILE))
        .output()
        .expect("epa submit runs");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("epa run exits");
    let mut logs = out_thread.join().expect("stdout reader");
    let stderr = err_thread.join().expect("stderr reader");
    let completed = check_json_logs(&stderr);
    let stages: Vec<&str> = completed.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(
        stages,
        ["decap", "execute", "prove", "publish"],
        "{completed:?}"
    );
    logs.extend(stderr);
    logs.extend(&submit.stdout);
    logs.extend(&submit.stderr);
    let text = String::from_utf8_lossy(&logs).into_owned();
    assert!(submit.status.success(), "{text}");
    assert!(text.contains("VERIFIED"), "the batch was proved: {text}");
    assert!(status.success(), "{text}");
    for secret in [
        kdir.join("agg.mldsa65.sk"),
        kdir.join("shard.mlkem768.dk"),
        kdir.join("agg.mlkem768.dk"),
        data.join(keys::IDENTITY_FILE),
        data.join(keys::TLS_KEY_FILE),
    ] {
        let bytes = std::fs::read(&secret).expect("secret file");
        assert!(bytes.len() >= 32, "{}", secret.display());
        if let Some(how) = leaks(&bytes, &logs) {
            panic!(
                "{} leaked into the output as {how}:\n{text}",
                secret.display()
            );
        }
    }
    // The check itself finds a leak when there is one.
    let identity = std::fs::read(data.join(keys::IDENTITY_FILE)).expect("identity");
    let mut leaky = logs.clone();
    leaky.extend(hex::encode_upper(&identity[8..30]).as_bytes());
    assert!(leaks(&identity, &leaky).is_some());
}
