//! `epa doctor`: checks that a host is ready to prove, and says how to fix what is not.
//!
//! 1. Build a [`Host`]: [`Host::system`] looks at this machine; tests point [`Host::root`]
//!    at a directory holding a fake `proc/`, `sys/`, `usr/`, `run/` tree and set
//!    [`Host::disk`] so the results are deterministic.
//! 2. [`run_checks`] reads files only: it never changes the host.
//! 3. Each [`Check`] is pass, warn or fail with the exact fix; [`render_text`] and
//!    [`render_json`] print them, and [`any_failed`] decides the exit status.
//!
//! The tuning files in `packaging/` (`sysctl.d/60-epa.conf`, `limits.d/60-epa.conf`) and the
//! systemd unit's limits are what the fixes point to.

use std::path::{Path, PathBuf};

use firmware_config::Config;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The host is ready in this respect.
    Pass,
    /// It works, but slower or less safely than it could.
    Warn,
    /// The appliance cannot run well (or at all) until this is fixed.
    Fail,
}

impl Outcome {
    /// `pass`, `warn` or `fail`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Short id, e.g. `cpu-features`.
    pub name: &'static str,
    /// Pass, warn or fail.
    pub outcome: Outcome,
    /// What was found.
    pub detail: String,
    /// The exact fix (empty on a pass).
    pub fix: String,
}

impl Check {
    fn new(name: &'static str, outcome: Outcome, detail: impl Into<String>, fix: &str) -> Self {
        Self {
            name,
            outcome,
            detail: detail.into(),
            fix: if outcome == Outcome::Pass {
                String::new()
            } else {
                fix.to_string()
            },
        }
    }
}

/// Free space of a file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Size of the file system.
    pub total: u64,
}

/// The host to check.
#[derive(Debug, Clone)]
pub struct Host {
    /// Where `proc/`, `sys/`, `usr/`, `etc/`, `run/`, `dev/` are found: `/` on a real host.
    pub root: PathBuf,
    /// The configuration (data dir, allowed backends, key files).
    pub config: Config,
    /// Free space at the data dir; `None` measures it with `statvfs`.
    pub disk: Option<DiskSpace>,
    /// Whether this build requires AVX2 (built for x86-64-v3).
    pub build_requires_avx2: bool,
}

impl Host {
    /// This machine, checked against `config`.
    pub fn system(config: Config) -> Self {
        Self {
            root: PathBuf::from("/"),
            config,
            disk: None,
            build_requires_avx2: cfg!(target_feature = "avx2"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }
}

/// Less free space than this at the data dir fails.
pub const DISK_FAIL_BYTES: u64 = 1 << 30;
/// Less free space than this at the data dir warns.
pub const DISK_WARN_BYTES: u64 = 20 << 30;
/// Fewer open files than this fails (RocksDB, QUIC connections).
pub const NOFILE_FAIL: u64 = 1024;
/// Fewer open files than this warns.
pub const NOFILE_WARN: u64 = 65536;
/// Less lockable memory than this warns (bytes).
pub const MEMLOCK_WARN: u64 = 64 << 20;

/// Runs every check; reads files only.
pub fn run_checks(host: &Host) -> Vec<Check> {
    let mut out = vec![
        cpu_features(host),
        numa_layout(host),
        huge_pages(host),
        governor(host),
        numa_balancing(host),
    ];
    out.extend(limits(host));
    out.extend(gpus(host));
    out.push(disk(host));
    out.push(clock(host));
    out.push(key_files(host));
    out
}

/// Whether any check failed (the exit status of `epa doctor`).
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.outcome == Outcome::Fail)
}

/// One line per check, the fix indented below it, and a summary line.
pub fn render_text(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        s.push_str(&format!(
            "{:<5} {:<16} {}\n",
            c.outcome.name().to_uppercase(),
            c.name,
            c.detail
        ));
        if !c.fix.is_empty() {
            s.push_str(&format!("      fix: {}\n", c.fix));
        }
    }
    let count = |o| checks.iter().filter(|c| c.outcome == o).count();
    s.push_str(&format!(
        "{} passed, {} warnings, {} failed\n",
        count(Outcome::Pass),
        count(Outcome::Warn),
        count(Outcome::Fail)
    ));
    s
}

