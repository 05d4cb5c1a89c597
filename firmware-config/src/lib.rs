//! The EPA appliance configuration: the TOML file `epa run --config FILE` reads.
//!
//! 1. Write a file like `packaging/epa.example.toml` (every section is optional except
//!    `version = 1`; [`Config::default`] holds the defaults).
//! 2. [`Config::load`] reads and parses it: syntax errors and unknown keys are errors that name
//!    the file, the line and the key (with a "did you mean" suggestion for near misses).
//! 3. [`Config::validate`] checks the values together (addresses, limits, tenants, shards) and
//!    names the field and the fix for each problem. `load` runs it for you.
//!
//! 4. [`Config::load_with_env`] does the same and then applies environment overrides: a
//!    variable `EPA_SECTION__KEY` (double underscore between path segments, array entries by
//!    index, e.g. `EPA_LIMITS__MAX_FRAME_BYTES=1048576`, `EPA_TENANTS__0__WEIGHT=4`) replaces
//!    that key. Variables without a double underscore are not configuration.
//! 5. [`Config::to_toml_redacted`] prints the effective configuration with secrets replaced.
//!
//! Key files (the appliance's ML-DSA identity, aggregators' public keys, shards' ML-KEM
//! decapsulation keys, TLS files) are named by path here; the binary reads and checks them.
//! Every key the schema knows is listed by [`schema_keys`] and documented in
//! `docs/configuration.md` (a test keeps the two in sync).
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The prefix of environment variables that override configuration keys.
pub const ENV_PREFIX: &str = "EPA_";

/// What a redacted secret prints as.
pub const REDACTED: &str = "<redacted>";

/// The configuration schema version this build reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything wrong a configuration can be.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a value has the wrong type.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// A key the schema does not know.
    #[error("{file}:{line}: unknown key `{key}`{}; remove it or fix its spelling", suggestion_text(.suggestion))]
    UnknownKey {
        /// The file (or `<string>`).
        file: String,
        /// 1-based line of the key.
        line: usize,
        /// The unknown key.
        key: String,
        /// The closest known key, if one is close.
        suggestion: Option<String>,
    },
    /// The file declares a schema version this build does not read.
    #[error(
        "{file}: `version = {found}` is not supported; this build reads `version = {SCHEMA_VERSION}`"
    )]
    UnsupportedVersion {
        /// The file (or `<string>`).
        file: String,
        /// The version found.
        found: u32,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{file}{}: `{field}` {problem}; {fix}", line_text(.line))]
    Invalid {
        /// The file (or `<string>`, or the environment variable that set the value).
        file: String,
        /// 1-based line of the field, when the file sets it.
        line: Option<usize>,
        /// The dotted path of the field, e.g. `tenants[1].weight`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// An environment override names no configuration key or holds an unusable value.
    #[error("environment variable {var}: {problem}; {fix}")]
    Override {
        /// The variable, e.g. `EPA_LIMITS__MAX_FRAME_BYTES`.
        var: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
}

fn line_text(line: &Option<usize>) -> String {
    line.map(|l| format!(":{l}")).unwrap_or_default()
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Schema version; must be [`SCHEMA_VERSION`].
    pub version: u32,
    /// Where the appliance keeps its state and who it is.
    #[serde(default)]
    pub appliance: Appliance,
    /// The QUIC listener aggregators and validators connect to.
    #[serde(default)]
    pub quic: Quic,
    /// The HTTP listener for `/metrics`, `/status`, `/healthz`, `/readyz`.
    #[serde(default)]
    pub http: Http,
    /// The TLS certificate of the QUIC listener.
    #[serde(default)]
    pub tls: Tls,
    /// RocksDB tuning of the store under the data dir.
    #[serde(default)]
    pub storage: Storage,
    /// Worker threads.
    #[serde(default)]
    pub workers: Workers,
    /// Limits enforced before work is done.
    #[serde(default)]
    pub limits: Limits,
    /// Proof options.
    #[serde(default)]
    pub prover: Prover,
    /// Which compute backends may run and how much they may use.
    #[serde(default)]
    pub backends: Backends,
    /// Placement of worker threads on NUMA nodes.
    #[serde(default)]
    pub numa: Numa,
    /// Log format and level.
    #[serde(default)]
    pub logging: Logging,
    /// The tenants (aggregators and validators) allowed to submit work.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
    /// The shards this appliance proves.
    #[serde(default)]
    pub shards: Vec<Shard>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            version: SCHEMA_VERSION,
            appliance: Appliance::default(),
            quic: Quic::default(),
            http: Http::default(),
            tls: Tls::default(),
            storage: Storage::default(),
            workers: Workers::default(),
            limits: Limits::default(),
            prover: Prover::default(),
            backends: Backends::default(),
            numa: Numa::default(),
            logging: Logging::default(),
            tenants: Vec::new(),
            shards: Vec::new(),
        }
    }
}

