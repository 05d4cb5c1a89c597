//! `epa run` as a child process: killed with SIGKILL mid-run and restarted on the same data
//! dir, it publishes every acknowledged batch exactly once and keeps its identity.

mod appliance_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use appliance_support::{DEPTH, SHARD, collect_verified, fresh_seed};
use epa::appliance::client::SimAggregator;
use epa::appliance::keys;
use node_lite::client::{Client, ClientConfig};
use node_lite::tls::Fingerprint;
use node_lite::wire::Limits;

struct Running {
    child: Child,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    lines: std::sync::mpsc::Receiver<String>,
}

/// Starts `epa run` and waits for its "ready" line, reading the address and fingerprint.
fn start(config: &Path) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the epa binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut fingerprint) = (None, None);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("`epa run` prints its ready line within 60 s");
        if let Some(a) = line.strip_prefix("epa: QUIC listening on ") {
            addr = Some(a.parse().expect("a socket address"));
        }
        if let Some(f) = line.strip_prefix("epa: certificate fingerprint ") {
            fingerprint = Some(Fingerprint::from_hex(f).expect("hex fingerprint"));
        }
        if line == "epa: ready" {
            break;
        }
    }
    Running {
        child,
        addr: addr.expect("the address was printed"),
        fingerprint: fingerprint.expect("the fingerprint was printed"),
        lines: rx,
    }
}

/// Writes a configuration for one shard and one aggregator with tiny proofs.
fn write_config(
    dir: &Path,
    agg_keys: &keys::GeneratedKeys,
    shard_keys: &keys::GeneratedKeys,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data_dir = dir.join("data");
    let config = dir.join("epa.toml");
    std::fs::write(
        &config,
        format!(
            r#"version = 1
[appliance]
data_dir = "{data}"
[quic]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[workers]
threads = 2
[prover]
preset = "fast-96"
hash = "blake3-256"
smt_depth = {DEPTH}
[[shards]]
id = {SHARD}
kem_key = "{kem}"
[[tenants]]
id = "agg"
public_key = "{pk}"
shards = [{SHARD}]
"#,
            data = data_dir.display(),
            kem = shard_keys.kem_secret.display(),
            pk = agg_keys.dsa_public.display(),
        ),
    )
    .expect("config written");
    (data_dir, config)
}

