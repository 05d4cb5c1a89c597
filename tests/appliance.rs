//! The appliance in-process on loopback: batches over QUIC, commitments verified by a
//! subscriber, typed rejections before any work, and a restart on the same data dir.

mod appliance_support;

use std::time::Duration;

use appliance_support::{
    DEPTH, Keys, SHARD, client, collect_verified, fresh_seed, http_get, metric, quick, validator,
};
use epa::appliance::Appliance;
use epa::appliance::codec::witnesses_to_bytes;
use epa::appliance::tx::Tx;
use node_lite::wire::{
    Batch, JobState, Limits, ProvingJob, ProvingOptions, RejectCode, Request, Response,
};
use prover::air::smt_update::SmtUpdatePublicInputs;
use prover::envelope::verify_envelope;

fn rejected(r: Result<node_lite::wire::JobId, node_lite::Error>) -> RejectCode {
    match r {
        Err(node_lite::Error::Rejected { code, .. }) => code,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_proved_published_and_verified_over_quic() {
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance starts");
    let aggregator_conn = client(&app, &keys).await;
    let mut agg = keys.aggregator(seed);
    let mut prepared = Vec::new();
    for i in 0..3 {
        let mut txs = agg.random_txs(3).expect("mirror reads");
        let mut raw = Vec::new();
        if i == 1 {
            // A replayed nonce and an undecryptable transaction are skipped, not fatal.
            if let Some(Tx::Transfer {
                from,
                to,
                amount,
                nonce,
            }) = txs
                .iter()
                .find(|t| matches!(t, Tx::Transfer { .. }))
                .copied()
            {
                txs.push(Tx::Transfer {
                    from,
                    to,
                    amount,
                    nonce,
                });
            }
            raw.push(vec![1u8; 40]);
        }
        let p = agg.prepare(&txs, raw).expect("sealing and signing");
        let id = agg
            .submit(&aggregator_conn, &p, Duration::from_secs(30))
            .await
            .expect("a valid batch is accepted");
        prepared.push((id, p));
    }
    let validator = validator(&app, &keys).await;
    let commitments = collect_verified(&validator, app.appliance_key(), 3).await;
    for (i, (c, (_, p))) in commitments.iter().zip(&prepared).enumerate() {
        assert_eq!(c.shard, SHARD);
        assert_eq!(c.height, i as u64 + 1);
        assert_eq!(c.batch_hash, p.batch_hash, "height {}", c.height);
        assert_eq!(c.old_root, p.batch.prev_root);
        assert_eq!(
            c.new_root, p.new_root,
            "the appliance reached the root the aggregator's own ledger predicts"
        );
    }
    // Job status and proof fetch for a batch job.
    let (id, _) = &prepared[2];
    let status = validator
        .job_status(*id)
        .await
        .expect("status answers")
        .expect("the job exists");
    assert_eq!(status.state, JobState::Done);
    let envelope = validator
        .fetch_proof(*id)
        .await
        .expect("fetch answers")
        .expect("a proof is stored");
    assert_eq!(envelope, commitments[2].proof);
    assert!(
        validator
            .job_status(node_lite::wire::JobId(9_999))
            .await
            .expect("answers")
            .is_none()
    );
    let m = app.metrics();
    assert_eq!(m.txs_valid.load(std::sync::atomic::Ordering::Relaxed), 9);
    let skipped: u64 = m
        .txs_invalid
        .iter()
        .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        .sum();
    assert_eq!(skipped, 2);
    // The HTTP face reports the shard height.
    let http = app.http_addr().expect("HTTP is served");
    let body = http_get(http, "/status").await;
    assert!(body.contains("\"height\":3"), "{body}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_get_typed_rejections_before_any_work() {
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance starts");
    let conn = client(&app, &keys).await;
    let limits = Limits::default();
    let mut agg = keys.aggregator(seed);

    // Unknown key: a well-signed batch from an aggregator not in the configuration.
    let stranger = Keys::new(seed ^ 1);
    let mut other = stranger.aggregator(seed);
    let txs = other.random_txs(2).expect("mirror reads");
    let p = other.prepare(&txs, Vec::new()).expect("signing");
    assert_eq!(
        rejected(conn.submit_batch(&p.batch).await),
        RejectCode::UnknownKey
    );

    // Bad signature: a field changed after signing.
    let txs = agg.random_txs(2).expect("mirror reads");
    let good = agg.prepare(&txs, Vec::new()).expect("signing");
    let mut tampered = good.batch.clone();
    tampered.txs.pop();
    assert_eq!(
        rejected(conn.submit_batch(&tampered).await),
        RejectCode::BadSignature
    );

    // A shard the tenant may not submit for.
    let foreign = Batch::sign(
        SHARD + 1,
        1,
        good.batch.prev_root,
        good.batch.txs.clone(),
        &keys.aggregator.signing_key,
        &keys.aggregator.verifying_key,
        &[0; 32],
        &limits,
    )
    .expect("signing");
    assert_eq!(
        rejected(conn.submit_batch(&foreign).await),
        RejectCode::Unauthorized
    );

    // Wrong prev_root: signed correctly, next seq, but not on the shard's root.
    let mut wrong_root = good.batch.prev_root;
    wrong_root[0] ^= 1;
    let wrong = Batch::sign(
        SHARD,
        1,
        wrong_root,
        good.batch.txs.clone(),
        &keys.aggregator.signing_key,
        &keys.aggregator.verifying_key,
        &[0; 32],
        &limits,
    )
    .expect("signing");
    assert_eq!(
        rejected(conn.submit_batch(&wrong).await),
        RejectCode::WrongPrevRoot
    );

    // A skipped sequence number is refused too.
    let skipped = Batch::sign(
        SHARD,
        5,
        good.batch.prev_root,
        good.batch.txs.clone(),
        &keys.aggregator.signing_key,
        &keys.aggregator.verifying_key,
        &[0; 32],
        &limits,
    )
    .expect("signing");
    assert_eq!(
        rejected(conn.submit_batch(&skipped).await),
        RejectCode::Replay
    );

    // Malformed bytes on a stream.
    let r = conn
        .request_raw(
            &[9, 0, 0, 0, 1, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
            "garbage",
        )
        .await;
    assert!(
        matches!(r, Ok(Response::Rejected(ref rej)) if rej.code == RejectCode::Malformed || rej.code == RejectCode::TooLarge),
        "{r:?}"
    );

    // An oversized frame is refused from its header, before the body is read.
    let r = conn
        .request_raw(&[0xf0, 0xff, 0xff, 0xff, 1, 0, 1, 0], "oversized")
        .await;
    assert!(
        matches!(r, Ok(Response::Rejected(ref rej)) if rej.code == RejectCode::TooLarge),
        "{r:?}"
    );

    // Nothing was journaled so far.
    assert_eq!(
        app.snapshot().done + app.snapshot().queued as u64 + app.snapshot().running as u64,
        0
    );

    // The appliance still serves: the good batch is accepted; sent again it gets the same
    // id (no second job), while another batch at its sequence number is refused.
    let id = agg
        .submit(&conn, &good, Duration::from_secs(30))
        .await
        .expect("the valid batch is accepted");
    assert_eq!(
        conn.submit_batch(&good.batch).await.expect("idempotent"),
        id
    );
    let other_txs = Batch::sign(
        SHARD,
        1,
        good.batch.prev_root,
        vec![vec![7u8; 40]],
        &keys.aggregator.signing_key,
        &keys.aggregator.verifying_key,
        &[0; 32],
        &limits,
    )
    .expect("signing");
    assert_eq!(
        rejected(conn.submit_batch(&other_txs).await),
        RejectCode::Replay
    );
    let c = collect_verified(&conn, app.appliance_key(), 1).await;
    assert_eq!(c[0].batch_hash, good.batch_hash);
    assert_eq!(
        app.metrics()
            .batches_accepted
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proving_jobs_are_proved_and_fetched() {
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance starts");
    let conn = client(&app, &keys).await;
    let mut workload = prover::workload::SmtWorkload::new(DEPTH, seed).expect("depth 8");
    let witnesses = workload.next_batch(3).expect("a batch");
    let pi = SmtUpdatePublicInputs::from_witnesses(DEPTH, &witnesses).expect("statement");
    let job = ProvingJob {
        air: "smt-update".into(),
        public_inputs: pi.to_bytes(),
        witness: witnesses_to_bytes(DEPTH, &witnesses),
        options: ProvingOptions { preset: 1, hash: 1 },
    };
    let id = conn.submit_proving_job(&job).await.expect("accepted");
    let envelope = loop {
        if let Some(e) = conn.fetch_proof(id).await.expect("fetch answers") {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let v = verify_envelope(&envelope).expect("the proof verifies with stock winterfell");
    assert!(matches!(v.statement, prover::registry::Statement::SmtUpdate(ref s) if *s == pi));
    // Refused at the door: unknown AIR, bad options, statement not matching the witness.
    let mut bad = job.clone();
    bad.air = "fib".into();
    assert_eq!(
        rejected(conn.submit_proving_job(&bad).await),
        RejectCode::UnknownAir
    );
    let mut bad = job.clone();
    bad.options.preset = 9;
    assert_eq!(
        rejected(conn.submit_proving_job(&bad).await),
        RejectCode::BadOptions
    );
    let mut bad = job.clone();
    bad.public_inputs[10] ^= 1;
    assert!(conn.submit_proving_job(&bad).await.is_err());
    let _ = Request::JobStatus { id };
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_publishes_every_acknowledged_batch_exactly_once() {
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut agg = keys.aggregator(seed);
    let mut hashes = Vec::new();
    {
        let app = Appliance::start(keys.settings(dir.path()))
            .await
            .expect("the appliance starts");
        let conn = client(&app, &keys).await;
        for _ in 0..4 {
            let txs = agg.random_txs(2).expect("mirror reads");
            let p = agg.prepare(&txs, Vec::new()).expect("signing");
            agg.submit(&conn, &p, Duration::from_secs(30))
                .await
                .expect("accepted");
            hashes.push(p.batch_hash);
        }
        // Stop while the last batches are still being proved: whatever is unfinished stays
        // journaled.
        app.shutdown().await;
    }
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance restarts on the same data dir");
    let conn = client(&app, &keys).await;
    let got = collect_verified(&conn, app.appliance_key(), 4).await;
    let heights: Vec<u64> = got.iter().map(|c| c.height).collect();
    assert_eq!(heights, vec![1, 2, 3, 4]);
    let got_hashes: Vec<[u8; 32]> = got.iter().map(|c| c.batch_hash).collect();
    assert_eq!(got_hashes, hashes);
    // The sequence numbers survived: a replay is refused, the next batch continues the chain.
    let txs = agg.random_txs(2).expect("mirror reads");
    let p = agg.prepare(&txs, Vec::new()).expect("signing");
    agg.submit(&conn, &p, Duration::from_secs(30))
        .await
        .expect("the next batch is accepted");
    let all = collect_verified(&conn, app.appliance_key(), 5).await;
    assert_eq!(all[4].old_root, got[3].new_root);
    assert_eq!(all[4].new_root, p.new_root);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acceptance_records_lost_in_a_crash_are_rebuilt_from_the_journal() {
    use epa::appliance::service::{ACCEPTED_THROUGH, LAST_BATCH, RESERVED_SHARD};
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut agg = keys.aggregator(seed);
    let txs = agg.random_txs(2).expect("mirror reads");
    let p = agg.prepare(&txs, Vec::new()).expect("signing");
    {
        let app = Appliance::start(keys.settings(dir.path()))
            .await
            .expect("the appliance starts");
        let conn = client(&app, &keys).await;
        agg.submit(&conn, &p, Duration::from_secs(30))
            .await
            .expect("accepted");
        app.shutdown().await;
    }
    // Roll the acceptance records back to before the submit, as a crash between the journal
    // write and the records' write would leave them.
    {
        let store = scheduler::Store::open(dir.path().join(epa::appliance::STORE_DIR))
            .expect("the store reopens");
        let mut w = scheduler::WriteSet::new();
        w.aggregator_seq(u64::from(SHARD), &p.batch.aggregator.0, 0)
            .aggregator_seq(u64::from(SHARD), LAST_BATCH, 0)
            .aggregator_seq(RESERVED_SHARD, ACCEPTED_THROUGH, 0);
        store.commit(&w).expect("rolled back");
    }
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance restarts");
    assert_eq!(app.recovered(), 1);
    let conn = client(&app, &keys).await;
    // The rebuilt records know the batch: resent, it gets its job id again, no second job.
    let id = node_lite::wire::JobId(1);
    assert_eq!(conn.submit_batch(&p.batch).await.expect("idempotent"), id);
    assert_eq!(
        conn.job_status(node_lite::wire::JobId(2))
            .await
            .expect("answers"),
        None
    );
    let got = collect_verified(&conn, app.appliance_key(), 1).await;
    assert_eq!(got[0].batch_hash, p.batch_hash);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmitted_batch_gets_its_id_again_and_no_second_job() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut agg = keys.aggregator(seed);
    let mut sent = Vec::new();
    {
        let app = Appliance::start(keys.settings(dir.path()))
            .await
            .expect("the appliance starts");
        let conn = client(&app, &keys).await;
        for _ in 0..2 {
            let txs = agg.random_txs(2).expect("mirror reads");
            let p = agg.prepare(&txs, Vec::new()).expect("signing");
            let id = agg
                .submit(&conn, &p, Duration::from_secs(30))
                .await
                .expect("accepted");
            sent.push((id, p));
        }
        // Sent again (an aggregator that lost the answer): the same id each time, even for
        // resubmissions racing each other.
        let conn = Arc::new(conn);
        let mut racing = Vec::new();
        for i in 0..4 {
            let conn = Arc::clone(&conn);
            let batch = sent[i % 2].1.batch.clone();
            racing.push(tokio::spawn(async move { conn.submit_batch(&batch).await }));
        }
        for (i, r) in racing.into_iter().enumerate() {
            let id = r.await.expect("task").expect("idempotent");
            assert_eq!(id, sent[i % 2].0);
        }
        assert_eq!(app.metrics().batches_duplicate.load(Ordering::Relaxed), 4);
        assert_eq!(app.metrics().batches_accepted.load(Ordering::Relaxed), 2);
        let text = http_get(app.http_addr().expect("HTTP is served"), "/metrics").await;
        assert_eq!(metric(&text, "epa_batches_duplicate_total"), 4.0);
        assert_eq!(metric(&text, "epa_batches_accepted_total"), 2.0);
        app.shutdown().await;
    }
    // The records are in the store: after a restart the answer is the same.
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance restarts");
    let conn = client(&app, &keys).await;
    for (id, p) in &sent {
        assert_eq!(conn.submit_batch(&p.batch).await.expect("idempotent"), *id);
    }
    // Another batch at a used sequence number (same prev_root, other transactions) is refused.
    let other = Batch::sign(
        SHARD,
        2,
        sent[1].1.batch.prev_root,
        vec![vec![9u8; 50]],
        &keys.aggregator.signing_key,
        &keys.aggregator.verifying_key,
        &rand::random(),
        &Limits::default(),
    )
    .expect("signing");
    match conn.submit_batch(&other).await {
        Err(node_lite::Error::Rejected { code, message }) => {
            assert_eq!(code, RejectCode::Replay);
            assert!(message.contains("taken by another batch"), "{message}");
        }
        r => panic!("expected Replay, got {r:?}"),
    }
    // Each batch was journaled and published once: the next job is number 3.
    let got = collect_verified(&conn, app.appliance_key(), 2).await;
    let hashes: Vec<_> = sent.iter().map(|(_, p)| p.batch_hash).collect();
    assert_eq!(got.iter().map(|c| c.batch_hash).collect::<Vec<_>>(), hashes);
    let txs = agg.random_txs(2).expect("mirror reads");
    let p = agg.prepare(&txs, Vec::new()).expect("signing");
    let id = agg
        .submit(&conn, &p, Duration::from_secs(30))
        .await
        .expect("the next batch is accepted");
    assert_eq!(id, node_lite::wire::JobId(3));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_connection_can_only_authenticate() {
    use node_lite::client::Client;
    use node_lite::wire::{JobId, SubscribeRequest};
    let seed = fresh_seed();
    let keys = Keys::new(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let app = Appliance::start(keys.settings(dir.path()))
        .await
        .expect("the appliance starts");
    let anon = Client::connect(app.quic_addr(), app.fingerprint(), quick())
        .await
        .expect("the handshake itself needs no key");
    let mut agg = keys.aggregator(seed);
    let txs = agg.random_txs(2).expect("mirror reads");
    let p = agg.prepare(&txs, Vec::new()).expect("signing");
    // Every request is refused with a typed error, even a validly signed batch.
    let unauthorized = |r: Result<_, node_lite::Error>| match r {
        Err(node_lite::Error::Rejected { code, message }) => {
            assert_eq!(code, RejectCode::Unauthorized, "{message}");
            assert!(message.contains("Authenticate"), "{message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    };
    unauthorized(anon.submit_batch(&p.batch).await.map(|_| ()));
    unauthorized(anon.job_status(JobId(1)).await.map(|_| ()));
    unauthorized(anon.fetch_proof(JobId(1)).await.map(|_| ()));
    unauthorized(
        anon.subscribe(SubscribeRequest {
            shards: vec![SHARD],
            from_height: 1,
        })
        .await
        .map(|_| ()),
    );
    // A large frame is refused from its header: an anonymous peer cannot make the appliance
    // buffer it.
    let mut big = (64u32 * 1024).to_le_bytes().to_vec();
    big.extend_from_slice(&[1, 0, 1, 0]);
    big.extend(std::iter::repeat_n(0u8, 64 * 1024 - 4));
    match anon.request_raw(&big, "big").await {
        Ok(Response::Rejected(r)) => assert_eq!(r.code, RejectCode::Unauthorized),
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // A key that is not a tenant cannot authenticate.
    let stranger = Keys::new(seed ^ 7);
    match anon.authenticate(&stranger.aggregator).await {
        Err(node_lite::Error::Rejected { code, .. }) => assert_eq!(code, RejectCode::UnknownKey),
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    // Nothing was journaled; each refusal is counted in /metrics.
    let snap = app.snapshot();
    assert_eq!(snap.done + snap.queued as u64 + snap.running as u64, 0);
    let http = app.http_addr().expect("HTTP is served");
    let text = http_get(http, "/metrics").await;
    assert_eq!(metric(&text, "epa_quic_unauthorized_total"), 5.0);
    assert_eq!(metric(&text, "epa_quic_auth_failures_total"), 1.0);
    assert_eq!(metric(&text, "epa_quic_authenticated_total"), 0.0);
    assert_eq!(metric(&text, "epa_quic_requests_total"), 0.0);
    // With a tenant key the same connection is served.
    assert_eq!(
        anon.authenticate(&keys.aggregator)
            .await
            .expect("a tenant key"),
        "aggregator-a"
    );
    let id = agg
        .submit(&anon, &p, Duration::from_secs(30))
        .await
        .expect("accepted once authenticated");
    assert!(anon.job_status(id).await.expect("answers").is_some());
    let text = http_get(http, "/metrics").await;
    assert_eq!(metric(&text, "epa_quic_authenticated_total"), 1.0);
    app.shutdown().await;
}
