use super::*;

fn check_err(text: &str, expect: &str) {
    let err = Config::parse(text, "epa.toml").expect_err("configuration must be refused");
    let msg = err.to_string();
    assert!(
        msg.contains(expect),
        "error `{msg}` does not contain `{expect}`"
    );
}

#[test]
fn example_file_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/epa.example.toml");
    let c = Config::load(&path).expect("the shipped example is valid");
    assert_eq!(c.version, SCHEMA_VERSION);
    assert_eq!(c.shards.len(), 1);
    assert_eq!(c.tenants[0].shards, vec![0]);
    // The example states the defaults: apart from the example shard and tenant, it equals them.
    let d = Config {
        shards: c.shards.clone(),
        tenants: c.tenants.clone(),
        ..Config::default()
    };
    assert_eq!(c, d);
}

#[test]
fn minimal_file_gets_defaults() {
    let c = Config::parse("version = 1\n", "epa.toml").expect("valid");
    assert_eq!(c, Config::default());
    assert_eq!(c.http.listen, "127.0.0.1:9100");
}

#[test]
fn unknown_key_names_line_and_suggests() {
    let text = "version = 1\n[limits]\nmax_frame_bytes = 10\nmax_queued_job_per_tenant = 3\n";
    let err = Config::parse(text, "epa.toml").expect_err("unknown key");
    match err {
        Error::UnknownKey {
            line,
            key,
            suggestion,
            ..
        } => {
            assert_eq!(line, 4);
            assert_eq!(key, "max_queued_job_per_tenant");
            assert_eq!(suggestion.as_deref(), Some("max_queued_jobs_per_tenant"));
        }
        other => panic!("expected UnknownKey, got {other:?}"),
    }
    check_err(
        text,
        "epa.toml:4: unknown key `max_queued_job_per_tenant` (did you mean `max_queued_jobs_per_tenant`?)",
    );
}

#[test]
fn unknown_section_is_an_error() {
    check_err(
        "version = 1\n[quick]\nlisten = \"1.2.3.4:5\"\n",
        "unknown key `quick` (did you mean `quic`?)",
    );
}

