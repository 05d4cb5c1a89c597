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
