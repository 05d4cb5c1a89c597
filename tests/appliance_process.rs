//! `epa run` as a child process: killed with SIGKILL mid-run and restarted on the same data
//! dir, it publishes every acknowledged batch exactly once, keeps its identity and answers a
//! resubmitted batch with its job id; `epa submit` and `epa subscribe` authenticate with their
//! key files.

mod appliance_support;

use std::process::Command;
use std::time::Duration;

use appliance_support::{DEPTH, SHARD, collect_verified, fresh_seed, start, write_config};
use epa::appliance::keys;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_and_duplicates_nothing() {
    let seed = fresh_seed();
    let s = write_config("", "");
    let mut agg = s.aggregator(seed);

    let first = start(&s.config);
    let conn = first.connect_as(&s.agg_pair).await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let txs = agg.random_txs(3).expect("mirror reads");
        let p = agg.prepare(&txs, Vec::new()).expect("signing");
        let id = agg
            .submit(&conn, &p, Duration::from_secs(30))
            .await
            .expect("accepted");
        sent.push((id, p));
    }
    let hashes: Vec<_> = sent.iter().map(|(_, p)| p.batch_hash).collect();
    let first_fingerprint = first.fingerprint;
    // Acknowledged means durable: kill without any chance to drain.
    first.kill();
    drop(conn);

    let second = start(&s.config);
    assert_eq!(
        second.fingerprint, first_fingerprint,
        "the pinned certificate survives restarts"
    );
    let appliance_key = s.appliance_key();
    let conn = second.connect_as(&s.agg_pair).await;
    // An aggregator that never saw the answers resends: each batch gets its id again.
    for (id, p) in &sent {
        assert_eq!(
            conn.submit_batch(&p.batch)
                .await
                .expect("a resubmission is answered"),
            *id
        );
    }
    let validator = second.connect_as(&s.val_pair).await;
    let got = collect_verified(&validator, &appliance_key, 3).await;
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
    let all = collect_verified(&validator, &appliance_key, 4).await;
    assert_eq!(all[3].new_root, p.new_root);
    second.kill();
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let s = write_config("", "");
    let mut running = start(&s.config);
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
    let s = write_config("", "");
    let running = start(&s.config);
    let identity = s.data_dir.join(keys::IDENTITY_PUBLIC_FILE);
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
            .arg(&s.agg_keys.dsa_secret)
            .arg("--shard-key")
            .arg(&s.shard_keys.kem_public)
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
    let subscribe = |key: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_epa"));
        cmd.arg("subscribe")
            .args(&remote)
            .args(["--shard", &SHARD.to_string(), "--count", "4"])
            .arg("--appliance-key")
            .arg(&identity);
        if let Some(key) = key {
            cmd.arg("--key").arg(key);
        }
        cmd.output().expect("the epa binary runs")
    };
    // Without a key the appliance refuses the subscription with a typed error.
    let anon = subscribe(None);
    assert!(!anon.status.success());
    let err = String::from_utf8_lossy(&anon.stderr).into_owned();
    assert!(err.contains("Unauthorized"), "{err}");
    // A key that is not a tenant cannot authenticate.
    let stranger = keys::generate_keys(&s.dir.path().join("stranger"), "x").expect("keys");
    let refused = subscribe(Some(&stranger.dsa_secret));
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(err.contains("UnknownKey"), "{err}");
    let sub = subscribe(Some(&s.val_keys.dsa_secret));
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
    running.kill();
}