/// `[appliance]`: state and identity.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Appliance {
    /// Directory of the RocksDB store, the TLS certificate and other state.
    pub data_dir: PathBuf,
    /// The appliance's ML-DSA-65 secret key file (signs state commitments). Generated under
    /// `data_dir` on first start when not given.
    pub identity_key: Option<PathBuf>,
}

impl Default for Appliance {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/epa"),
            identity_key: None,
        }
    }
}

/// `[quic]`: the QUIC listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Quic {
    /// Address and UDP port to listen on.
    pub listen: String,
    /// Refuse every request of a connection until it authenticates with a tenant's ML-DSA key
    /// (on by default; turn off only on a closed test network).
    pub require_authentication: bool,
}

impl Default for Quic {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:4433".into(),
            require_authentication: true,
        }
    }
}

/// `[http]`: the metrics and status listener.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address and TCP port to listen on; localhost by default.
    pub listen: String,
    /// A bearer token the admin endpoints require when set (a secret: redacted when shown).
    pub bearer_token: Option<String>,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9100".into(),
            bearer_token: None,
        }
    }
}

/// `[tls]`: the QUIC listener's certificate. Without files, a self-signed certificate is
/// generated under the data dir on first start and kept (clients pin its fingerprint).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// The certificate (DER) file; set together with `key`.
    pub cert: Option<PathBuf>,
    /// The PKCS#8 private key (DER) file; set together with `cert`.
    pub key: Option<PathBuf>,
}

/// `[storage]`: RocksDB tuning of the store.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// Block cache size in MiB.
    pub block_cache_mib: u32,
    /// Memtable size in MiB before a flush.
    pub write_buffer_mib: u32,
    /// Background flush and compaction threads.
    pub max_background_jobs: u32,
    /// Most files RocksDB keeps open; 0 means no limit.
    pub max_open_files: u32,
}

impl Default for Storage {
    fn default() -> Self {
        Self {
            block_cache_mib: 256,
            write_buffer_mib: 64,
            max_background_jobs: 4,
            max_open_files: 0,
        }
    }
}

/// `[workers]`: threads.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// CPU worker threads; 0 means one per available core.
    pub threads: usize,
}

