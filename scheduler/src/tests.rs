//! Unit tests of the journal record, the config and the store's internal journal API.

use std::time::Duration;

use proptest::prelude::*;

use crate::job::{DurableState, JobRecord};
use crate::placement::{Footprint, PlacementRecord};
use crate::{Config, Job, JobId, JobKind, MAX_REASON_LEN, SchedulerError, Stage, Store};

fn kind_strategy() -> impl Strategy<Value = JobKind> {
    prop_oneof![
        Just(JobKind::Batch),
        Just(JobKind::Proving),
        Just(JobKind::ProvingPublished)
    ]
}

fn record_strategy() -> impl Strategy<Value = JobRecord> {
    (
        any::<u64>(),
        "[a-zA-Z0-9_é-]{1,20}",
        kind_strategy(),
        any::<Option<u64>>(),
        0u8..=4,
        any::<u32>(),
        any::<u64>(),
        prop_oneof![
            Just(DurableState::Active),
            Just(DurableState::Done),
            ".{0,300}".prop_map(DurableState::Failed),
            Just(DurableState::Cancelled),
        ],
        any::<u8>(),
        proptest::option::of((any::<u64>(), any::<u32>(), any::<u32>()).prop_map(
            |(trace_len, columns, blowup)| Footprint {
                trace_len,
                columns,
                blowup,
            },
        )),
        proptest::option::of(placement_strategy()),
    )
        .prop_map(
            |(
                id,
                tenant,
                kind,
                ordering_key,
                next,
                attempts,
                payload_len,
                state,
                priority,
                footprint,
                placement,
            )| JobRecord {
                job: Job {
                    id: JobId(id),
                    tenant,
                    kind,
                    ordering_key,
                },
                state,
                next_stage: next.min(u8::try_from(kind.stages().len()).expect("at most 4 stages")),
                attempts,
                payload_len,
                priority,
                footprint,
                placement,
            },
        )
}

fn placement_strategy() -> impl Strategy<Value = PlacementRecord> {
    (
        0usize..64,
        proptest::option::of(0usize..64),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of(".{1,80}"),
    )
        .prop_map(
            |(node, gpu, node_bytes, gpu_bytes, reason)| PlacementRecord {
                node,
                gpu,
                node_bytes,
                gpu_bytes,
                reason,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn job_record_round_trips(record in record_strategy()) {
        let bytes = record.encode();
        prop_assert_eq!(JobRecord::decode(&bytes).expect("a fresh encoding decodes"), record);
    }

    #[test]
    fn job_record_decode_never_panics_and_rejects_truncation(record in record_strategy(), cut in any::<prop::sample::Index>()) {
        let bytes = record.encode();
        let cut = cut.index(bytes.len());
        prop_assert!(JobRecord::decode(&bytes[..cut]).is_err(), "a strict prefix must not decode");
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert!(JobRecord::decode(&longer).is_err(), "trailing bytes must be rejected");
    }

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        if let Err(e) = JobRecord::decode(&bytes) {
            let corrupt = matches!(e, SchedulerError::Corrupt { what: "job", .. });
            prop_assert!(corrupt, "unexpected error kind");
        }
    }
}

#[test]
fn long_failure_reasons_are_truncated_on_a_char_boundary() {
    let reason = "é".repeat(MAX_REASON_LEN); // 2 bytes each
    let record = JobRecord {
        job: Job {
            id: JobId(7),
            tenant: "t".into(),
            kind: JobKind::Batch,
            ordering_key: Some(3),
        },
        state: DurableState::Failed(reason.clone()),
        next_stage: 1,
        attempts: 2,
        payload_len: 10,
        priority: 0,
        footprint: None,
        placement: None,
    };
    let decoded = JobRecord::decode(&record.encode()).expect("decodes");
    let DurableState::Failed(kept) = decoded.state else {
        panic!("state must stay Failed, got {:?}", decoded.state);
    };
    assert_eq!(kept.len(), MAX_REASON_LEN);
    assert!(reason.starts_with(&kept));
}

#[test]
fn next_stage_past_the_end_is_corrupt() {
    let mut record = JobRecord {
        job: Job {
            id: JobId(1),
            tenant: "t".into(),
            kind: JobKind::Proving,
            ordering_key: None,
        },
        state: DurableState::Active,
        next_stage: 1,
        attempts: 0,
        payload_len: 0,
        priority: 0,
        footprint: None,
        placement: None,
    };
    assert!(JobRecord::decode(&record.encode()).is_ok());
    record.next_stage = 2;
    assert!(matches!(
        JobRecord::decode(&record.encode()),
        Err(SchedulerError::Corrupt { .. })
    ));
}

#[test]
fn backoff_doubles_and_is_capped() {
    let config = Config {
        backoff_base: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        ..Config::default()
    };
    let waits: Vec<u128> = (1..=8).map(|a| config.backoff(a).as_millis()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 100, 100, 100, 100]);
    assert_eq!(config.backoff(u32::MAX), Duration::from_millis(100));
}