#[test]
fn far_unknown_key_has_no_suggestion() {
    let err = Config::parse("version = 1\nzzzz = 1\n", "f").expect_err("unknown");
    assert!(
        matches!(
            err,
            Error::UnknownKey {
                suggestion: None,
                line: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn syntax_error_names_line() {
    let err = Config::parse("version = 1\n[http]\nlisten = \n", "f").expect_err("syntax");
    assert!(matches!(err, Error::Syntax { line: 3, .. }), "{err:?}");
}

#[test]
fn wrong_type_is_a_syntax_error() {
    check_err("version = 1\n[workers]\nthreads = \"many\"\n", "epa.toml:3");
}

#[test]
fn missing_version_is_refused() {
    check_err("[http]\nlisten = \"127.0.0.1:1\"\n", "version");
}

#[test]
fn unsupported_version() {
    check_err("version = 2\n", "`version = 2` is not supported");
}

#[test]
fn semantic_errors_name_field_and_fix() {
    let cases = [
        (
            "version = 1\n[quic]\nlisten = \"localhost\"\n",
            "`quic.listen` is `localhost`",
        ),
        (
            "version = 1\n[http]\nlisten = \"1.2.3.4\"\n",
            "`http.listen`",
        ),
        (
            "version = 1\n[limits]\nmax_frame_bytes = 0\n",
            "`limits.max_frame_bytes` is 0",
        ),
        (
            "version = 1\n[limits]\nmax_frame_bytes = 2000000000\n",
            "more than 1 GiB",
        ),
        (
            "version = 1\n[prover]\npreset = \"slow\"\n",
            "use one of `fast-96`, `secure-128`",
        ),
        ("version = 1\n[prover]\nhash = \"sha1\"\n", "`prover.hash`"),
        (
            "version = 1\n[prover]\nsmt_depth = 65\n",
            "`prover.smt_depth` is 65",
        ),
        (
            "version = 1\n[workers]\nthreads = 5000\n",
            "`workers.threads`",
        ),
        (
            "version = 1\n[appliance]\ndata_dir = \"\"\n",
            "`appliance.data_dir` is empty",
        ),
        (
            "version = 1\n[[shards]]\nid = 1\nkem_key = \"a\"\n[[shards]]\nid = 1\nkem_key = \"b\"\n",
            "`shards[1].id` repeats shard 1",
        ),
        (
            "version = 1\n[[shards]]\nid = 1\nkem_key = \"a\"\nkem_keys = [\"b\", \"a\"]\n",
            "`shards[0].kem_keys` lists `a` twice",
        ),
        (
            "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\nweight = 0\n",
            "`tenants[0].weight` is 0",
        ),
        (
            "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\n",
            "`tenants[1].id`",
        ),
        (
            "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\nshards = [7]\n",
            "names shard 7, which has no [[shards]] entry",
        ),
    ];
    for (text, expect) in cases {
        check_err(text, expect);
    }
}

#[test]
fn io_error_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.toml");
    let err = Config::load(&missing).expect_err("missing file");
    assert!(err.to_string().contains("nope.toml"), "{err}");
}

#[test]
fn line_col_handles_offsets() {
    assert_eq!(line_col("ab\ncd", 0), (1, 1));
    assert_eq!(line_col("ab\ncd", 4), (2, 2));
    assert_eq!(line_col("ab\ncd", 99), (2, 3));
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[test]
fn new_sections_semantic_errors_name_field_line_and_fix() {
    let cases = [
        (
            "version = 1\n[tls]\ncert = \"c.der\"\n",
            "epa.toml:3: `tls.cert` is set but `tls.key` is not",
        ),
        (
            "version = 1\n[storage]\nblock_cache_mib = 1\n",
            "epa.toml:3: `storage.block_cache_mib` is 1, outside 8..=1048576",
        ),
        (
            "version = 1\n[backends]\nallowed = [\"wgpu\"]\n",
            "`backends.allowed` does not list `cpu`",
        ),
        (
            "version = 1\n[backends]\n\nallowed = [\"cpu\", \"opencl\"]\n",
            "epa.toml:4: `backends.allowed[1]` is `opencl`",
        ),
        (
            "version = 1\n[backends]\nkem_gpu_min_batch = 0\n",
            "epa.toml:3: `backends.kem_gpu_min_batch` is 0",
        ),
        (
            "version = 1\n[backends]\nsimd = \"sse2\"\n",
            "use one of `auto`, `scalar`, `avx2`, `avx512`",
        ),
        (
            "version = 1\n[numa]\npolicy = \"bind\"\n",
            "`numa.nodes` is empty while `numa.policy = \"bind\"`",
        ),
        (
            "version = 1\n[numa]\npolicy = \"pin\"\n",
            "epa.toml:3: `numa.policy` is `pin`",
        ),
        (
            "version = 1\n[logging]\nformat = \"xml\"\n",
            "`logging.format` is `xml`",
        ),
        (
            "version = 1\n[logging]\nlevel = \"loud\"\n",
            "`logging.level` is `loud`",
        ),
        (
            "version = 1\n[http]\nbearer_token = \"\"\n",
            "`http.bearer_token` is empty",
        ),
        (
            "version = 1\n[[shards]]\nid = 0\nkem_key = \"k\"\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\nreserved_share = 60\n[[tenants]]\nid = \"b\"\npublic_key = \"k\"\nreserved_share = 50\n",
            "epa.toml:12: `tenants[1].reserved_share` brings the tenants' reserved shares to 110",
        ),
        (
            "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\nmax_queued = 0\n",
            "epa.toml:5: `tenants[0].max_queued` is 0",
        ),
    ];
    for (text, expect) in cases {
        check_err(text, expect);
    }
}

#[test]
fn unknown_tenant_key_suggests_the_schema_key() {
    check_err(
        "version = 1\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\nmax_queue = 3\n",
        "epa.toml:5: unknown key `max_queue` (did you mean `max_queued`?)",
    );
}

#[test]
fn env_override_replaces_values() {
    let c = Config::parse_with_env(
        "version = 1\n[limits]\nmax_frame_bytes = 10\n[[tenants]]\nid = \"a\"\npublic_key = \"k\"\n",
        "epa.toml",
        env(&[
            ("EPA_LIMITS__MAX_FRAME_BYTES", "4096"),
            ("EPA_HTTP__LISTEN", "0.0.0.0:9200"),
            ("EPA_BACKENDS__ALLOWED", "[\"cpu\"]"),
            ("EPA_BACKENDS__KEM_GPU_MIN_BATCH", "64"),
            ("EPA_TENANTS__0__WEIGHT", "7"),
            ("EPA_HTTP__BEARER_TOKEN", "12345"),
            // Not configuration: no double underscore, or not our prefix.
            ("EPA_SKIP_FUZZ", "1"),
            ("PATH", "/bin"),
        ]),
    )
    .expect("valid overrides");
    assert_eq!(c.limits.max_frame_bytes, 4096);
    assert_eq!(c.http.listen, "0.0.0.0:9200");
    assert_eq!(c.backends.allowed, vec!["cpu".to_string()]);
    assert_eq!(c.backends.kem_gpu_min_batch, 64);
    assert_eq!(c.tenants[0].weight, 7);
    assert_eq!(c.http.bearer_token.as_deref(), Some("12345"));
}

#[test]
fn env_override_errors_name_the_variable() {
    let parse = |pairs: &[(&str, &str)]| {
        Config::parse_with_env("version = 1\n", "epa.toml", env(pairs))
            .expect_err("bad override")
            .to_string()
    };
    let e = parse(&[("EPA_LIMITS__MAX_FRAME_BYTE", "1")]);
    assert!(
        e.contains("EPA_LIMITS__MAX_FRAME_BYTE")
            && e.contains("did you mean EPA_LIMITS__MAX_FRAME_BYTES?"),
        "{e}"
    );
    let e = parse(&[("EPA_LIMITS__MAX_FRAME_BYTES", "lots")]);
    assert!(e.contains("`lots` is not a TOML integer"), "{e}");
    let e = parse(&[("EPA_LIMITS__MAX_FRAME_BYTES", "0")]);
    assert!(
        e.contains(
            "environment variable EPA_LIMITS__MAX_FRAME_BYTES: `limits.max_frame_bytes` is 0"
        ),
        "{e}"
    );
    let e = parse(&[("EPA_TENANTS__3__WEIGHT", "2")]);
    assert!(e.contains("the file has no `tenants[3]`"), "{e}");
    let e = parse(&[("EPA_LIMITS__MAX_FRAME_BYTES", "\"x\"")]);
    assert!(e.contains("EPA_LIMITS__MAX_FRAME_BYTES"), "{e}");
}

#[test]
fn redacted_toml_hides_the_token_and_parses_back() {
    let mut c = Config::parse(
        "version = 1\n[http]\nbearer_token = \"s3cr3t-t0ken\"\n",
        "epa.toml",
    )
    .expect("valid");
    let shown = c.to_toml_redacted();
    assert!(!shown.contains("s3cr3t-t0ken"), "{shown}");
    assert!(shown.contains(REDACTED), "{shown}");
    let back = Config::parse(&shown, "shown").expect("the shown configuration parses");
    c.http.bearer_token = Some(REDACTED.into());
    assert_eq!(back, c);
}

#[test]
fn every_schema_key_is_documented() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let doc = std::fs::read_to_string(&doc_path).expect("docs/configuration.md exists");
    let keys = schema_keys();
    assert!(keys.len() >= 35, "schema walk found only {keys:?}");
    for needle in [
        "limits.max_frame_bytes",
        "tenants[].reserved_share",
        "tls.key",
    ] {
        assert!(
            keys.iter().any(|k| k == needle),
            "{needle} missing from {keys:?}"
        );
    }
    for key in &keys {
        assert!(
            doc.contains(&format!("`{key}`")),
            "docs/configuration.md does not document `{key}`"
        );
    }
    // And the doc documents no key the schema lacks.
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let Some(key) = line.split('`').nth(1) else {
            continue;
        };
        if key.starts_with("EPA_") {
            continue;
        }
        assert!(
            keys.iter().any(|k| k == key),
            "documented key `{key}` is not in the schema"
        );
    }
}

#[test]
fn field_line_finds_sections_and_array_entries() {
    let text = "version = 1\n[limits]\n# c\nmax_batch_txs = 1\n[[tenants]]\nid = \"a\"\n[[tenants]]\n  weight = 2\n";
    assert_eq!(field_line(text, "limits.max_batch_txs"), Some(4));
    assert_eq!(field_line(text, "tenants[1].weight"), Some(8));
    assert_eq!(field_line(text, "tenants[0].weight"), None);
    assert_eq!(field_line(text, "limits.max_frame_bytes"), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// An override gives the same configuration as writing the value in the file.
        #[test]
        fn override_equals_file_value(frame in 1u32..=(1 << 30), txs in 1u32.., threads in 0usize..=1024, port in 1u16..) {
            let via_file = Config::parse(
                &format!("version = 1\n[limits]\nmax_frame_bytes = {frame}\nmax_batch_txs = {txs}\n[workers]\nthreads = {threads}\n[quic]\nlisten = \"127.0.0.1:{port}\"\n"),
                "f",
            ).expect("valid file");
            let via_env = Config::parse_with_env("version = 1\n", "f", env(&[
                ("EPA_LIMITS__MAX_FRAME_BYTES", &frame.to_string()),
                ("EPA_LIMITS__MAX_BATCH_TXS", &txs.to_string()),
                ("EPA_WORKERS__THREADS", &threads.to_string()),
                ("EPA_QUIC__LISTEN", &format!("127.0.0.1:{port}")),
            ])).expect("valid overrides");
            prop_assert_eq!(via_file, via_env);
        }

        /// What `config show` prints parses back to the same configuration.
        #[test]
        fn shown_configuration_round_trips(
            weight in 1u32..=1000, share in 0u32..=100, cache in 8u32..=4096,
            level in prop::sample::select(vec!["error", "warn", "info", "debug", "trace"]),
            simd in prop::sample::select(vec!["auto", "scalar", "avx2", "avx512"]),
        ) {
            let mut c = Config::default();
            c.storage.block_cache_mib = cache;
            c.logging.level = level.into();
            c.backends.simd = simd.into();
            c.shards.push(Shard {
                id: 3, kem_key: "k".into(), kem_keys: vec!["k2".into(), "k3".into()],
            });
            c.tenants.push(Tenant {
                id: "t".into(), public_key: "p".into(), weight, reserved_share: share,
                max_queued: Some(weight), max_submits_per_second: share, shards: vec![3],
            });
            let back = Config::parse(&c.to_toml_redacted(), "shown").expect("parses back");
            prop_assert_eq!(back, c);
        }
    }
}