/// `[limits]`: what the appliance refuses before doing work.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest wire frame accepted, in bytes.
    pub max_frame_bytes: u32,
    /// Most transactions in one batch.
    pub max_batch_txs: u32,
    /// Most jobs queued per tenant before submissions get a "busy" rejection.
    pub max_queued_jobs_per_tenant: u32,
    /// Most bytes of queued batches per tenant before submissions get a "busy" rejection.
    pub max_queued_bytes_per_tenant: u64,
    /// Most concurrent streams a connection may open.
    pub max_streams_per_connection: u32,
    /// Most connections from one peer address.
    pub max_connections_per_peer: u32,
    /// Most open subscriptions per connection.
    pub max_subscriptions_per_connection: u32,
    /// Streams a peer may open per second on one connection (a token bucket holding one
    /// second's worth); 0 turns the limit off. Over it a stream is refused with
    /// `LimitExceeded`, and a connection that keeps flooding is closed.
    pub max_streams_per_second: u32,
    /// A connection with no traffic for this many seconds is closed.
    pub idle_timeout_secs: u32,
    /// Seconds a peer has to send a whole request once its stream is open, and to
    /// authenticate once the handshake is done (the slow-loris bound).
    pub request_timeout_secs: u32,
    /// Request bytes all connections together may hold in memory before they are answered;
    /// a request that would go over is refused with `Busy`.
    pub max_inflight_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 16 << 20,
            max_batch_txs: 4096,
            max_queued_jobs_per_tenant: 64,
            max_queued_bytes_per_tenant: 256 << 20,
            max_streams_per_connection: 16,
            max_connections_per_peer: 8,
            max_subscriptions_per_connection: 8,
            max_streams_per_second: 500,
            idle_timeout_secs: 30,
            request_timeout_secs: 10,
            max_inflight_bytes: 512 << 20,
        }
    }
}

/// `[prover]`: proof options.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Prover {
    /// Option preset name (`fast-96` or `secure-128`).
    pub preset: String,
    /// Commitment hash (`rp64-256` or `blake3-256`).
    pub hash: String,
    /// Depth of every shard's sparse Merkle tree (1..=64).
    pub smt_depth: u32,
}

impl Default for Prover {
    fn default() -> Self {
        Self {
            preset: "fast-96".into(),
            hash: "rp64-256".into(),
            smt_depth: 32,
        }
    }
}

/// `[backends]`: the compute backends the appliance may use.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Backends {
    /// Backends allowed to run, from `cpu`, `wgpu`, `cuda`; `cpu` is the fallback and must be
    /// listed.
    pub allowed: Vec<String>,
    /// Memory each accelerator device may hold for jobs, in MiB; 0 means 80% of the device.
    pub device_memory_budget_mib: u64,
    /// CPU SIMD level: `auto` (detected at run time), `scalar`, `avx2` or `avx512`.
    pub simd: String,
    /// Smallest ML-KEM decapsulation batch (ciphertexts of one key) sent to a hardware GPU;
    /// smaller batches run on the CPU kernels. At least 1.
    pub kem_gpu_min_batch: u32,
}

impl Default for Backends {
    fn default() -> Self {
        Self {
            allowed: vec!["cpu".into(), "wgpu".into(), "cuda".into()],
            device_memory_budget_mib: 0,
            simd: "auto".into(),
            kem_gpu_min_batch: 256,
        }
    }
}

/// `[numa]`: where worker threads run.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Numa {
    /// `auto` (a pinned worker pool per NUMA node), `none` (no pinning) or `bind` (only the
    /// nodes in `nodes`).
    pub policy: String,
    /// The NUMA nodes used by the `bind` policy.
    pub nodes: Vec<u32>,
}

impl Default for Numa {
    fn default() -> Self {
        Self {
            policy: "auto".into(),
            nodes: Vec::new(),
        }
    }
}

/// `[logging]`: log lines on standard error.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// `pretty` (for people) or `json` (one object per line, for collectors).
    pub format: String,
    /// Least severe level logged: `error`, `warn`, `info`, `debug` or `trace`.
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            format: "pretty".into(),
            level: "info".into(),
        }
    }
}

/// `[[tenants]]`: one aggregator or validator allowed to submit work.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Unique name.
    pub id: String,
    /// File holding the tenant's ML-DSA-65 public key.
    pub public_key: PathBuf,
    /// Share of the appliance relative to other tenants (1..=1000).
    #[serde(default = "one")]
    pub weight: u32,
    /// Percent of the workers held for this tenant even when others queue more (0..=100; the
    /// sum over tenants at most 100).
    #[serde(default)]
    pub reserved_share: u32,
    /// Most jobs this tenant may queue; overrides `limits.max_queued_jobs_per_tenant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queued: Option<u32>,
    /// Most submissions per second this tenant may make; 0 means no rate limit.
    #[serde(default)]
    pub max_submits_per_second: u32,
    /// Shards this tenant may submit batches for (empty: proving jobs only).
    #[serde(default)]
    pub shards: Vec<u32>,
}

