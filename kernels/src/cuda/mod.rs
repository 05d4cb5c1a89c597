//! The CUDA backend: CUDA C kernels (`kernels/cuda/*.cu`) compiled at run time with NVRTC for
//! the device's architecture, driven through `cudarc` with the driver loaded dynamically, so
//! the crate builds and runs on machines without CUDA.
//!
//! Every kernel works on winter-math's raw Montgomery words with the integer recipes of
//! `kernels/cuda/field.cuh` and `rescue.cuh`, which are `__host__ __device__`: the host C
//! compiler builds the same helpers for the CPU checks (`tests/cuda_host.rs`), and
//! `scripts/cuda-check.sh` compiles every kernel with NVRTC and `ptxas` for sm_80 and sm_90
//! and fails on register spills, all without a GPU.
//!
//! 1. [`CudaBackend::new`] checks for the driver library (`libcuda`) and for NVRTC *before*
//!    touching the driver, and returns [`Error::NoCuda`] when either is missing or no device
//!    is present; otherwise it opens device 0 and compiles the kernels for its compute
//!    capability.
//! 2. Buffers stay on the device from upload through interpolation, LDE and row hashing to
//!    the tree; only trees, digests and queried rows come back. Transfers go through pinned
//!    host staging buffers on the backend's stream; twiddle tables and scratch buffers are
//!    kept and reused across jobs.
//! 3. Every allocation is checked against the device's memory budget first and refused with
//!    [`Error::DeviceMemory`]; every driver error becomes [`Error::Cuda`], never a panic.
//!
//! Both commitments (`Rp64_256` and BLAKE3-256) hash rows and build the tree on the device; a
//! BLAKE3 row wider than the kernel's chunk stack (2^31 elements) is hashed on the CPU and only
//! its tree is built on the device.

mod mlkem;
mod ops;

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use cudarc::{
    driver::{
        CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DriverError, PinnedHostSlice,
    },
    nvrtc::{CompileError, CompileOptions, Ptx},
};

use crate::{CpuBackend, Error};

pub use ops::{CudaColumns, CudaRows, CudaTree, dif_passes, lde_shift_tables};

/// The CUDA C headers, by the name the kernels `#include` them under.
const HEADERS: &[(&str, &str)] = &[
    ("field.cuh", include_str!("../../cuda/field.cuh")),
    ("rescue.cuh", include_str!("../../cuda/rescue.cuh")),
    ("blake3.cuh", include_str!("../../cuda/blake3.cuh")),
    ("ntt.cuh", include_str!("../../cuda/ntt.cuh")),
];

/// The CUDA C translation units of the NTT / LDE / Merkle kernels.
const UNITS: &[(&str, &str)] = &[
    ("ntt.cu", include_str!("../../cuda/ntt.cu")),
    ("merkle.cu", include_str!("../../cuda/merkle.cu")),
];

/// One CUDA C translation unit with its `#include "…"` lines replaced by the headers: what
/// NVRTC compiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    /// File name under `kernels/cuda/`, e.g. `ntt.cu`.
    pub name: &'static str,
    /// The self-contained source.
    pub code: String,
}

/// Every kernel translation unit of the backend, self-contained (headers inlined): what
/// [`CudaBackend::new`] compiles and what `scripts/cuda-check.sh` checks with `ptxas`.
pub fn kernel_sources() -> Result<Vec<KernelSource>, Error> {
    let headers: Vec<(&str, &str)> = HEADERS.iter().chain(mlkem::HEADERS).copied().collect();
    UNITS
        .iter()
        .chain(mlkem::UNITS)
        .map(|&(name, code)| {
            Ok(KernelSource {
                name,
                code: expand_includes(name, code, &headers, 0)?,
            })
        })
        .collect()
}