async fn connect(r: &Running) -> Client {
    Client::connect(r.addr, r.fingerprint, ClientConfig::default())
        .await
        .expect("loopback connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_and_duplicates_nothing() {
    let seed = fresh_seed();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let agg_keys = keys::generate_keys(&dir.path().join("keys"), "agg").expect("keys");
    let shard_keys = keys::generate_keys(&dir.path().join("keys"), "shard").expect("keys");
    let (data_dir, config) = write_config(dir.path(), &agg_keys, &shard_keys);
    let mut agg = SimAggregator::new(
        keys::load_dsa_seed(&agg_keys.dsa_secret).expect("seed"),
        SHARD,
        DEPTH,
        keys::load_kem_public(&shard_keys.kem_public).expect("ek"),
        6,
        seed,
        Limits::default(),
    )
    .expect("depth 8");

    let mut first = start(&config);
    let conn = connect(&first).await;
    let mut hashes = Vec::new();
    for _ in 0..3 {
        let txs = agg.random_txs(3).expect("mirror reads");
        let p = agg.prepare(&txs, Vec::new()).expect("signing");
        agg.submit(&conn, &p, Duration::from_secs(30))
            .await
            .expect("accepted");
        hashes.push(p.batch_hash);
    }
    // Acknowledged means durable: kill without any chance to drain.
    first.child.kill().expect("SIGKILL delivered");
    first.child.wait().expect("the child is reaped");
    drop(conn);

    let mut second = start(&config);
    assert_eq!(
        second.fingerprint, first.fingerprint,
        "the pinned certificate survives restarts"
    );
    let appliance_key =
        keys::load_dsa_public(&data_dir.join(keys::IDENTITY_PUBLIC_FILE)).expect("identity");
    let conn = connect(&second).await;
    let got = collect_verified(&conn, &appliance_key, 3).await;
    assert_eq!(
        got.iter().map(|c| c.height).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(got.iter().map(|c| c.batch_hash).collect::<Vec<_>>(), hashes);
    // The chain continues where it stopped.
    let txs = agg.random_txs(3).expect("mirror reads");
    let p = agg.prepare(&txs, Vec::new()).expect("signing");
    agg.submit(&conn, &p, Duration::from_secs(30))
        .await
        .expect("the next batch is accepted after the restart");
    let all = collect_verified(&conn, &appliance_key, 4).await;
    assert_eq!(all[3].new_root, p.new_root);
    second.child.kill().expect("SIGKILL delivered");
    second.child.wait().expect("the child is reaped");
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let agg_keys = keys::generate_keys(&dir.path().join("keys"), "agg").expect("keys");
    let shard_keys = keys::generate_keys(&dir.path().join("keys"), "shard").expect("keys");
    let (_, config) = write_config(dir.path(), &agg_keys, &shard_keys);
    let mut running = start(&config);
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = running.child.wait().expect("the child exits");
    assert!(exit.success(), "{exit:?}");
    let rest: Vec<String> = running.lines.iter().collect();
    assert!(rest.iter().any(|l| l == "epa: stopped"), "{rest:?}");
}

#[test]
fn keys_generate_writes_private_key_files() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["keys", "generate", "--name", "agg", "--out"])
        .arg(dir.path())
        .output()
        .expect("the epa binary runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sk = dir.path().join("agg.mldsa65.sk");
    let pair = keys::load_dsa_seed(&sk).expect("a seed file");
    let pk = keys::load_dsa_public(&dir.path().join("agg.mldsa65.pk")).expect("a public key");
    assert_eq!(pair.verifying_key, pk);
    let dk = keys::load_kem_secret(&dir.path().join("agg.mlkem768.dk")).expect("a dk");
    let ek = keys::load_kem_public(&dir.path().join("agg.mlkem768.ek")).expect("an ek");
    assert_eq!(dk.encapsulation_key(), ek);
    for secret in ["agg.mldsa65.sk", "agg.mlkem768.dk"] {
        let mode = std::fs::metadata(dir.path().join(secret))
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{secret}");
    }
    // A second run refuses to overwrite.
    let again = Command::new(env!("CARGO_BIN_EXE_epa"))
        .args(["keys", "generate", "--name", "agg", "--out"])
        .arg(dir.path())
        .output()
        .expect("the epa binary runs");
    assert!(!again.status.success());
}

#[test]
fn submit_and_subscribe_talk_to_a_running_appliance() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let agg_keys = keys::generate_keys(&dir.path().join("keys"), "agg").expect("keys");
    let shard_keys = keys::generate_keys(&dir.path().join("keys"), "shard").expect("keys");
    let (data_dir, config) = write_config(dir.path(), &agg_keys, &shard_keys);
    let mut running = start(&config);
    let identity = data_dir.join(keys::IDENTITY_PUBLIC_FILE);
    let remote = [
        "--addr".to_owned(),
        running.addr.to_string(),
        "--fingerprint".to_owned(),
        running.fingerprint.to_hex(),
    ];
    let seed = fresh_seed().to_string();
    let submit = |last_seq: &str| {
        Command::new(env!("CARGO_BIN_EXE_epa"))
            .arg("submit")
            .args(&remote)
            .args(["--shard", &SHARD.to_string(), "--depth", &DEPTH.to_string()])
            .args([
                "--batches",
                "2",
                "--txs",
                "3",
                "--seed",
                &seed,
                "--last-seq",
                last_seq,
            ])
            .arg("--key")
            .arg(&agg_keys.dsa_secret)
            .arg("--shard-key")
            .arg(&shard_keys.kem_public)
            .arg("--appliance-key")
            .arg(&identity)
            .output()
            .expect("the epa binary runs")
    };
    let out = submit("0");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.matches("VERIFIED").count(), 2, "{text}");
    // A second run continues the shard from its latest commitment.
    let out = submit("2");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("at height 2"), "{text}");
    let sub = Command::new(env!("CARGO_BIN_EXE_epa"))
        .arg("subscribe")
        .args(&remote)
        .args(["--shard", &SHARD.to_string(), "--count", "4"])
        .arg("--appliance-key")
        .arg(&identity)
        .output()
        .expect("the epa binary runs");
    let text = String::from_utf8_lossy(&sub.stdout).into_owned();
    assert!(
        sub.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&sub.stderr)
    );
    for h in 1..=4 {
        assert!(text.contains(&format!("height {h}:")), "{text}");
    }
    assert_eq!(text.matches("VERIFIED").count(), 4, "{text}");
    running.child.kill().expect("SIGKILL delivered");
    running.child.wait().expect("the child is reaped");
}
