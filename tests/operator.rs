//! Operator-facing commands end to end: `epa config check|show`, `epa doctor` against fake
//! host trees, and `epa run` refusing secret key files others can read.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use epa::appliance::keys;
use epa::doctor::{DiskSpace, Host, Outcome, any_failed, render_json, run_checks};
use proptest::prelude::*;

fn epa(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_epa"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the epa binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("parent dir");
    }
    std::fs::write(path, contents).expect("file written");
}

#[test]
fn config_check_exit_status_and_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    write(
        &good,
        "version = 1\n[limits]\nmax_batch_txs = 100\n[logging]\nformat = \"json\"\n",
    );
    let o = epa(&["config", "check", good.to_str().expect("utf-8")], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("valid"), "{}", text(&o.stdout));

    let typo = dir.path().join("typo.toml");
    write(&typo, "version = 1\n[limits]\n\nmax_batch_tx = 100\n");
    let o = epa(&["config", "check", typo.to_str().expect("utf-8")], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("typo.toml:4: unknown key `max_batch_tx` (did you mean `max_batch_txs`?)"),
        "{err}"
    );

    // An override that breaks a valid file: the error names the variable, not the file.
    let o = epa(
        &["config", "check", good.to_str().expect("utf-8")],
        &[("EPA_LIMITS__MAX_BATCH_TXS", "0")],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(
        err.contains("environment variable EPA_LIMITS__MAX_BATCH_TXS")
            && err.contains("`limits.max_batch_txs` is 0"),
        "{err}"
    );
}

#[test]
fn config_show_effective_applies_overrides_and_redacts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("epa.toml");
    let token = format!("token-{}", std::process::id());
    write(
        &file,
        &format!("version = 1\n[http]\nbearer_token = \"{token}\"\n"),
    );
    let o = epa(
        &[
            "config",
            "show",
            "--effective",
            "--config",
            file.to_str().expect("utf-8"),
        ],
        &[
            ("EPA_LIMITS__MAX_FRAME_BYTES", "65536"),
            ("EPA_NUMA__POLICY", "none"),
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let shown = text(&o.stdout);
    assert!(!shown.contains(&token), "the token leaked: {shown}");
    let cfg = firmware_config::Config::parse(&shown, "shown").expect("the output is a config");
    assert_eq!(cfg.limits.max_frame_bytes, 65536);
    assert_eq!(cfg.numa.policy, "none");
    assert_eq!(
        cfg.http.bearer_token.as_deref(),
        Some(firmware_config::REDACTED)
    );
    // Defaults are filled in.
    assert_eq!(cfg.storage, firmware_config::Storage::default());
}

/// A configuration for `epa run` over freshly generated keys.
fn run_config(dir: &Path) -> (PathBuf, keys::GeneratedKeys) {
    let shard = keys::generate_keys(&dir.join("keys"), "shard").expect("keys");
    let agg = keys::generate_keys(&dir.join("keys"), "agg").expect("keys");
    let config = dir.join("epa.toml");
    write(
        &config,
        &format!(
            "version = 1\n[appliance]\ndata_dir = \"{}\"\n[quic]\nlisten = \"127.0.0.1:0\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[[shards]]\nid = 0\nkem_key = \"{}\"\n\
             [[tenants]]\nid = \"agg\"\npublic_key = \"{}\"\nshards = [0]\n",
            dir.join("data").display(),
            shard.kem_secret.display(),
            agg.dsa_public.display()
        ),
    );
    (config, shard)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Every QUIC limit of `[limits]` reaches the server the appliance starts (each one's
    /// behaviour is tested in node-lite's QUIC suite); 0 is refused where it would refuse
    /// everything, and allowed (off) for the stream rate.
    #[test]
    fn quic_limits_from_the_config_reach_the_server(
        subs in 1u32..64,
        streams_per_second in 0u32..10_000,
        idle in 1u32..3600,
        request in 1u32..600,
        inflight in 1u64..(1 << 34),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, _) = run_config(dir.path());
        let mut text = std::fs::read_to_string(&config).expect("config read");
        text.push_str(&format!(
            "[limits]\nmax_subscriptions_per_connection = {subs}\n\
             max_streams_per_second = {streams_per_second}\nidle_timeout_secs = {idle}\n\
             request_timeout_secs = {request}\nmax_inflight_bytes = {inflight}\n"
        ));
        write(&config, &text);
        let cfg = firmware_config::Config::load(&config).expect("valid config");
        let server = epa::appliance::Settings::from_config(&cfg).expect("settings").server;
        prop_assert_eq!(server.max_subscriptions_per_connection, subs as usize);
        prop_assert_eq!(server.max_streams_per_second, streams_per_second);
        prop_assert_eq!(server.idle_timeout, std::time::Duration::from_secs(idle.into()));
        prop_assert_eq!(server.request_timeout, std::time::Duration::from_secs(request.into()));
        prop_assert_eq!(server.max_inflight_bytes, inflight);

        let zero = text.replace(
            &format!("idle_timeout_secs = {idle}"),
            "idle_timeout_secs = 0",
        );
        write(&config, &zero);
        let err = firmware_config::Config::load(&config).expect_err("0 s idle timeout is refused");
        prop_assert!(err.to_string().contains("limits.idle_timeout_secs"), "{}", err);
    }
}

#[test]
fn run_refuses_group_or_world_readable_secret_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, shard) = run_config(dir.path());
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&shard.kem_secret, std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        let o = epa(&["run", "--config", config.to_str().expect("utf-8")], &[]);
        assert!(
            !o.status.success(),
            "epa run started on a mode {mode:o} key"
        );
        let err = text(&o.stderr);
        assert!(
            err.contains(&format!("mode {mode:04o}"))
                && err.contains("lets the group or others read this secret key")
                && err.contains(&format!("chmod 600 {}", shard.kem_secret.display())),
            "{err}"
        );
        assert!(
            !dir.path().join("data/store").exists(),
            "nothing is opened before the check"
        );
    }
    // The doctor reports the same, with the fix.
    let o = epa(
        &[
            "doctor",
            "--json",
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let keys_check = doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "key-files")
        .expect("a key-files check");
    assert_eq!(keys_check["outcome"], "fail");
    assert_eq!(
        keys_check["fix"],
        format!("chmod 600 {}", shard.kem_secret.display())
    );
}