/// Replaces each `#include "name"` line by the named header (recursively; the headers carry
/// include guards, so a header included twice expands to nothing the second time).
fn expand_includes(
    unit: &str,
    code: &str,
    headers: &[(&str, &str)],
    depth: u32,
) -> Result<String, Error> {
    if depth > 8 {
        return Err(compile_err(unit, "none", "#include nesting deeper than 8"));
    }
    let mut out = String::with_capacity(code.len());
    for line in code.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("#include \"") {
            let name = rest.split('"').next().unwrap_or_default();
            let header = headers
                .iter()
                .find(|(n, _)| *n == name)
                .ok_or_else(|| compile_err(unit, "none", &format!("unknown header {name:?}")))?;
            out.push_str(&expand_includes(unit, header.1, headers, depth + 1)?);
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    Ok(out)
}

fn compile_err(unit: &str, arch: &str, detail: &str) -> Error {
    Error::Cuda {
        device: "nvrtc".to_owned(),
        what: format!("compiling {unit} for {arch}"),
        detail: detail.to_owned(),
    }
}

/// Virtual architectures the kernels are compiled for (NVRTC option `--gpu-architecture`),
/// by compute capability; the driver JIT-compiles the PTX for the exact device.
const ARCHES: &[((i32, i32), &str)] = &[
    ((7, 0), "compute_70"),
    ((7, 5), "compute_75"),
    ((8, 0), "compute_80"),
    ((8, 6), "compute_86"),
    ((8, 9), "compute_89"),
    ((9, 0), "compute_90"),
    ((10, 0), "compute_100"),
    ((12, 0), "compute_120"),
];

/// The newest virtual architecture the kernels are compiled for (`compute_70` .. `compute_120`)
/// not above the compute capability `cc`; `None` below 7.0.
pub fn arch_for(cc: (i32, i32)) -> Option<&'static str> {
    ARCHES.iter().rev().find(|(c, _)| *c <= cc).map(|&(_, a)| a)
}

/// Whether NVRTC (`libnvrtc.so.12`) can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the NVRTC shared library by its usual names (dlopen); no
    // symbol is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether the CUDA driver library (`libcuda.so`) can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the driver library by its usual names (dlopen); no symbol
    // is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Compiles one self-contained translation unit to PTX for a virtual architecture such as
/// `compute_90`, with NVRTC. Needs no GPU, only `libnvrtc`; [`Error::NoCuda`] without it,
/// [`Error::Cuda`] with the compiler log on a compilation error.
pub fn compile_ptx(source: &KernelSource, arch: &'static str) -> Result<Ptx, Error> {
    if !nvrtc_present() {
        return Err(Error::NoCuda {
            detail: "NVRTC (libnvrtc.so.12) not found on the library path".to_owned(),
        });
    }
    let opts = CompileOptions {
        arch: Some(arch),
        name: Some(source.name.to_owned()),
        options: vec!["--std=c++14".to_owned()],
        ..Default::default()
    };
    let code = source.code.as_str();
    let res = catch_unwind(move || cudarc::nvrtc::compile_ptx_with_opts(code, opts))
        .map_err(|_| compile_err(source.name, arch, "NVRTC panicked (a symbol is missing?)"))?;
    res.map_err(|e| match e {
        CompileError::CompileError { log, .. } => {
            compile_err(source.name, arch, log.to_string_lossy().trim())
        }
        other => compile_err(source.name, arch, &other.to_string()),
    })
}

/// The kernel entry points, loaded from the compiled modules.
pub(crate) struct Functions {
    pub(crate) dif_pass: CudaFunction,
    pub(crate) bitrev_scale: CudaFunction,
    pub(crate) bitrev_tiled: CudaFunction,
    pub(crate) lde_prep: CudaFunction,
    pub(crate) lde_transpose: CudaFunction,
    pub(crate) hash_rows: CudaFunction,
    pub(crate) merge_level: CudaFunction,
    pub(crate) b3_hash_rows: CudaFunction,
    pub(crate) b3_merge_level: CudaFunction,
}

/// Device twiddle tables by `(log2 n, inverse)`.
type TwiddleCache = HashMap<(u32, bool), Arc<CudaSlice<u64>>>;