fn one() -> u32 {
    1
}

/// `[[shards]]`: one shard the appliance proves.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Shard number.
    pub id: u32,
    /// File holding the shard's ML-KEM-768 decapsulation key (transactions are encrypted to it;
    /// transactions of format version 1, which name no key, are opened with it).
    pub kem_key: PathBuf,
    /// More ML-KEM-768 decapsulation key files active for the shard while keys rotate:
    /// transactions of format version 2 name their key by id and are opened with the matching
    /// one. Retire a key by removing its file from the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kem_keys: Vec<PathBuf>,
}

const PRESETS: &[&str] = &["fast-96", "secure-128"];
const HASHES: &[&str] = &["rp64-256", "blake3-256"];
const BACKENDS: &[&str] = &["cpu", "wgpu", "cuda"];
const SIMD: &[&str] = &["auto", "scalar", "avx2", "avx512"];
const NUMA_POLICIES: &[&str] = &["auto", "none", "bind"];
const LOG_FORMATS: &[&str] = &["pretty", "json"];
const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::load_with_env(path, std::iter::empty())
    }

    /// Reads a configuration file, applies the `EPA_…` overrides among `vars` (pass
    /// `std::env::vars()`), and validates the result.
    pub fn load_with_env(
        path: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_with_env(&text, &path.display().to_string(), vars)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        Self::parse_with_env(text, origin, std::iter::empty())
    }

    /// Parses configuration text, applies the `EPA_…` overrides among `vars`, and validates.
    pub fn parse_with_env(
        text: &str,
        origin: &str,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        // The file alone first: its errors carry lines and "did you mean" suggestions.
        let from_file: Config = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
        let overrides = env_overrides(vars)?;
        let config = if overrides.is_empty() {
            from_file
        } else {
            let mut table: toml::Table =
                toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
            for o in &overrides {
                o.apply(&mut table)?;
            }
            let names: Vec<&str> = overrides.iter().map(|o| o.var.as_str()).collect();
            Config::deserialize(toml::Value::Table(table)).map_err(|e| Error::Override {
                var: names.join(", "),
                problem: e.message().trim_end().to_string(),
                fix: "give the variable a value of the key's type (see docs/configuration.md)"
                    .into(),
            })?
        };
        config.validate(origin).map_err(|e| match e {
            Error::Invalid {
                file,
                field,
                problem,
                fix,
                ..
            } => {
                if let Some(o) = overrides.iter().find(|o| field.starts_with(&o.field)) {
                    Error::Invalid {
                        file: format!("environment variable {}", o.var),
                        line: None,
                        field,
                        problem,
                        fix,
                    }
                } else {
                    Error::Invalid {
                        line: field_line(text, &field),
                        file,
                        field,
                        problem,
                        fix,
                    }
                }
            }
            other => other,
        })?;
        Ok(config)
    }

    /// The configuration as TOML with secrets (`http.bearer_token`) replaced by
    /// [`REDACTED`]: what `epa config show --effective` prints.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        if shown.http.bearer_token.is_some() {
            shown.http.bearer_token = Some(REDACTED.into());
        }
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot print: {e}\n"))
    }

    /// Checks the values together; `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let invalid = |field: &str, problem: String, fix: &str| Error::Invalid {
            file: origin.to_string(),
            line: None,
            field: field.to_string(),
            problem,
            fix: fix.to_string(),
        };
        if self.version != SCHEMA_VERSION {
            return Err(Error::UnsupportedVersion {
                file: origin.to_string(),
                found: self.version,
            });
        }
        for (field, value) in [
            ("quic.listen", &self.quic.listen),
            ("http.listen", &self.http.listen),
        ] {
            value.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    field,
                    format!("is `{value}`, which is not an IP address and port"),
                    "write it as `IP:PORT`, for example `127.0.0.1:4433` or `[::1]:4433`",
                )
            })?;
        }
        if self.appliance.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "appliance.data_dir",
                "is empty".into(),
                "name a directory the appliance may write, for example `/var/lib/epa`",
            ));
        }
        if self.workers.threads > 1024 {
            return Err(invalid(
                "workers.threads",
                format!("is {}, more than 1024", self.workers.threads),
                "use 0 (one per core) or the number of cores to use",
            ));
        }
        let l = &self.limits;
        let positive: [(&str, u64); 10] = [
            ("limits.max_frame_bytes", l.max_frame_bytes.into()),
            ("limits.max_batch_txs", l.max_batch_txs.into()),
            (
                "limits.max_queued_jobs_per_tenant",
                l.max_queued_jobs_per_tenant.into(),
            ),
            (
                "limits.max_queued_bytes_per_tenant",
                l.max_queued_bytes_per_tenant,
            ),
            (
                "limits.max_streams_per_connection",
                l.max_streams_per_connection.into(),
            ),
            (
                "limits.max_connections_per_peer",
                l.max_connections_per_peer.into(),
            ),
            (
                "limits.max_subscriptions_per_connection",
                l.max_subscriptions_per_connection.into(),
            ),
            ("limits.idle_timeout_secs", l.idle_timeout_secs.into()),
            ("limits.request_timeout_secs", l.request_timeout_secs.into()),
            ("limits.max_inflight_bytes", l.max_inflight_bytes),
        ];
        for (field, v) in positive {
            if v == 0 {
                return Err(invalid(
                    field,
                    "is 0, which would refuse everything".into(),
                    "set a positive limit (the default is a good start)",
                ));
            }
        }
        if l.max_frame_bytes > 1 << 30 {
            return Err(invalid(
                "limits.max_frame_bytes",
                format!("is {}, more than 1 GiB", l.max_frame_bytes),
                "keep frames at most 1073741824 bytes",
            ));
        }
        if !PRESETS.contains(&self.prover.preset.as_str()) {
            return Err(invalid(
                "prover.preset",
                format!("is `{}`, which is not a preset", self.prover.preset),
                &format!("use one of {}", quoted(PRESETS)),
            ));
        }
        if !HASHES.contains(&self.prover.hash.as_str()) {
            return Err(invalid(
                "prover.hash",
                format!("is `{}`, which is not a commitment hash", self.prover.hash),
                &format!("use one of {}", quoted(HASHES)),
            ));
        }
        if !(1..=64).contains(&self.prover.smt_depth) {
            return Err(invalid(
                "prover.smt_depth",
                format!("is {}, outside 1..=64", self.prover.smt_depth),
                "use 32 unless the chain says otherwise",
            ));
        }
        let mut shard_ids = BTreeSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            if !shard_ids.insert(s.id) {
                return Err(invalid(
                    &format!("shards[{i}].id"),
                    format!("repeats shard {}", s.id),
                    "give each shard one [[shards]] entry",
                ));
            }
            let mut files = BTreeSet::from([&s.kem_key]);
            if let Some(dup) = s.kem_keys.iter().find(|k| !files.insert(*k)) {
                return Err(invalid(
                    &format!("shards[{i}].kem_keys"),
                    format!("lists `{}` twice (or repeats kem_key)", dup.display()),
                    "list each active key file of the shard once",
                ));
            }
        }
        let mut tenant_ids = BTreeSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if t.id.is_empty() || !tenant_ids.insert(t.id.as_str()) {
                return Err(invalid(
                    &format!("tenants[{i}].id"),
                    format!("is `{}`, empty or used twice", t.id),
                    "give each tenant a unique, non-empty id",
                ));
            }
            if !(1..=1000).contains(&t.weight) {
                return Err(invalid(
                    &format!("tenants[{i}].weight"),
                    format!("is {}, outside 1..=1000", t.weight),
                    "use a weight from 1 to 1000 (1 is the default)",
                ));
            }
            if let Some(s) = t.shards.iter().find(|s| !shard_ids.contains(s)) {
                return Err(invalid(
                    &format!("tenants[{i}].shards"),
                    format!("names shard {s}, which has no [[shards]] entry"),
                    "add the shard with its ML-KEM key, or remove it from the tenant",
                ));
            }
        }
        let mut reserved = 0u32;
        for (i, t) in self.tenants.iter().enumerate() {
            if t.reserved_share > 100 {
                return Err(invalid(
                    &format!("tenants[{i}].reserved_share"),
                    format!("is {}, more than 100 percent", t.reserved_share),
                    "use a percentage from 0 to 100 (0, the default, reserves nothing)",
                ));
            }
            reserved += t.reserved_share;
            if reserved > 100 {
                return Err(invalid(
                    &format!("tenants[{i}].reserved_share"),
                    format!("brings the tenants' reserved shares to {reserved} percent"),
                    "lower the reserved shares so that together they are at most 100",
                ));
            }
            if t.max_queued == Some(0) {
                return Err(invalid(
                    &format!("tenants[{i}].max_queued"),
                    "is 0, which would refuse every job of the tenant".into(),
                    "set a positive limit, or remove the key to use limits.max_queued_jobs_per_tenant",
                ));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            let (field, missing) = if self.tls.cert.is_some() {
                ("tls.cert", "tls.key")
            } else {
                ("tls.key", "tls.cert")
            };
            return Err(invalid(
                field,
                format!("is set but `{missing}` is not"),
                &format!(
                    "set `{missing}` too, or remove both to use a self-signed certificate \
                     generated under the data dir"
                ),
            ));
        }
        let st = &self.storage;
        for (field, v, lo, hi) in [
            ("storage.block_cache_mib", st.block_cache_mib, 8, 1 << 20),
            ("storage.write_buffer_mib", st.write_buffer_mib, 1, 1 << 16),
            (
                "storage.max_background_jobs",
                st.max_background_jobs,
                1,
                256,
            ),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(invalid(
                    field,
                    format!("is {v}, outside {lo}..={hi}"),
                    "use a value in range (the default is a good start)",
                ));
            }
        }
        let b = &self.backends;
        let mut seen = BTreeSet::new();
        for (i, name) in b.allowed.iter().enumerate() {
            if !BACKENDS.contains(&name.as_str()) || !seen.insert(name.as_str()) {
                return Err(invalid(
                    &format!("backends.allowed[{i}]"),
                    format!("is `{name}`, unknown or listed twice"),
                    &format!("list each of {} at most once", quoted(BACKENDS)),
                ));
            }
        }
        if !seen.contains("cpu") {
            return Err(invalid(
                "backends.allowed",
                "does not list `cpu`, the backend failing accelerators fall back to".into(),
                "add \"cpu\" to the list",
            ));
        }
        if !SIMD.contains(&b.simd.as_str()) {
            return Err(invalid(
                "backends.simd",
                format!("is `{}`, which is not a SIMD level", b.simd),
                &format!("use one of {}", quoted(SIMD)),
            ));
        }
        if b.kem_gpu_min_batch == 0 {
            return Err(invalid(
                "backends.kem_gpu_min_batch",
                "is 0, but a batch holds at least one ciphertext".into(),
                "use 1 to send every batch to the GPU, or a larger batch size (default 1024)",
            ));
        }
        if !NUMA_POLICIES.contains(&self.numa.policy.as_str()) {
            return Err(invalid(
                "numa.policy",
                format!("is `{}`, which is not a policy", self.numa.policy),
                &format!("use one of {}", quoted(NUMA_POLICIES)),
            ));
        }
        if self.numa.policy == "bind" && self.numa.nodes.is_empty() {
            return Err(invalid(
                "numa.nodes",
                "is empty while `numa.policy = \"bind\"`".into(),
                "list the nodes to bind to, e.g. `nodes = [0]`, or use `policy = \"auto\"`",
            ));
        }
        if !LOG_FORMATS.contains(&self.logging.format.as_str()) {
            return Err(invalid(
                "logging.format",
                format!("is `{}`, which is not a log format", self.logging.format),
                &format!("use one of {}", quoted(LOG_FORMATS)),
            ));
        }
        if !LOG_LEVELS.contains(&self.logging.level.as_str()) {
            return Err(invalid(
                "logging.level",
                format!("is `{}`, which is not a log level", self.logging.level),
                &format!("use one of {}", quoted(LOG_LEVELS)),
            ));
        }
        if self.http.bearer_token.as_deref() == Some("") {
            return Err(invalid(
                "http.bearer_token",
                "is empty".into(),
                "remove the key to serve without a token, or set a long random string",
            ));
        }
        Ok(())
    }
}

