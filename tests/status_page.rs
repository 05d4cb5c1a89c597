//! The status page end to end in headless Chromium: `epa run` with a bearer token, the page
//! loaded from `/` with the token in the URL fragment, batches submitted with `epa submit`;
//! the page must show each job in flight with its stage, then as completed, with its proof
//! and the shard's height. Chromium is driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`, file descriptors 3 and 4 bound to FIFOs by `sh`), and a
//! screenshot is kept in `target/test-artifacts/status-page.png`.
//!
//! Without a `chromium` binary the test prints `skipped: no chromium` and passes, unless
//! `EPA_REQUIRE_CHROMIUM=1` (the test command sets it; `scripts/install-deps.sh` installs
//! Debian's `chromium`). `EPA_CHROMIUM` names another binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use epa::appliance::keys;

/// The whole test must stay well under 30 s.
const DEADLINE: Duration = Duration::from_secs(25);

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EPA_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A DevTools protocol session over the pipe.
struct Cdp {
    to_browser: std::fs::File,
    from_browser: Receiver<serde_json::Value>,
    next_id: u64,
    session: Option<String>,
    child: Child,
}

impl Cdp {
    fn launch(binary: &Path, dir: &Path) -> Cdp {
        let (fifo_in, fifo_out) = (dir.join("cdp-in"), dir.join("cdp-out"));
        for f in [&fifo_in, &fifo_out] {
            let ok = Command::new("mkfifo").arg(f).status().expect("mkfifo runs");
            assert!(ok.success(), "mkfifo {}", f.display());
        }
        let profile = dir.join("profile");
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" --headless --disable-gpu --no-sandbox --no-first-run --no-default-browser-check --disable-extensions --disable-background-networking --disable-sync --hide-scrollbars --window-size=1400,1000 --remote-debugging-pipe "--user-data-dir=$1" about:blank 3<"$2" 4>"$3""#)
            .arg(binary)
            .arg(&profile)
            .arg(&fifo_in)
            .arg(&fifo_out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sh starts chromium");
        // The shell opens its read end first, then its write end: open ours in that order.
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let w = std::fs::OpenOptions::new().write(true).open(&fifo_in);
            let r = std::fs::File::open(&fifo_out);
            let _ = tx.send((w, r));
        });
        let (w, r) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("chromium opens its DevTools pipe");
        let (to_browser, from) = (w.expect("pipe to chromium"), r.expect("pipe from chromium"));
        let (tx, from_browser) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(from);
            let mut buf = Vec::new();
            while reader
                .read_until(0, &mut buf)
                .map(|n| n > 0)
                .unwrap_or(false)
            {
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        Cdp {
            to_browser,
            from_browser,
            next_id: 0,
            session: None,
            child,
        }
    }

    /// Sends `method` and waits for its result (events in between are skipped).
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = serde_json::Value::String(s.clone());
        }
        let mut bytes = serde_json::to_vec(&msg).expect("JSON");
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .expect("chromium reads its pipe");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from_browser
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within 10 s"));
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; returns its string value.
    fn eval(&mut self, expression: &str) -> String {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expression, "returnByValue": true }),
        );
        r["result"]["value"].as_str().unwrap_or_default().to_owned()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        // Ask the browser to close (it ends its renderers), then make sure it is gone.
        let close = serde_json::json!({ "id": 0, "method": "Browser.close", "params": {} });
        let mut bytes = serde_json::to_vec(&close).expect("JSON");
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (RFC 4648) decoding of the screenshot.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | (u32::from(*d) << (18 - 6 * i)));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// `GET path` with an optional bearer token: (status code, body).
fn http_get(addr: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("the HTTP port accepts");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("request written");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response read");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP response");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_owned())
}