/// The CUDA backend on one device.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// The device's name as the driver reports it.
    device_name: String,
    /// The driver's CUDA version, e.g. `12.8`.
    driver_version: String,
    /// Compute capability.
    cc: (i32, i32),
    /// Total device memory in bytes.
    total_mem: u64,
    /// Bytes this backend may hold at once (buffers of live matrices and trees plus scratch).
    budget: u64,
    /// The modules, kept alive for their functions.
    _modules: Vec<Arc<CudaModule>>,
    pub(crate) f: Functions,
    /// Twiddle tables by `(log2 n, inverse)`, kept across jobs.
    twiddles: Mutex<TwiddleCache>,
    /// Scratch buffers returned by finished operations, reused by the next (by length).
    pool: Mutex<Vec<CudaSlice<u64>>>,
    /// Pinned host staging buffers for large transfers, reused by length.
    pinned: Mutex<Vec<PinnedHostSlice<u64>>>,
    /// The CPU backend for the operations without a CUDA kernel.
    cpu: OnceLock<CpuBackend>,
    /// The ML-KEM kernels, compiled on first use (`mlkem.rs`).
    mlkem: OnceLock<mlkem::MlkemKernels>,
    /// Set by the first driver error of an operation.
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.device_name)
            .field("compute_capability", &self.cc)
            .field("driver", &self.driver_version)
            .finish_non_exhaustive()
    }
}

/// Share of the device memory the backend budgets for its buffers by default.
const BUDGET_PERCENT: u64 = 85;

impl CudaBackend {
    /// The backend on device 0: [`Error::NoCuda`] when the driver library, a device or NVRTC
    /// is missing, [`Error::Cuda`] when the driver or the kernel compilation fails.
    pub fn new() -> Result<Self, Error> {
        Self::on_device(0)
    }