/// Every key the schema knows, as dotted paths (`limits.max_frame_bytes`,
/// `tenants[].weight`), each with the TOML type of its value.
pub fn schema_entries() -> Vec<(String, &'static str)> {
    let sample = Config {
        appliance: Appliance {
            identity_key: Some("k".into()),
            ..Appliance::default()
        },
        http: Http {
            bearer_token: Some("t".into()),
            ..Http::default()
        },
        tls: Tls {
            cert: Some("c".into()),
            key: Some("k".into()),
        },
        numa: Numa {
            nodes: vec![0],
            ..Numa::default()
        },
        tenants: vec![Tenant {
            id: "t".into(),
            public_key: "p".into(),
            weight: 1,
            reserved_share: 0,
            max_queued: Some(1),
            max_submits_per_second: 0,
            shards: vec![0],
        }],
        shards: vec![Shard {
            id: 0,
            kem_key: "k".into(),
            kem_keys: vec!["k2".into()],
        }],
        ..Config::default()
    };
    let mut out = Vec::new();
    if let Ok(toml::Value::Table(t)) = toml::Value::try_from(&sample) {
        walk_schema(&t, "", &mut out);
    }
    out
}

fn walk_schema(table: &toml::Table, prefix: &str, out: &mut Vec<(String, &'static str)>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => walk_schema(t, &path, out),
            toml::Value::Array(a) if matches!(a.first(), Some(toml::Value::Table(_))) => {
                if let Some(toml::Value::Table(t)) = a.first() {
                    walk_schema(t, &format!("{path}[]"), out);
                }
            }
            other => out.push((path, other.type_str())),
        }
    }
}