#[test]
fn config_validation_names_the_field() {
    let cases: [(Config, &str); 5] = [
        (
            Config {
                workers: 0,
                ..Config::default()
            },
            "workers",
        ),
        (
            Config {
                max_attempts: 0,
                ..Config::default()
            },
            "max_attempts",
        ),
        (
            Config {
                max_payload_bytes: 11,
                max_queued_bytes_per_tenant: 10,
                ..Config::default()
            },
            "max_payload_bytes",
        ),
        (
            Config {
                tenant_weights: [("a".to_owned(), 0)].into(),
                ..Config::default()
            },
            "tenant_weights",
        ),
        (
            Config {
                max_queued_jobs_per_tenant: 0,
                ..Config::default()
            },
            "max_queued_jobs_per_tenant",
        ),
    ];
    for (config, expected) in cases {
        match config.validate() {
            Err(SchedulerError::InvalidConfig { field, .. }) => assert_eq!(field, expected),
            other => panic!("expected InvalidConfig for {expected}, got {other:?}"),
        }
    }
    assert!(Config::default().validate().is_ok());
}

#[test]
fn journal_round_trips_through_rocksdb_and_tracks_active_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records: Vec<JobRecord> = (1..=5u64)
        .map(|i| JobRecord {
            job: Job {
                id: JobId(i * 3),
                tenant: format!("tenant-{}", i % 2),
                kind: JobKind::Batch,
                ordering_key: Some(i % 2),
            },
            state: if i % 2 == 0 {
                DurableState::Done
            } else {
                DurableState::Active
            },
            next_stage: u8::try_from(i % 4).expect("small"),
            attempts: u32::try_from(i).expect("small"),
            payload_len: i * 100,
            priority: u8::try_from(i).expect("small"),
            footprint: None,
            placement: None,
        })
        .collect();
    {
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.last_job_id().expect("read"), None);
        let mut batch = rocksdb::WriteBatch::default();
        for r in &records {
            store.put_job(&mut batch, r);
            store.put_payload(
                &mut batch,
                r.job.id,
                &[u8::try_from(r.job.id.0).expect("small"); 4],
            );
        }
        store.put_output(&mut batch, JobId(3), Stage::Decap, b"decapped");
        store.write(batch).expect("write");
    }
    let store = Store::open(dir.path()).expect("reopen");
    for r in &records {
        assert_eq!(store.job_record(r.job.id).expect("read").as_ref(), Some(r));
        assert_eq!(
            store.payload(r.job.id).expect("read"),
            Some(vec![u8::try_from(r.job.id.0).expect("small"); 4])
        );
    }
    let active: Vec<JobRecord> = records
        .iter()
        .filter(|r| r.state == DurableState::Active)
        .cloned()
        .collect();
    assert_eq!(store.active_jobs().expect("read"), active);
    assert_eq!(store.last_job_id().expect("read"), Some(JobId(15)));
    assert_eq!(
        store.stage_output(JobId(3), Stage::Decap).expect("read"),
        Some(b"decapped".to_vec())
    );
    assert_eq!(
        store.stage_output(JobId(3), Stage::Execute).expect("read"),
        None
    );

    // Finishing a job takes it out of the active index in the same write.
    let mut done = active[0].clone();
    done.state = DurableState::Cancelled;
    let mut batch = rocksdb::WriteBatch::default();
    store.put_job(&mut batch, &done);
    store.write(batch).expect("write");
    assert_eq!(store.active_jobs().expect("read"), active[1..].to_vec());
}