    /// The backend on device `ordinal`.
    pub fn on_device(ordinal: usize) -> Result<Self, Error> {
        if !driver_present() {
            return Err(Error::NoCuda {
                detail: "the CUDA driver library (libcuda.so) is not installed".to_owned(),
            });
        }
        if !nvrtc_present() {
            return Err(Error::NoCuda {
                detail: "NVRTC (libnvrtc.so.12), needed to compile the kernels, not found"
                    .to_owned(),
            });
        }
        let no_dev = |e: String| Error::NoCuda {
            detail: format!("the driver reports no usable device {ordinal}: {e}"),
        };
        let count = catch_unwind(CudaContext::device_count)
            .map_err(|_| no_dev("cuDeviceGetCount is missing from the driver".to_owned()))?
            .map_err(|e| no_dev(e.to_string()))?;
        if count <= 0 || ordinal >= count as usize {
            return Err(no_dev(format!("{count} devices")));
        }
        let ctx = catch_unwind(|| CudaContext::new(ordinal))
            .map_err(|_| no_dev("a driver symbol is missing (driver too old?)".to_owned()))?
            .map_err(|e| no_dev(e.to_string()))?;
        let device_name = ctx
            .name()
            .unwrap_or_else(|_| format!("CUDA device {ordinal}"));
        let drv = |what: &str| {
            let name = device_name.clone();
            let what = what.to_owned();
            move |e: DriverError| Error::Cuda {
                device: name.clone(),
                what: what.clone(),
                detail: e.to_string(),
            }
        };
        let cc = ctx
            .compute_capability()
            .map_err(drv("reading the compute capability"))?;
        let total_mem = ctx
            .total_mem()
            .map_err(drv("reading the device memory size"))? as u64;
        let driver_version = driver_version();
        let arch = arch_for(cc).ok_or_else(|| Error::NoCuda {
            detail: format!(
                "{device_name} has compute capability {}.{}, below the 7.0 the kernels need",
                cc.0, cc.1
            ),
        })?;
        let stream = ctx.new_stream().map_err(drv("creating a stream"))?;
        let mut modules = Vec::new();
        let mut load = |unit: &str| -> Result<Arc<CudaModule>, Error> {
            let src = kernel_sources()?
                .into_iter()
                .find(|s| s.name == unit)
                .ok_or_else(|| compile_err(unit, arch, "no such translation unit"))?;
            let ptx = compile_ptx(&src, arch)?;
            let m = ctx
                .load_module(ptx)
                .map_err(drv(&format!("loading the module {unit}")))?;
            modules.push(Arc::clone(&m));
            Ok(m)
        };
        let ntt = load("ntt.cu")?;
        let merkle = load("merkle.cu")?;
        let func = |m: &Arc<CudaModule>, name: &str| {
            m.load_function(name)
                .map_err(drv(&format!("loading the kernel {name}")))
        };
        let f = Functions {
            dif_pass: func(&ntt, "ntt_dif_pass")?,
            bitrev_scale: func(&ntt, "ntt_bitrev_scale")?,
            bitrev_tiled: func(&ntt, "ntt_bitrev_tiled")?,
            lde_prep: func(&ntt, "lde_prep")?,
            lde_transpose: func(&ntt, "lde_transpose")?,
            hash_rows: func(&merkle, "rp_hash_rows")?,
            merge_level: func(&merkle, "rp_merge_level")?,
            b3_hash_rows: func(&merkle, "b3_hash_rows")?,
            b3_merge_level: func(&merkle, "b3_merge_level")?,
        };
        Ok(Self {
            ctx,
            stream,
            device_name,
            driver_version,
            cc,
            total_mem,
            budget: total_mem / 100 * BUDGET_PERCENT,
            _modules: modules,
            f,
            twiddles: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            pinned: Mutex::new(Vec::new()),
            cpu: OnceLock::new(),
            failed: Arc::new(AtomicBool::new(false)),
            mlkem: OnceLock::new(),
        })
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// The device's compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// Bytes of device memory this backend budgets for its buffers.
    pub fn memory_budget(&self) -> u64 {
        self.budget
    }

    /// Sets the memory budget (at most the device's memory): operations whose buffers would
    /// exceed it are refused with [`Error::DeviceMemory`]. For sharing a device between
    /// workers and for tests of the refusal.
    pub fn set_memory_budget(&mut self, bytes: u64) {
        self.budget = bytes.min(self.total_mem);
    }

    /// The stream every operation of this backend runs on.
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The context of the device.
    pub(crate) fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Maps a driver error during `what` to [`Error::Cuda`].
    /// Every such error also marks the backend as failed ([`CudaBackend::has_failed`]).
    pub(crate) fn drv(&self, what: &str) -> impl Fn(DriverError) -> Error + use<> {
        let device = self.device_name.clone();
        let what = what.to_owned();
        let failed = Arc::clone(&self.failed);
        move |e| {
            failed.store(true, Ordering::Relaxed);
            Error::Cuda {
                device: device.clone(),
                what: what.clone(),
                detail: e.to_string(),
            }
        }
    }

    /// Whether a driver call of this backend has failed since it was opened. A CUDA context
    /// that saw a kernel fault stays unusable, so its owner should take the backend out of
    /// service (and prove on another backend) rather than retry on it.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// Compiles and loads one more translation unit of [`kernel_sources`] (for kernels loaded
    /// on first use, such as ML-KEM's).
    pub(crate) fn load_unit(&self, unit: &str) -> Result<Arc<CudaModule>, Error> {
        let arch = arch_for(self.cc).unwrap_or("compute_70");
        let src = kernel_sources()?
            .into_iter()
            .find(|s| s.name == unit)
            .ok_or_else(|| compile_err(unit, arch, "no such translation unit"))?;
        let ptx = compile_ptx(&src, arch)?;
        self.ctx
            .load_module(ptx)
            .map_err(self.drv(&format!("loading the module {unit}")))
    }

    fn cpu(&self) -> Result<&CpuBackend, Error> {
        if let Some(c) = self.cpu.get() {
            return Ok(c);
        }
        let c = CpuBackend::with_isa(crate::Isa::best())?;
        Ok(self.cpu.get_or_init(|| c))
    }
}

/// The driver's CUDA version as `major.minor`, or `unknown`.
fn driver_version() -> String {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: `cuDriverGetVersion` writes one int through the valid pointer; the driver
    // library is present (checked by the caller) and initialised by the context creation.
    let r = catch_unwind(AssertUnwindSafe(|| unsafe {
        cudarc::driver::sys::cuDriverGetVersion(&mut v)
    }));
    match r {
        Ok(cudarc::driver::sys::CUresult::CUDA_SUCCESS) => {
            format!("CUDA {}.{}", v / 1000, (v % 1000) / 10)
        }
        _ => "CUDA driver (version unknown)".to_owned(),
    }
}