/// Every key the schema knows, as dotted paths (see [`schema_entries`]).
pub fn schema_keys() -> Vec<String> {
    schema_entries().into_iter().map(|(k, _)| k).collect()
}

/// One `EPA_…` environment override.
#[derive(Debug)]
struct Override {
    var: String,
    /// Path segments, lower case; numbers index arrays of tables.
    segments: Vec<String>,
    /// The dotted field as validation names it (`tenants[0].weight`).
    field: String,
    value: toml::Value,
}

fn env_overrides(vars: impl IntoIterator<Item = (String, String)>) -> Result<Vec<Override>, Error> {
    let schema = schema_entries();
    let mut out = Vec::new();
    for (var, raw) in vars {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue;
        }
        let segments: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        let mut schema_path = String::new();
        let mut field = String::new();
        for s in &segments {
            if s.parse::<usize>().is_ok() {
                schema_path.push_str("[]");
                field.push_str(&format!("[{s}]"));
            } else {
                if !schema_path.is_empty() {
                    schema_path.push('.');
                    field.push('.');
                }
                schema_path.push_str(s);
                field.push_str(s);
            }
        }
        let Some((_, kind)) = schema.iter().find(|(k, _)| *k == schema_path) else {
            let near = schema
                .iter()
                .map(|(k, _)| (strsim::jaro_winkler(&schema_path, k), k))
                .filter(|(score, _)| *score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, k)| {
                    format!(
                        " (did you mean {ENV_PREFIX}{}?)",
                        k.replace("[]", "__0")
                            .replace('.', "__")
                            .to_ascii_uppercase()
                    )
                })
                .unwrap_or_default();
            return Err(Error::Override {
                var,
                problem: format!("`{schema_path}` is not a configuration key{near}"),
                fix: "fix the name (sections and keys joined by `__`) or unset the variable".into(),
            });
        };
        let value = if *kind == "string" {
            toml::Value::String(raw)
        } else {
            toml::from_str::<toml::Table>(&format!("v = {raw}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .ok_or_else(|| Error::Override {
                    var: var.clone(),
                    problem: format!("`{raw}` is not a TOML {kind}"),
                    fix: format!("write a {kind} as in the file, e.g. `1`, `true` or `[\"cpu\"]`"),
                })?
        };
        out.push(Override {
            var,
            segments,
            field,
            value,
        });
    }
    out.sort_by(|a, b| a.var.cmp(&b.var));
    Ok(out)
}

