//! The EPA appliance configuration: the TOML file `epa run --config FILE` reads.
//!
//! 1. Write a file like `packaging/epa.example.toml` (every section is optional except
//!    `version = 1`; [`Config::default`] holds the defaults).
//! 2. [`Config::load`] reads and parses it: syntax errors and unknown keys are errors that name
//!    the file, the line and the key (with a "did you mean" suggestion for near misses).
//! 3. [`Config::validate`] checks the values together (addresses, limits, tenants, shards) and
//!    names the field and the fix for each problem. `load` runs it for you.
//!
//! Key files (the appliance's ML-DSA identity, aggregators' public keys, shards' ML-KEM
//! decapsulation keys) are named by path here; the binary reads and checks them.
//! Later versions add the host tuning profile and the `epa doctor` checks.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
    #[error("{file}: `{field}` {problem}; {fix}")]
    Invalid {
        /// The file (or `<string>`).
        file: String,
        /// The dotted path of the field, e.g. `tenants[1].weight`.
        field: String,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
    /// Worker threads.
    #[serde(default)]
    pub workers: Workers,
    /// Limits enforced before work is done.
    #[serde(default)]
    pub limits: Limits,
    /// Proof options.
    #[serde(default)]
    pub prover: Prover,
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
            workers: Workers::default(),
            limits: Limits::default(),
            prover: Prover::default(),
            tenants: Vec::new(),
            shards: Vec::new(),
        }
    }
}

/// `[appliance]`: state and identity.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Quic {
    /// Address and UDP port to listen on.
    pub listen: String,
}

impl Default for Quic {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:4433".into(),
        }
    }
}

/// `[http]`: the metrics and status listener.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Address and TCP port to listen on; localhost by default.
    pub listen: String,
}

impl Default for Http {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9100".into(),
        }
    }
}

/// `[workers]`: threads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Workers {
    /// CPU worker threads; 0 means one per available core.
    pub threads: usize,
}

/// `[limits]`: what the appliance refuses before doing work.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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
        }
    }
}

/// `[prover]`: proof options.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
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

/// `[[tenants]]`: one aggregator or validator allowed to submit work.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// Unique name.
    pub id: String,
    /// File holding the tenant's ML-DSA-65 public key.
    pub public_key: PathBuf,
    /// Share of the appliance relative to other tenants (1..=1000).
    #[serde(default = "one")]
    pub weight: u32,
    /// Shards this tenant may submit batches for (empty: proving jobs only).
    #[serde(default)]
    pub shards: Vec<u32>,
}

fn one() -> u32 {
    1
}

/// `[[shards]]`: one shard the appliance proves.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Shard {
    /// Shard number.
    pub id: u32,
    /// File holding the shard's ML-KEM-768 decapsulation key (transactions are encrypted to it).
    pub kem_key: PathBuf,
}

const PRESETS: &[&str] = &["fast-96", "secure-128"];
const HASHES: &[&str] = &["rp64-256", "blake3-256"];

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Config = toml::from_str(text).map_err(|e| syntax_error(text, origin, &e))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks the values together; `origin` names the file in errors.
    pub fn validate(&self, origin: &str) -> Result<(), Error> {
        let invalid = |field: &str, problem: String, fix: &str| Error::Invalid {
            file: origin.to_string(),
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
        let positive: [(&str, u64); 6] = [
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
        Ok(())
    }
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