/// A JSON document `{"checks": [{"name", "outcome", "detail", "fix"}], "failed": bool}`.
pub fn render_json(checks: &[Check]) -> serde_json::Value {
    serde_json::json!({
        "checks": checks.iter().map(|c| serde_json::json!({
            "name": c.name,
            "outcome": c.outcome.name(),
            "detail": c.detail,
            "fix": c.fix,
        })).collect::<Vec<_>>(),
        "failed": any_failed(checks),
    })
}

fn cpu_flags(host: &Host) -> Option<Vec<String>> {
    let text = host.read("proc/cpuinfo")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("flags") || l.starts_with("Features"))?;
    let (_, flags) = line.split_once(':')?;
    Some(flags.split_whitespace().map(str::to_string).collect())
}

fn cpu_features(host: &Host) -> Check {
    const NAME: &str = "cpu-features";
    let Some(flags) = cpu_flags(host) else {
        return Check::new(
            NAME,
            Outcome::Warn,
            "cannot read the CPU flags from /proc/cpuinfo",
            "run epa doctor on the host itself (not in a sandbox without /proc)",
        );
    };
    let has = |f: &str| flags.iter().any(|x| x == f);
    let avx2 = has("avx2") && has("bmi2") && has("fma");
    let avx512 = has("avx512f") && has("avx512dq");
    match (avx2, avx512) {
        (false, _) if host.build_requires_avx2 => Check::new(
            NAME,
            Outcome::Fail,
            "the CPU lacks AVX2/BMI2/FMA, which this build (x86-64-v3) requires",
            "run on an x86-64-v3 CPU (Haswell or later, any Zen), or build from source without \
             `-C target-cpu=x86-64-v3` in .cargo/config.toml",
        ),
        (false, _) => Check::new(
            NAME,
            Outcome::Warn,
            "no AVX2: the CPU backend runs its scalar code",
            "use an x86-64-v3 CPU (AVX2) for several times the NTT and hashing throughput",
        ),
        (true, false) => Check::new(
            NAME,
            Outcome::Pass,
            "AVX2 (x86-64-v3) present; no AVX-512, the AVX2 kernels run",
            "",
        ),
        (true, true) => Check::new(
            NAME,
            Outcome::Pass,
            "AVX2 and AVX-512 present; the AVX-512 kernels run",
            "",
        ),
    }
}

fn numa_layout(host: &Host) -> Check {
    const NAME: &str = "numa-layout";
    let dir = host.path("sys/devices/system/node");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Check::new(
            NAME,
            Outcome::Warn,
            "no /sys/devices/system/node: the kernel reports no NUMA layout",
            "boot a kernel with CONFIG_NUMA, or set `numa.policy = \"none\"` in epa.toml",
        );
    };
    let mut nodes: Vec<(u32, String)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("node")?.parse::<u32>().ok()?;
            let cpus = std::fs::read_to_string(e.path().join("cpulist"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            Some((id, cpus))
        })
        .collect();
    nodes.sort();
    let listed: Vec<String> = nodes
        .iter()
        .map(|(id, cpus)| format!("node{id}: cpus {cpus}"))
        .collect();
    let cfg = &host.config.numa;
    if let Some(missing) = cfg
        .nodes
        .iter()
        .find(|n| !nodes.iter().any(|(id, _)| id == *n))
        .filter(|_| cfg.policy == "bind")
    {
        return Check::new(
            NAME,
            Outcome::Fail,
            format!(
                "numa.nodes names node {missing}, which this host lacks ({})",
                listed.join("; ")
            ),
            "list only existing nodes in `numa.nodes`, or use `numa.policy = \"auto\"`",
        );
    }
    if nodes.iter().any(|(_, cpus)| cpus.is_empty()) && nodes.len() > 1 {
        return Check::new(
            NAME,
            Outcome::Warn,
            format!("a NUMA node has no CPUs ({})", listed.join("; ")),
            "check the BIOS NUMA settings (sub-NUMA clustering) or use `numa.policy = \"none\"`",
        );
    }
    Check::new(
        NAME,
        Outcome::Pass,
        format!("{} node(s): {}", nodes.len(), listed.join("; ")),
        "",
    )
}