impl Override {
    fn apply(&self, root: &mut toml::Table) -> Result<(), Error> {
        let missing = |what: String| Error::Override {
            var: self.var.clone(),
            problem: what,
            fix: "add that entry to the file first; overrides replace values, they do not add \
                  array entries"
                .into(),
        };
        let (last, parents) = self
            .segments
            .split_last()
            .ok_or_else(|| missing("names no key".into()))?;
        let mut table = root;
        let mut i = 0;
        while i < parents.len() {
            let key = &parents[i];
            let next_is_index = parents.get(i + 1).and_then(|s| s.parse::<usize>().ok());
            if let Some(index) = next_is_index {
                let entry = table
                    .get_mut(key.as_str())
                    .and_then(toml::Value::as_array_mut)
                    .and_then(|a| a.get_mut(index))
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| missing(format!("the file has no `{key}[{index}]`")))?;
                table = entry;
                i += 2;
            } else {
                let entry = table
                    .entry(key.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                table = entry
                    .as_table_mut()
                    .ok_or_else(|| missing(format!("`{key}` is not a section in the file")))?;
                i += 1;
            }
        }
        table.insert(last.clone(), self.value.clone());
        Ok(())
    }
}

/// The 1-based line where `text` sets `field` (`limits.max_frame_bytes`,
/// `tenants[1].weight`, `backends.allowed[0]`), if it does.
fn field_line(text: &str, field: &str) -> Option<usize> {
    let field = match field.rfind('[') {
        Some(i) if field.ends_with(']') => &field[..i],
        _ => field,
    };
    let (section, key) = field.rsplit_once('.')?;
    let (header, nth) = match section.split_once('[') {
        Some((name, idx)) => (
            format!("[[{name}]]"),
            idx.trim_end_matches(']').parse::<usize>().ok()?,
        ),
        None => (format!("[{section}]"), 0),
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(nth)?
        .0;
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with('[') {
            break;
        }
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    None
}

fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Turns a TOML error into an [`Error`] with file, line and, for unknown keys, a suggestion.
fn syntax_error(text: &str, origin: &str, e: &toml::de::Error) -> Error {
    let (line, column) = e
        .span()
        .map(|span| line_col(text, span.start))
        .unwrap_or((1, 1));
    let message = e.message().to_string();
    // serde's wording: "unknown field `x`, expected one of `a`, `b`" (or "expected `a`").
    if let Some((key, expected)) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
    {
        let suggestion = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(|c| (strsim::jaro_winkler(key, c), c))
            .filter(|(score, _)| *score > 0.8)
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c.to_string());
        return Error::UnknownKey {
            file: origin.to_string(),
            line,
            key: key.to_string(),
            suggestion,
        };
    }
    Error::Syntax {
        file: origin.to_string(),
        line,
        column,
        message: message.trim_end().to_string(),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