/// What a fake host looks like; the reference outcome of each check follows from it.
#[derive(Debug, Clone)]
struct FakeHost {
    flags: Vec<&'static str>,
    nodes: usize,
    governors: Vec<&'static str>,
    thp: &'static str,
    numa_balancing: u8,
    nofile: u64,
    memlock: Option<u64>,
    vulkan: bool,
    libcuda: bool,
    nvidia_devices: usize,
    timesync: bool,
    free_gib: u64,
}

impl FakeHost {
    fn build(&self, root: &Path) {
        write(
            &root.join("proc/cpuinfo"),
            &format!(
                "processor\t: 0\nflags\t\t: fpu sse2 {}\n",
                self.flags.join(" ")
            ),
        );
        for n in 0..self.nodes {
            write(
                &root.join(format!("sys/devices/system/node/node{n}/cpulist")),
                &format!("{}-{}\n", n * 8, n * 8 + 7),
            );
        }
        for (i, g) in self.governors.iter().enumerate() {
            write(
                &root.join(format!(
                    "sys/devices/system/cpu/cpu{i}/cpufreq/scaling_governor"
                )),
                &format!("{g}\n"),
            );
        }
        let thp = ["always", "madvise", "never"]
            .iter()
            .map(|m| {
                if *m == self.thp {
                    format!("[{m}]")
                } else {
                    (*m).to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        write(
            &root.join("sys/kernel/mm/transparent_hugepage/enabled"),
            &format!("{thp}\n"),
        );
        write(
            &root.join("proc/meminfo"),
            "MemTotal:       263856012 kB\nHugePages_Total:       0\n",
        );
        write(
            &root.join("proc/sys/kernel/numa_balancing"),
            &format!("{}\n", self.numa_balancing),
        );
        let memlock = self
            .memlock
            .map_or("unlimited".to_string(), |m| m.to_string());
        write(
            &root.join("proc/self/limits"),
            &format!(
                "Limit                     Soft Limit           Hard Limit           Units\n\
                 Max open files            {}                 1048576              files\n\
                 Max locked memory         {memlock}            {memlock}            bytes\n",
                self.nofile
            ),
        );
        if self.vulkan {
            write(
                &root.join("usr/share/vulkan/icd.d/nvidia_icd.json"),
                "{\"file_format_version\": \"1.0.0\"}",
            );
        }
        if self.libcuda {
            write(&root.join("opt/drv/libcuda.so.1"), "");
            write(&root.join("etc/ld.so.conf.d/nvidia.conf"), "/opt/drv\n");
        }
        std::fs::create_dir_all(root.join("dev")).expect("dev");
        for d in 0..self.nvidia_devices {
            write(&root.join(format!("dev/nvidia{d}")), "");
        }
        write(&root.join("dev/nvidiactl"), "");
        if self.timesync {
            write(&root.join("run/systemd/timesync/synchronized"), "");
        }
    }

    /// The reference: what each check must say about this host.
    fn expected(&self, build_requires_avx2: bool) -> Vec<(&'static str, Outcome)> {
        let has = |f| self.flags.contains(&f);
        let avx2 = has("avx2") && has("bmi2") && has("fma");
        let cpu = match (avx2, build_requires_avx2) {
            (true, _) => Outcome::Pass,
            (false, true) => Outcome::Fail,
            (false, false) => Outcome::Warn,
        };
        let governor = if self.governors.iter().all(|g| *g == "performance") {
            Outcome::Pass
        } else {
            Outcome::Warn
        };
        let thp = if self.thp == "never" {
            Outcome::Warn
        } else {
            Outcome::Pass
        };
        let nofile = if self.nofile < 1024 {
            Outcome::Fail
        } else if self.nofile < 65536 {
            Outcome::Warn
        } else {
            Outcome::Pass
        };
        let memlock = match self.memlock {
            Some(m) if m < 64 << 20 => Outcome::Warn,
            _ => Outcome::Pass,
        };
        let cuda = match (self.libcuda, self.nvidia_devices > 0) {
            (true, true) => Outcome::Pass,
            (false, true) => Outcome::Fail,
            _ => Outcome::Warn,
        };
        let disk = if self.free_gib < 1 {
            Outcome::Fail
        } else if self.free_gib < 20 {
            Outcome::Warn
        } else {
            Outcome::Pass
        };
        let flag = |b: bool| if b { Outcome::Pass } else { Outcome::Warn };
        vec![
            ("cpu-features", cpu),
            ("numa-layout", Outcome::Pass),
            ("huge-pages", thp),
            ("cpu-governor", governor),
            ("numa-balancing", flag(self.numa_balancing == 0)),
            ("open-files", nofile),
            ("memlock", memlock),
            ("vulkan", flag(self.vulkan)),
            ("cuda", cuda),
            ("disk", disk),
            ("clock-sync", flag(self.timesync)),
            ("key-files", Outcome::Pass),
        ]
    }
}

fn fake_host() -> impl Strategy<Value = FakeHost> {
    (
        prop::sample::subsequence(vec!["avx2", "bmi2", "fma", "avx512f", "avx512dq"], 0..=5),
        1usize..=4,
        prop::collection::vec(
            prop::sample::select(vec!["performance", "powersave", "schedutil"]),
            0..=4,
        ),
        prop::sample::select(vec!["always", "madvise", "never"]),
        0u8..=1,
        prop::sample::select(vec![256u64, 1024, 4096, 65536, 1048576]),
        prop::option::of(prop::sample::select(vec![65536u64, 8 << 20, 64 << 20])),
        (any::<bool>(), any::<bool>(), 0usize..=2, any::<bool>()),
        0u64..=64,
    )
        .prop_map(
            |(
                flags,
                nodes,
                governors,
                thp,
                numa_balancing,
                nofile,
                memlock,
                (vulkan, libcuda, nvidia_devices, timesync),
                free_gib,
            )| FakeHost {
                flags,
                nodes,
                governors,
                thp,
                numa_balancing,
                nofile,
                memlock,
                vulkan,
                libcuda,
                nvidia_devices,
                timesync,
                free_gib,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Every check on a random fake host agrees with the reference, and the doctor fails
    /// exactly when some check fails; every non-pass carries a fix.
    #[test]
    fn doctor_matches_the_reference_on_random_hosts(host in fake_host(), requires_avx2 in any::<bool>()) {
        let root = tempfile::tempdir().expect("tempdir");
        host.build(root.path());
        let checks = run_checks(&Host {
            root: root.path().to_path_buf(),
            config: firmware_config::Config::default(),
            disk: Some(DiskSpace { available: host.free_gib << 30, total: 100 << 30 }),
            build_requires_avx2: requires_avx2,
        });
        let got: Vec<(&str, Outcome)> = checks.iter().map(|c| (c.name, c.outcome)).collect();
        let want = host.expected(requires_avx2);
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(any_failed(&checks), want.iter().any(|(_, o)| *o == Outcome::Fail));
        for c in &checks {
            prop_assert_eq!(c.fix.is_empty(), c.outcome == Outcome::Pass, "{:?}", c);
        }
        let numa = &checks[1].detail;
        prop_assert!(numa.starts_with(&format!("{} node(s)", host.nodes)), "{}", numa);
        let json = render_json(&checks);
        prop_assert_eq!(json["checks"].as_array().map(Vec::len), Some(checks.len()));
    }
}

#[test]
fn doctor_cli_on_a_fake_host_prints_fixes_and_sets_the_exit_status() {
    let root = tempfile::tempdir().expect("tempdir");
    let bad = FakeHost {
        flags: vec!["avx2", "bmi2", "fma"],
        nodes: 2,
        governors: vec!["powersave", "performance"],
        thp: "never",
        numa_balancing: 1,
        nofile: 256,
        memlock: Some(65536),
        vulkan: false,
        libcuda: false,
        nvidia_devices: 1,
        timesync: false,
        free_gib: 50,
    };
    bad.build(root.path());
    let data = tempfile::tempdir().expect("data dir");
    let config = root.path().join("epa.toml");
    write(
        &config,
        &format!(
            "version = 1\n[appliance]\ndata_dir = \"{}\"\n",
            data.path().display()
        ),
    );
    let args = [
        "doctor",
        "--root",
        root.path().to_str().expect("utf-8"),
        "--config",
        config.to_str().expect("utf-8"),
    ];
    let o = epa(&args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let out = text(&o.stdout);
    for needle in [
        "FAIL  open-files",
        "LimitNOFILE=1048576",
        "WARN  numa-balancing",
        "sysctl -w kernel.numa_balancing=0",
        "WARN  cpu-governor",
        "cpupower frequency-set -g performance",
        "FAIL  cuda",
        "PASS  numa-layout      2 node(s): node0: cpus 0-7; node1: cpus 8-15",
    ] {
        assert!(out.contains(needle), "missing `{needle}` in\n{out}");
    }
    // Fix the failures: the exit status turns to success while warnings remain.
    let good = FakeHost {
        nofile: 1048576,
        libcuda: true,
        ..bad
    };
    let root2 = tempfile::tempdir().expect("tempdir");
    good.build(root2.path());
    let o = epa(
        &[
            "doctor",
            "--json",
            "--root",
            root2.path().to_str().expect("utf-8"),
            "--config",
            config.to_str().expect("utf-8"),
        ],
        &[],
    );
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(doc["failed"], false, "{doc:#}");
    assert!(o.status.success());
}