/// The value of the unlabelled or exactly labelled sample `series` in an exposition.
fn sample(exposition: &str, series: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{series}` in:\n{exposition}"))
}

/// Writes the appliance's config; returns its path and the shard's ML-KEM key id.
fn write_config(dir: &Path, token: &str) -> (PathBuf, String) {
    let shard = keys::generate_keys(&dir.join("keys"), "shard").expect("keys");
    let agg = keys::generate_keys(&dir.join("keys"), "agg").expect("keys");
    let config = dir.join("epa.toml");
    std::fs::write(
        &config,
        format!(
            "version = 1\n[appliance]\ndata_dir = \"{}\"\n[quic]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\nbearer_token = \"{token}\"\n[workers]\n\
             threads = 2\n[[shards]]\nid = 0\nkem_key = \"{}\"\n[[tenants]]\nid = \"agg\"\n\
             public_key = \"{}\"\nshards = [0]\n",
            dir.join("data").display(),
            shard.kem_secret.display(),
            agg.dsa_public.display()
        ),
    )
    .expect("config written");
    (config, shard.kem_key_id.to_string())
}

/// What the page shows of job `id`: its in-flight row (stage, state) and whether its row in
/// "Recent jobs" says completed, whether its proof is listed, and the shard's height.
fn observe(cdp: &mut Cdp, id: u64) -> serde_json::Value {
    let js = format!(
        r##"(() => {{
            const row = (t) => document.querySelector(`#${{t}} tr[data-job="{id}"]`);
            const f = row("inflight"), r = row("recent"), p = row("proofs");
            const shard = document.querySelector("#shards tr:nth-child(2)");
            return JSON.stringify({{
                stage: f ? f.dataset.stage : null,
                state: f ? f.dataset.state : null,
                flight_text: f ? f.innerText : null,
                done: !!r && r.dataset.state === "done" && r.innerText.includes("completed"),
                proof: !!p,
                shard: shard ? shard.innerText : null,
                conn: document.getElementById("conn").textContent,
            }});
        }})()"##
    );
    serde_json::from_str(&cdp.eval(&js)).unwrap_or(serde_json::Value::Null)
}