fn huge_pages(host: &Host) -> Check {
    const NAME: &str = "huge-pages";
    let thp = host
        .read("sys/kernel/mm/transparent_hugepage/enabled")
        .and_then(|s| {
            let start = s.find('[')?;
            let end = s[start..].find(']')?;
            Some(s[start + 1..start + end].to_string())
        });
    let reserved = host
        .read("proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("HugePages_Total:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let fix = "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (persist it with \
               `transparent_hugepage=madvise` on the kernel command line)";
    match thp.as_deref() {
        Some("always") | Some("madvise") => Check::new(
            NAME,
            Outcome::Pass,
            format!(
                "transparent huge pages `{}`, {reserved} reserved huge pages",
                thp.as_deref().unwrap_or_default()
            ),
            "",
        ),
        _ if reserved > 0 => Check::new(
            NAME,
            Outcome::Pass,
            format!("{reserved} reserved huge pages"),
            "",
        ),
        Some(other) => Check::new(
            NAME,
            Outcome::Warn,
            format!(
                "transparent huge pages `{other}` and no reserved huge pages: large traces \
                 pay for TLB misses"
            ),
            fix,
        ),
        None => Check::new(
            NAME,
            Outcome::Warn,
            "the kernel reports no transparent huge page setting",
            fix,
        ),
    }
}

fn governor(host: &Host) -> Check {
    const NAME: &str = "cpu-governor";
    let dir = host.path("sys/devices/system/cpu");
    let mut governors: Vec<(String, String)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix("cpu")?.parse::<u32>().ok()?;
                    let g =
                        std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")).ok()?;
                    Some((name, g.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    governors.sort();
    if governors.is_empty() {
        return Check::new(
            NAME,
            Outcome::Pass,
            "no cpufreq governors exposed (frequency managed by firmware or hypervisor)",
            "",
        );
    }
    let slow: Vec<&(String, String)> = governors
        .iter()
        .filter(|(_, g)| g != "performance")
        .collect();
    if slow.is_empty() {
        Check::new(
            NAME,
            Outcome::Pass,
            format!("all {} CPUs use `performance`", governors.len()),
            "",
        )
    } else {
        Check::new(
            NAME,
            Outcome::Warn,
            format!(
                "{} of {} CPUs do not use `performance` (e.g. {} uses `{}`)",
                slow.len(),
                governors.len(),
                slow[0].0,
                slow[0].1
            ),
            "cpupower frequency-set -g performance (package linux-cpupower; or set the BIOS \
             power profile to maximum performance)",
        )
    }
}

fn numa_balancing(host: &Host) -> Check {
    const NAME: &str = "numa-balancing";
    match host
        .read("proc/sys/kernel/numa_balancing")
        .as_deref()
        .map(str::trim)
    {
        None => Check::new(
            NAME,
            Outcome::Pass,
            "automatic NUMA balancing not present in this kernel",
            "",
        ),
        Some("0") => Check::new(NAME, Outcome::Pass, "automatic NUMA balancing off", ""),
        Some(v) => Check::new(
            NAME,
            Outcome::Warn,
            format!("automatic NUMA balancing is on ({v}): it migrates the pinned workers' pages"),
            "sysctl -w kernel.numa_balancing=0, and install \
             /usr/share/epa/tuning/sysctl.d/60-epa.conf (packaging/sysctl.d/ in the source) as \
             /etc/sysctl.d/60-epa.conf to keep it off",
        ),
    }
}

/// The soft limit of a `/proc/self/limits` row; `None` if absent, `u64::MAX` if unlimited.
fn soft_limit(limits: &str, row: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with(row))?;
    let soft = line[row.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(u64::MAX)
    } else {
        soft.parse().ok()
    }
}

fn limits(host: &Host) -> Vec<Check> {
    let Some(text) = host.read("proc/self/limits") else {
        return vec![Check::new(
            "limits",
            Outcome::Warn,
            "cannot read /proc/self/limits",
            "run epa doctor on the host itself",
        )];
    };
    let fmt = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    let nofile = match soft_limit(&text, "Max open files") {
        None => Check::new(
            "open-files",
            Outcome::Warn,
            "no `Max open files` row in /proc/self/limits",
            "run epa doctor on the host itself",
        ),
        Some(n) => {
            let outcome = if n < NOFILE_FAIL {
                Outcome::Fail
            } else if n < NOFILE_WARN {
                Outcome::Warn
            } else {
                Outcome::Pass
            };
            Check::new(
                "open-files",
                outcome,
                format!("open-file limit {} (want at least {NOFILE_WARN})", fmt(n)),
                "LimitNOFILE=1048576 in the systemd unit (the packaged unit sets it), or \
                 install /usr/share/epa/tuning/limits.d/60-epa.conf (packaging/limits.d/ in \
                 the source) as /etc/security/limits.d/60-epa.conf \
                 and log in again",
            )
        }
    };
    let memlock = match soft_limit(&text, "Max locked memory") {
        None => Check::new(
            "memlock",
            Outcome::Warn,
            "no `Max locked memory` row in /proc/self/limits",
            "run epa doctor on the host itself",
        ),
        Some(n) => Check::new(
            "memlock",
            if n < MEMLOCK_WARN {
                Outcome::Warn
            } else {
                Outcome::Pass
            },
            format!(
                "locked-memory limit {} bytes (GPU pinned buffers want at least {MEMLOCK_WARN})",
                fmt(n)
            ),
            "LimitMEMLOCK=infinity in the systemd unit (the packaged unit sets it), or install \
             /usr/share/epa/tuning/limits.d/60-epa.conf (packaging/limits.d/ in the source) \
             as /etc/security/limits.d/60-epa.conf",
        ),
    };
    vec![nofile, memlock]
}

/// Library directories searched for `libcuda.so.1`: the usual ones plus `ld.so.conf.d`.
fn library_dirs(host: &Host) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = [
        "usr/lib/x86_64-linux-gnu",
        "usr/lib/aarch64-linux-gnu",
        "usr/lib64",
        "usr/lib",
        "lib/x86_64-linux-gnu",
        "usr/local/cuda/lib64",
        "usr/lib/wsl/lib",
    ]
    .iter()
    .map(|d| host.path(d))
    .collect();
    if let Ok(entries) = std::fs::read_dir(host.path("etc/ld.so.conf.d")) {
        for e in entries.filter_map(Result::ok) {
            if let Ok(text) = std::fs::read_to_string(e.path()) {
                for line in text.lines().map(str::trim) {
                    if let Some(abs) = line.strip_prefix('/') {
                        dirs.push(host.path(abs));
                    }
                }
            }
        }
    }
    dirs
}

fn gpus(host: &Host) -> Vec<Check> {
    let allowed = |b: &str| host.config.backends.allowed.iter().any(|a| a == b);
    let mut out = Vec::new();
    if allowed("wgpu") {
        let mut icds: Vec<String> = ["usr/share/vulkan/icd.d", "etc/vulkan/icd.d"]
            .iter()
            .filter_map(|d| std::fs::read_dir(host.path(d)).ok())
            .flat_map(|entries| entries.filter_map(Result::ok))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json"))
            .collect();
        icds.sort();
        out.push(if icds.is_empty() {
            Check::new(
                "vulkan",
                Outcome::Warn,
                "no Vulkan driver (ICD) installed: the wgpu backend has no adapter",
                "apt install mesa-vulkan-drivers (AMD/Intel) or the NVIDIA driver's Vulkan \
                 ICD; or remove \"wgpu\" from backends.allowed",
            )
        } else {
            Check::new(
                "vulkan",
                Outcome::Pass,
                format!("Vulkan drivers: {}", icds.join(", ")),
                "",
            )
        });
    }
    if allowed("cuda") {
        let lib = library_dirs(host)
            .into_iter()
            .map(|d| d.join("libcuda.so.1"))
            .find(|p| p.exists());
        let mut devices: Vec<String> = std::fs::read_dir(host.path("dev"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.strip_prefix("nvidia")
                            .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        devices.sort();
        let driver = host
            .read("proc/driver/nvidia/version")
            .and_then(|v| v.lines().next().map(str::to_string));
        out.push(match (&lib, devices.is_empty()) {
            (None, true) => Check::new(
                "cuda",
                Outcome::Warn,
                "no CUDA driver (libcuda.so.1) and no /dev/nvidia* devices: the cuda backend is \
                 off",
                "install the NVIDIA driver (apt install nvidia-driver, with libcuda1), or \
                 remove \"cuda\" from backends.allowed",
            ),
            (None, false) => Check::new(
                "cuda",
                Outcome::Fail,
                format!(
                    "NVIDIA devices {} present but libcuda.so.1 is not in any library directory",
                    devices.join(", ")
                ),
                "install the driver's user-space library (apt install libcuda1, matching the \
                 kernel module), then run ldconfig",
            ),
            (Some(l), true) => Check::new(
                "cuda",
                Outcome::Warn,
                format!(
                    "{} found but no /dev/nvidia* device nodes",
                    l.strip_prefix(&host.root).unwrap_or(l).display()
                ),
                "load the kernel module (modprobe nvidia) or check that the GPU is passed \
                 through to this host",
            ),
            (Some(l), false) => Check::new(
                "cuda",
                Outcome::Pass,
                format!(
                    "CUDA driver /{} with devices {}{}",
                    l.strip_prefix(&host.root).unwrap_or(l).display(),
                    devices.join(", "),
                    driver.map(|d| format!(" ({d})")).unwrap_or_default()
                ),
                "",
            ),
        });
    }
    out
}

/// Free space at `dir` or its nearest existing ancestor.
fn statvfs_space(dir: &Path) -> Option<DiskSpace> {
    let existing = dir.ancestors().find(|p| p.exists())?;
    let s = rustix::fs::statvfs(existing).ok()?;
    Some(DiskSpace {
        available: s.f_bavail.saturating_mul(s.f_frsize),
        total: s.f_blocks.saturating_mul(s.f_frsize),
    })
}

fn disk(host: &Host) -> Check {
    const NAME: &str = "disk";
    let dir = &host.config.appliance.data_dir;
    let Some(space) = host.disk.or_else(|| statvfs_space(dir)) else {
        return Check::new(
            NAME,
            Outcome::Fail,
            format!("cannot measure free space at {}", dir.display()),
            "create the data dir (the package creates /var/lib/epa) or fix appliance.data_dir",
        );
    };
    let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
    let outcome = if space.available < DISK_FAIL_BYTES {
        Outcome::Fail
    } else if space.available < DISK_WARN_BYTES {
        Outcome::Warn
    } else {
        Outcome::Pass
    };
    Check::new(
        NAME,
        outcome,
        format!(
            "{:.1} GiB free of {:.1} GiB at {} (want at least {} GiB)",
            gib(space.available),
            gib(space.total),
            dir.display(),
            DISK_WARN_BYTES >> 30
        ),
        "free space on that file system, or move appliance.data_dir to a larger one",
    )
}

fn clock(host: &Host) -> Check {
    const NAME: &str = "clock-sync";
    if host.path("run/systemd/timesync/synchronized").exists() {
        return Check::new(
            NAME,
            Outcome::Pass,
            "systemd-timesyncd reports the clock synchronised",
            "",
        );
    }
    for (pid, daemon) in [
        ("run/chrony/chronyd.pid", "chronyd"),
        ("var/run/chrony/chronyd.pid", "chronyd"),
        ("run/chronyd.pid", "chronyd"),
        ("run/ntpd.pid", "ntpd"),
    ] {
        if host.path(pid).exists() {
            return Check::new(NAME, Outcome::Pass, format!("{daemon} is running"), "");
        }
    }
    Check::new(
        NAME,
        Outcome::Warn,
        "no time synchronisation found (timesyncd, chronyd, ntpd): log and metric timestamps \
         drift (proofs never depend on the clock)",
        "apt install chrony (or systemctl enable --now systemd-timesyncd)",
    )
}

fn key_files(host: &Host) -> Check {
    const NAME: &str = "key-files";
    let files = crate::appliance::keys::secret_files(&host.config);
    for f in &files {
        if let Err(e) = crate::appliance::keys::require_private(f) {
            return Check::new(
                NAME,
                Outcome::Fail,
                e.to_string(),
                &format!("chmod 600 {}", f.display()),
            );
        }
    }
    Check::new(
        NAME,
        Outcome::Pass,
        format!(
            "{} secret key file(s) readable by the owner only",
            files.len()
        ),
        "",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_limit_parses_rows() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            1024                 524288               files\n\
                    Max locked memory         unlimited            unlimited            bytes\n";
        assert_eq!(soft_limit(text, "Max open files"), Some(1024));
        assert_eq!(soft_limit(text, "Max locked memory"), Some(u64::MAX));
        assert_eq!(soft_limit(text, "Max processes"), None);
    }
}