#[test]
fn the_status_page_shows_jobs_in_flight_then_completed() {
    let started = Instant::now();
    let Some(binary) = chromium() else {
        eprintln!("skipped: no chromium");
        assert!(
            std::env::var("EPA_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "EPA_REQUIRE_CHROMIUM=1 but no chromium binary: run scripts/install-deps.sh"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let token = format!("{:032x}", rand::random::<u128>());
    let (config, kem_key_id) = write_config(dir.path(), &token);
    let mut run = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["run", "--config"])
        .arg(&config)
        .env("EPA_PROVER__SMT_DEPTH", "16")
        .env("EPA_PROVER__HASH", "blake3-256")
        .env("EPA_LOGGING__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("epa run starts");
    let stdout = run.stdout.take().expect("piped");
    let (tx, lines) = channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut quic, mut http, mut fingerprint) = (String::new(), String::new(), String::new());
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(20))
            .expect("`epa run` gets ready");
        if let Some(a) = line.strip_prefix("epa: QUIC listening on ") {
            quic = a.to_owned();
        }
        if let Some(a) = line.strip_prefix("epa: HTTP listening on ") {
            http = a.to_owned();
        }
        if let Some(f) = line.strip_prefix("epa: certificate fingerprint ") {
            fingerprint = f.to_owned();
        }
        if line == "epa: ready" {
            break;
        }
    }
    // The appliance process is ended on every path out of the test.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _run = Kill(run);

    let mut cdp = Cdp::launch(&binary, dir.path());
    let target = cdp.call(
        "Target.createTarget",
        serde_json::json!({ "url": format!("http://{http}/#token={token}&refresh=150") }),
    );
    let target_id = target["targetId"].as_str().expect("a target id").to_owned();
    let attached = cdp.call(
        "Target.attachToTarget",
        serde_json::json!({ "targetId": target_id, "flatten": true }),
    );
    cdp.session = Some(
        attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned(),
    );
    // The page authenticates with the token from its fragment and renders /status.
    while !observe(&mut cdp, 0)["conn"]
        .as_str()
        .unwrap_or_default()
        .starts_with("updated")
    {
        assert!(
            started.elapsed() < DEADLINE,
            "the page never rendered /status"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Batches are submitted one after the other by `epa submit` (it waits for each proof).
    let kdir = dir.path().join("keys");
    let batches = 3u64;
    let submit = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["submit", "--addr", &quic, "--fingerprint", &fingerprint])
        .args(["--shard", "0", "--depth", "16", "--txs", "4"])
        .args(["--batches", &batches.to_string()])
        .arg("--key")
        .arg(kdir.join("agg.mldsa65.sk"))
        .arg("--shard-key")
        .arg(kdir.join("shard.mlkem768.ek"))
        .arg("--appliance-key")
        .arg(dir.path().join("data").join(keys::IDENTITY_PUBLIC_FILE))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("epa submit starts");
    let _submit = Kill(submit);

    // Jobs get ids 1, 2, 3 in a fresh data dir; watch each until the page calls it completed.
    let stages = ["decap", "execute", "prove", "publish"];
    let mut seen_in_flight = Vec::new();
    let mut last = serde_json::Value::Null;
    for id in 1..=batches {
        loop {
            let o = observe(&mut cdp, id);
            if let Some(stage) = o["stage"].as_str() {
                assert!(stages.contains(&stage), "job {id} shows stage {stage}: {o}");
                let state = o["state"].as_str().unwrap_or_default();
                assert!(["queued", "running"].contains(&state), "{o}");
                let text = o["flight_text"].as_str().unwrap_or_default();
                assert!(text.contains(stage) && text.contains("agg"), "{o}");
                seen_in_flight.push((id, stage.to_owned(), state.to_owned()));
            }
            if o["done"].as_bool() == Some(true) {
                assert!(o["proof"].as_bool() == Some(true), "job {id}'s proof: {o}");
                last = o;
                break;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "job {id} did not complete on the page in time; in flight seen: \
                 {seen_in_flight:?}; last view {o}"
            );
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    eprintln!("seen in flight: {seen_in_flight:?}");
    assert!(
        !seen_in_flight.is_empty(),
        "no job was ever seen in flight with its stage"
    );
    let shard = last["shard"].as_str().unwrap_or_default();
    assert!(
        shard.split_whitespace().nth(1) == Some(&batches.to_string()),
        "the shard's height is {batches}: {shard:?}"
    );

    let shot = cdp.call(
        "Page.captureScreenshot",
        serde_json::json!({ "format": "png" }),
    );
    let png = base64_decode(shot["data"].as_str().expect("screenshot data"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let path = artifacts.join("status-page.png");
    std::fs::write(&path, &png).expect("screenshot written");
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
    drop(cdp);

    // What the page showed is what /status and /metrics say, and both need the token.
    assert_eq!(http_get(&http, "/status", None).0, 401);
    assert_eq!(http_get(&http, "/metrics", Some("wrong")).0, 401);
    let (code, body) = http_get(&http, "/status", Some(&token));
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!(
        status["in_flight"].as_array().map(Vec::len),
        Some(0),
        "{status}"
    );
    assert_eq!(
        status["shards"][0]["kem_key_ids"],
        serde_json::json!([kem_key_id]),
        "/status lists the shard's active ML-KEM key id: {status}"
    );
    let proofs = status["recent_proofs"].as_array().expect("recent proofs");
    let heights: Vec<u64> = proofs.iter().filter_map(|p| p["height"].as_u64()).collect();
    assert_eq!(heights, (1..=batches).collect::<Vec<_>>());
    let proof_bytes: u64 = proofs
        .iter()
        .filter_map(|p| p["proof_bytes"].as_u64())
        .sum();
    let (code, metrics) = http_get(&http, "/metrics", Some(&token));
    assert_eq!(code, 200);
    assert_eq!(
        sample(&metrics, "epa_proof_size_bytes_count"),
        batches as f64
    );
    assert_eq!(
        sample(&metrics, "epa_proof_size_bytes_sum"),
        proof_bytes as f64
    );
    for stage in stages {
        let count = format!("epa_stage_duration_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(sample(&metrics, &count), batches as f64, "{stage}");
        let inf = format!("epa_stage_duration_seconds_bucket{{stage=\"{stage}\",le=\"+Inf\"}}");
        assert_eq!(sample(&metrics, &inf), batches as f64, "{stage}");
    }
    assert_eq!(
        sample(&metrics, "epa_node_utilisation_ratio{node=\"0\"}"),
        0.0
    );

    let mut submit = _submit;
    let status = submit.0.wait().expect("epa submit exits");
    let mut out = String::new();
    if let Some(mut s) = submit.0.stdout.take() {
        let _ = s.read_to_string(&mut out);
    }
    assert!(status.success(), "epa submit: {out}");
    assert!(out.contains("VERIFIED"), "{out}");
    assert!(started.elapsed() < DEADLINE, "{:?}", started.elapsed());
}
