//! The portable GPU backend: WGSL compute shaders through wgpu (Vulkan, Metal, DX12).
//!
//! Every kernel works on winter-math's raw Montgomery words and repeats its integer steps, so
//! results are bit-exact with the CPU backend and with winter-math / winter-crypto. The
//! shaders need 64-bit integers (`SHADER_INT64`); products are assembled from 32-bit halves.
//!
//! 1. [`WgpuBackend::new`] picks the first adapter with `SHADER_INT64` (a discrete GPU before
//!    an integrated one before a software driver such as Mesa's lavapipe), or returns
//!    [`Error::NoAdapter`].
//! 2. Buffers stay on the device from upload through NTT, LDE and row hashing to the tree;
//!    only digests, trees and queried rows come back.
//! 3. Matrices are split into chunks, one device buffer each, so that no buffer exceeds the
//!    buffer budget ([`WgpuBackend::with_buffer_budget`], by default the device's storage
//!    binding limit): column matrices into column groups, row matrices into row ranges, and
//!    the LDE works one column group at a time. A matrix above the memory budget
//!    ([`WgpuBackend::with_memory_budget`]) or a single column or row above the device's
//!    buffer limit is refused with [`Error::DeviceMemory`] naming the limit; any device error
//!    (validation, out of memory, lost device) becomes [`Error::Gpu`], never a panic.
//!
//! Both commitment hashes run on the device: `Rp64_256` and BLAKE3-256 (row hashing with
//! BLAKE3's chunk tree for rows over 1024 bytes, and 2-to-1 merging), bit-exact with
//! winter-crypto's `Rp64_256` and `Blake3_256<BaseElement>`.

use std::{
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex, OnceLock, mpsc},
};

use winter_crypto::{
    Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

use crate::device_words::{b3_finish, elements_of, rp_digests, rp_finish, rp_leaf_words, words_of};
use crate::{
    CpuBackend, Error, Isa,
    backend::{Backend, BackendInfo, Capabilities, ColumnMatrix, Device, RowMatrix, check_len},
    cpu::ntt,
};

mod mlkem;

const FIELD: &str = include_str!("shaders/field.wgsl");
const NTT_STAGE: &str = include_str!("shaders/ntt_stage.wgsl");
const NTT_LOCAL: &str = include_str!("shaders/ntt_local.wgsl");
const PERMUTE: &str = include_str!("shaders/permute.wgsl");
const LDE_PREP: &str = include_str!("shaders/lde_prep.wgsl");
const TRANSPOSE: &str = include_str!("shaders/transpose.wgsl");
const RESCUE: &str = include_str!("shaders/rescue.wgsl");
const HASH_ROWS: &str = include_str!("shaders/hash_rows.wgsl");
const MERGE: &str = include_str!("shaders/merge.wgsl");
const BLAKE3: &str = include_str!("shaders/blake3.wgsl");
const BLAKE3_ROWS: &str = include_str!("shaders/blake3_rows.wgsl");
const BLAKE3_MERGE: &str = include_str!("shaders/blake3_merge.wgsl");

/// Widest row the BLAKE3 row kernel hashes (its chaining-value stack holds 16 levels, 2^16
/// chunks of 128 elements); wider rows are committed on the CPU backend.
const BLAKE3_MAX_WIDTH: usize = 128 << 16;

/// Invocations per workgroup of every kernel (the `@workgroup_size` in the shaders).
const WORKGROUP: u64 = 64;

/// Words of the workgroup-memory block of `ntt_local.wgsl` (16 KiB, the WebGPU minimum of
/// `max_compute_workgroup_storage_size`).
const LOCAL_NTT_WORDS: usize = 2048;

/// Bytes of one Goldilocks element.
const WORD: u64 = 8;

/// The compute pipelines, one per kernel entry point.
struct Pipelines {
    dif: wgpu::ComputePipeline,
    dit: wgpu::ComputePipeline,
    dif_local: wgpu::ComputePipeline,
    dit_local: wgpu::ComputePipeline,
    dif2: wgpu::ComputePipeline,
    dit2: wgpu::ComputePipeline,
    bitrev: wgpu::ComputePipeline,
    scale: wgpu::ComputePipeline,
    lde_prep: wgpu::ComputePipeline,
    transpose: wgpu::ComputePipeline,
    hash_rows: wgpu::ComputePipeline,
    merge: wgpu::ComputePipeline,
    blake3_rows: wgpu::ComputePipeline,
    blake3_merge: wgpu::ComputePipeline,
}

/// The portable GPU backend.
pub struct WgpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pipelines: Pipelines,
    /// Rescue constants: MDS row, ARK1, ARK2 (180 words).
    rescue: wgpu::Buffer,
    /// The reason the device was lost, once it is.
    lost: Arc<Mutex<Option<String>>>,
    /// Errors that escaped every error scope.
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// The CPU backend for BLAKE3 rows wider than the kernel's limit.
    cpu: OnceLock<CpuBackend>,
    /// Largest chunk (device buffer) of a matrix the backend aims for, in bytes.
    buffer_budget: u64,
    /// Largest matrix (all its chunks together) the backend accepts, in bytes.
    memory_budget: u64,
    /// The ML-KEM-768 decapsulation kernel, compiled on first use.
    mlkem: OnceLock<mlkem::Kernels>,
    /// Twiddle tables and LDE shift powers on the device, built once per shape (a 2^24 table
    /// is 128 MiB of host work and upload, far more than the transform itself).
    twiddle_cache: Mutex<TwiddleCache>,
}

/// What a cached table holds: NTT twiddles of a size (forward or inverse), or the LDE shift
/// powers of a size, blowup and coset offset (its canonical value).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    Twiddles {
        n: usize,
        inverse: bool,
    },
    ShiftPowers {
        n: usize,
        blowup: usize,
        offset: u64,
    },
}

/// Device tables kept between calls, within [`TWIDDLE_CACHE_BYTES`] (all dropped when a new
/// one would not fit).
#[derive(Default)]
struct TwiddleCache {
    tables: std::collections::HashMap<Table, wgpu::Buffer>,
    bytes: u64,
}

/// Device memory the table cache may hold (twiddles of every size up to 2^24 in both
/// directions, plus the shift powers of a 2^20-row, blowup-8 LDE).
const TWIDDLE_CACHE_BYTES: u64 = 640 << 20;

impl fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("adapter", &self.adapter.name)
            .field("driver", &self.adapter.driver)
            .field("api", &self.adapter.backend)
            .finish_non_exhaustive()
    }
}

/// One device buffer of a chunked matrix: `count` columns of a column matrix or `count` rows
/// of a row matrix.
#[derive(Debug)]
struct Part {
    buf: wgpu::Buffer,
    count: usize,
}

/// A column-major matrix resident on the device, in column groups (one buffer each, every
/// group but the last of the same width) that keep each buffer within the buffer budget.
#[derive(Debug)]
pub struct WgpuColumns {
    parts: Vec<Part>,
    num_rows: usize,
    num_cols: usize,
}

impl WgpuColumns {
    /// Number of rows (the length of every column).
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns.
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }

    /// Number of column groups (device buffers) the matrix is split into.
    pub fn num_chunks(&self) -> usize {
        self.parts.len()
    }
}

/// A row-major matrix resident on the device, in row ranges of `rows_per_part` rows (a power
/// of two; one buffer each) that keep each buffer within the buffer budget.
#[derive(Debug)]
pub struct WgpuRows {
    parts: Vec<Part>,
    rows_per_part: usize,
    num_rows: usize,
    num_cols: usize,
}

impl WgpuRows {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns (elements per row).
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }

    /// Number of row ranges (device buffers) the matrix is split into.
    pub fn num_chunks(&self) -> usize {
        self.parts.len()
    }
}

/// A Merkle tree: on the device, or already on the host (BLAKE3 rows wider than the kernel's
/// limit, committed by the CPU backend).
pub struct WgpuTree<H: Hasher> {
    inner: TreeInner<H>,
}

/// Turns downloaded node and leaf words into winter-crypto's tree.
type Finish<H> = fn(Vec<u64>, Vec<u64>) -> Result<MerkleTree<H>, Error>;

enum TreeInner<H: Hasher> {
    Device {
        leaves: wgpu::Buffer,
        nodes: wgpu::Buffer,
        num_leaves: usize,
        finish: Finish<H>,
        _hasher: PhantomData<H>,
    },
    Host(MerkleTree<H>),
}

impl<H: Hasher> fmt::Debug for WgpuTree<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            TreeInner::Device { num_leaves, .. } => f
                .debug_struct("WgpuTree::Device")
                .field("leaves", num_leaves)
                .finish_non_exhaustive(),
            TreeInner::Host(t) => f
                .debug_struct("WgpuTree::Host")
                .field("leaves", &t.leaves().len())
                .finish(),
        }
    }
}

/// `BaseElement::new(k)` as its raw word, split into two `u32` halves for a uniform.
fn word_halves(w: u64) -> [u32; 2] {
    [w as u32, (w >> 32) as u32]
}

/// Order in which adapters are preferred: real GPUs first.
fn device_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

impl WgpuBackend {
    /// The backend on the best adapter with 64-bit shader integers (backends from `WGPU_BACKEND`
    /// when set, else Vulkan, Metal and DX12).
    pub fn new() -> Result<Self, Error> {
        let backends = desc_backends();
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let mut adapters = pollster::block_on(instance.enumerate_adapters(backends));
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                detail: "no adapter at all".to_owned(),
            });
        }
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        adapters.retain(|a| a.features().contains(wgpu::Features::SHADER_INT64));
        adapters.sort_by_key(|a| device_rank(a.get_info().device_type));
        let adapter = adapters
            .into_iter()
            .next()
            .ok_or_else(|| Error::NoAdapter {
                detail: format!("adapters without SHADER_INT64: {}", names.join(", ")),
            })?;
        Self::on_adapter(adapter)
    }

    /// The backend on a given adapter (which must offer `SHADER_INT64`).
    pub fn on_adapter(adapter: wgpu::Adapter) -> Result<Self, Error> {
        let info = adapter.get_info();
        if !adapter.features().contains(wgpu::Features::SHADER_INT64) {
            return Err(Error::NoAdapter {
                detail: format!("{} lacks SHADER_INT64", info.name),
            });
        }
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("epa-kernels"),
            required_features: wgpu::Features::SHADER_INT64,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| Error::Gpu {
                adapter: info.name.clone(),
                what: "opening the device".to_owned(),
                detail: e.to_string(),
            })?;
        let lost = Arc::new(Mutex::new(None));
        let lost_cb = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, msg| {
            let mut g = lost_cb.lock().unwrap_or_else(|e| e.into_inner());
            *g = Some(format!("{reason:?}: {msg}"));
        });
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let unc = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            unc.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(e.to_string());
        }));

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = |name: &str, parts: &[&str]| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(parts.concat().into()),
            })
        };
        let ntt_m = module("ntt_stage", &[FIELD, NTT_STAGE]);
        let ntt_local_m = module("ntt_local", &[FIELD, NTT_LOCAL]);
        let perm_m = module("permute", &[FIELD, PERMUTE]);
        let prep_m = module("lde_prep", &[FIELD, LDE_PREP]);
        let tr_m = module("transpose", &[FIELD, TRANSPOSE]);
        let hash_m = module("hash_rows", &[FIELD, RESCUE, HASH_ROWS]);
        let merge_m = module("merge", &[FIELD, RESCUE, MERGE]);
        let b3_rows_m = module("blake3_rows", &[FIELD, BLAKE3, BLAKE3_ROWS]);
        let b3_merge_m = module("blake3_merge", &[FIELD, BLAKE3, BLAKE3_MERGE]);
        let pipe = |m: &wgpu::ShaderModule, entry: &str| {
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: None,
                module: m,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let pipelines = Pipelines {
            dif: pipe(&ntt_m, "dif"),
            dit: pipe(&ntt_m, "dit"),
            dif_local: pipe(&ntt_local_m, "dif_local"),
            dif2: pipe(&ntt_m, "dif2"),
            dit2: pipe(&ntt_m, "dit2"),
            dit_local: pipe(&ntt_local_m, "dit_local"),
            bitrev: pipe(&perm_m, "bitrev"),
            scale: pipe(&perm_m, "scale"),
            lde_prep: pipe(&prep_m, "lde_prep"),
            transpose: pipe(&tr_m, "transpose"),
            hash_rows: pipe(&hash_m, "hash_rows"),
            merge: pipe(&merge_m, "merge"),
            blake3_rows: pipe(&b3_rows_m, "blake3_rows"),
            blake3_merge: pipe(&b3_merge_m, "blake3_merge"),
        };
        let mut rc = Vec::with_capacity(180);
        rc.extend(Rp64_256::MDS[0].iter().map(|m| m.as_int()));
        for ark in [&Rp64_256::ARK1, &Rp64_256::ARK2] {
            for round in ark.iter() {
                rc.extend(round.iter().map(|e| e.inner()));
            }
        }
        let rescue = wgpu::util::DeviceExt::create_buffer_init(
            &device,
            &wgpu::util::BufferInitDescriptor {
                label: Some("rescue constants"),
                contents: bytemuck::cast_slice(&rc),
                usage: wgpu::BufferUsages::STORAGE,
            },
        );
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu {
                adapter: info.name.clone(),
                what: "compiling the WGSL kernels".to_owned(),
                detail: e.to_string(),
            });
        }
        let buffer_budget = hard_buffer_limit(&limits);
        let memory_budget = limits.max_buffer_size.min(MAX_WORDS * WORD);
        Ok(Self {
            device,
            queue,
            adapter: info,
            limits,
            pipelines,
            rescue,
            lost,
            uncaptured,
            cpu: OnceLock::new(),
            buffer_budget,
            memory_budget,
            mlkem: OnceLock::new(),
            twiddle_cache: Mutex::new(TwiddleCache::default()),
        })
    }

    /// The adapter this backend runs on (name, driver, graphics API, device type).
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.adapter
    }

    /// The device limits this backend works within.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether the adapter is a software implementation on the CPU (such as Mesa's lavapipe):
    /// correct, but slower than the CPU backend, so not a backend to prefer for speed.
    pub fn is_software(&self) -> bool {
        self.adapter.device_type == wgpu::DeviceType::Cpu
    }

    /// Whether the device has been lost (destroyed, reset by the driver): every later
    /// operation fails with [`Error::Gpu`], and a new backend must be opened.
    pub fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Destroys the device, as a driver reset or a failing GPU would: every later operation
    /// returns [`Error::Gpu`]. For taking a device out of service and for fault-injection
    /// tests.
    pub fn destroy(&self) {
        *self.lost.lock().unwrap_or_else(|e| e.into_inner()) =
            Some("destroyed by its owner".to_owned());
        self.device.destroy();
    }

    /// Largest buffer this backend creates, in bytes: the smaller of the buffer size and the
    /// storage binding limits.
    pub fn max_buffer_bytes(&self) -> u64 {
        hard_buffer_limit(&self.limits)
    }

    /// Sets the buffer budget: matrices are split into chunks (column groups, row ranges) of at
    /// most `bytes` each, the LDE works on column groups of at most `bytes`. It is capped at
    /// [`WgpuBackend::max_buffer_bytes`]; a single column or row larger than the budget is one
    /// chunk on its own (refused only above the device's buffer limit).
    pub fn with_buffer_budget(mut self, bytes: u64) -> Self {
        self.buffer_budget = bytes.clamp(WORD, self.max_buffer_bytes());
        self
    }

    /// Sets the memory budget: the largest matrix (all its chunks together) an operation
    /// accepts, in bytes; larger work is refused with [`Error::DeviceMemory`] before any
    /// allocation. Defaults to the adapter's maximum buffer size, at most 32 GiB (2^32 words,
    /// the kernels' 32-bit indexing of one dispatch's rows).
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        self.memory_budget = bytes.clamp(WORD, MAX_WORDS * WORD);
        self
    }

    /// The buffer budget in bytes (see [`WgpuBackend::with_buffer_budget`]).
    pub fn buffer_budget(&self) -> u64 {
        self.buffer_budget
    }

    /// The memory budget in bytes (see [`WgpuBackend::with_memory_budget`]).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    /// Checks a whole matrix of `words` against the memory budget.
    fn check_total(&self, what: &'static str, words: usize) -> Result<(), Error> {
        let bytes = (words as u64).saturating_mul(WORD);
        if bytes > self.memory_budget {
            return Err(Error::DeviceMemory {
                what,
                bytes,
                limit: self.memory_budget,
            });
        }
        Ok(())
    }

    /// Columns per column group: as many columns of `num_rows` as fit the buffer budget, at
    /// least one, at most `num_cols`.
    fn cols_per_part(&self, num_rows: usize, num_cols: usize) -> usize {
        let per_col = (num_rows as u64).saturating_mul(WORD).max(1);
        usize::try_from(self.buffer_budget / per_col)
            .unwrap_or(usize::MAX)
            .clamp(1, num_cols.max(1))
    }

    /// Rows per row range: the largest power of two of rows of `num_cols` that fits the buffer
    /// budget, at least one, at most `num_rows` (a power of two, so ranges tile it).
    fn rows_per_part(&self, num_rows: usize, num_cols: usize) -> usize {
        let per_row = (num_cols as u64).saturating_mul(WORD).max(1);
        let fit = (self.buffer_budget / per_row).max(1);
        usize::try_from(1u64 << fit.ilog2())
            .unwrap_or(usize::MAX)
            .min(num_rows.max(1))
    }

    /// Uploads `words` as chunks of `chunk` words each (the last may be shorter).
    fn upload_parts(
        &self,
        what: &'static str,
        words: &[u64],
        chunk: usize,
        per_item: usize,
    ) -> Result<Vec<Part>, Error> {
        words
            .chunks(chunk.max(1))
            .map(|c| {
                Ok(Part {
                    buf: self.upload(what, c)?,
                    count: c.len() / per_item.max(1),
                })
            })
            .collect()
    }

    /// Reads every chunk back, in order.
    fn read_parts(&self, parts: &[Part], per_item: usize) -> Result<Vec<u64>, Error> {
        let mut out = Vec::new();
        for p in parts {
            out.extend(self.read_all(&p.buf, p.count * per_item)?);
        }
        Ok(out)
    }

    fn gpu_err(&self, what: &str, detail: impl Into<String>) -> Error {
        Error::Gpu {
            adapter: self.adapter.name.clone(),
            what: what.to_owned(),
            detail: detail.into(),
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes; any device error during it
    /// (or a lost device) becomes [`Error::Gpu`].
    fn guarded<T>(&self, what: &str, f: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
        self.check_alive(what)?;
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(self.gpu_err(what, e.to_string()));
        }
        self.check_alive(what)?;
        out
    }

    fn check_alive(&self, what: &str) -> Result<(), Error> {
        if let Some(reason) = self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            return Err(self.gpu_err(what, format!("device lost ({reason})")));
        }
        let mut unc = self.uncaptured.lock().unwrap_or_else(|e| e.into_inner());
        if !unc.is_empty() {
            let detail = unc.join("; ");
            unc.clear();
            return Err(self.gpu_err(what, detail));
        }
        Ok(())
    }

    /// Checks a buffer size against the device limits.
    fn check_bytes(&self, what: &'static str, words: usize) -> Result<u64, Error> {
        let bytes = (words as u64).saturating_mul(WORD).max(WORD);
        let limit = self.max_buffer_bytes();
        // Kernels index words with 32-bit integers.
        let limit = limit.min(u64::from(u32::MAX) * WORD);
        if bytes > limit {
            return Err(Error::DeviceMemory { what, bytes, limit });
        }
        Ok(bytes)
    }

    fn storage(&self, what: &'static str, words: usize) -> Result<wgpu::Buffer, Error> {
        let size = self.check_bytes(what, words)?;
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(what),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    fn upload(&self, what: &'static str, words: &[u64]) -> Result<wgpu::Buffer, Error> {
        let buf = self.storage(what, words.len())?;
        if !words.is_empty() {
            self.queue
                .write_buffer(&buf, 0, bytemuck::cast_slice(words));
        }
        Ok(buf)
    }

    /// A uniform buffer with the params words. Created empty and written through the queue:
    /// `create_buffer_init` panics on a lost device, a queue write reports an error instead.
    fn uniform(&self, params: &[u32]) -> wgpu::Buffer {
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: (params.len() * 4) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue
            .write_buffer(&buf, 0, bytemuck::cast_slice(params));
        buf
    }

    /// Workgroup grid covering `threads` invocations within the per-dimension limit.
    fn grid(&self, threads: u64) -> (u32, u32) {
        let groups = threads.div_ceil(WORKGROUP).max(1);
        let max = u64::from(self.limits.max_compute_workgroups_per_dimension.max(1));
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        (x as u32, y as u32)
    }

    /// Encodes and submits a sequence of dispatches (each: pipeline, storage buffers in binding
    /// order, params, invocations) and waits for them.
    fn dispatch(&self, work: &[Dispatch<'_>]) -> Result<(), Error> {
        let groups: Vec<(wgpu::BindGroup, (u32, u32))> = work
            .iter()
            .map(|d| {
                let params = self.uniform(&d.params);
                let mut entries: Vec<wgpu::BindGroupEntry<'_>> = d
                    .buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: b.as_entire_binding(),
                    })
                    .collect();
                entries.push(wgpu::BindGroupEntry {
                    binding: d.buffers.len() as u32,
                    resource: params.as_entire_binding(),
                });
                let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &d.pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                (bg, self.grid(d.threads))
            })
            .collect();
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            for (d, (bg, (x, y))) in work.iter().zip(&groups) {
                pass.set_pipeline(d.pipeline);
                pass.set_bind_group(0, bg, &[]);
                pass.dispatch_workgroups(*x, *y, 1);
            }
        }
        self.queue.submit([enc.finish()]);
        self.wait()
    }

    fn wait(&self) -> Result<(), Error> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| self.gpu_err("waiting for the device", e.to_string()))
    }

    /// Copies byte ranges `(offset, len)` of `src` back to the host as words, in one submit.
    fn read_back(&self, src: &wgpu::Buffer, ranges: &[(u64, u64)]) -> Result<Vec<u64>, Error> {
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        if total == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut at = 0;
        for &(off, len) in ranges {
            enc.copy_buffer_to_buffer(src, off, &staging, at, len);
            at += len;
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            // The receiver lives until the poll below returns.
            let _ = tx.send(r);
        });
        // Another thread polling the same device may be the one running this map's callback
        // when our poll returns: keep polling until the callback has reported, within a bound.
        let deadline = std::time::Instant::now() + MAP_TIMEOUT;
        loop {
            self.wait()?;
            match rx.recv_timeout(std::time::Duration::from_millis(10)) {
                Ok(Ok(())) => break,
                Ok(Err(e)) => {
                    return Err(self.gpu_err("mapping a readback buffer", e.to_string()));
                }
                Err(mpsc::RecvTimeoutError::Timeout) if std::time::Instant::now() < deadline => {}
                Err(_) => {
                    return Err(self.gpu_err(
                        "mapping a readback buffer",
                        "the map did not complete within 30 s of the device being idle",
                    ));
                }
            }
        }
        let words = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| self.gpu_err("reading a readback buffer", e.to_string()))?;
            bytemuck::pod_collect_to_vec::<u8, u64>(&view)
        };
        staging.unmap();
        Ok(words)
    }

    fn read_all(&self, src: &wgpu::Buffer, words: usize) -> Result<Vec<u64>, Error> {
        self.read_back(src, &[(0, words as u64 * WORD)])
    }

    fn twiddles(&self, n: usize, inverse: bool) -> Result<wgpu::Buffer, Error> {
        let n = n.max(2);
        self.cached_table(Table::Twiddles { n, inverse }, || {
            let t = ntt::Twiddles::new(n);
            if inverse { t.inv } else { t.fwd }
        })
    }

    /// The device copy of a table, built on the host and uploaded on first use.
    fn cached_table(
        &self,
        key: Table,
        build: impl FnOnce() -> Vec<u64>,
    ) -> Result<wgpu::Buffer, Error> {
        let mut cache = self.twiddle_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(buf) = cache.tables.get(&key) {
            return Ok(buf.clone());
        }
        let words = build();
        let what = match key {
            Table::Twiddles { .. } => "twiddles",
            Table::ShiftPowers { .. } => "LDE shift powers",
        };
        let buf = self.upload(what, &words)?;
        let bytes = words.len() as u64 * WORD;
        if cache.bytes + bytes > TWIDDLE_CACHE_BYTES {
            cache.tables.clear();
            cache.bytes = 0;
        }
        if bytes <= TWIDDLE_CACHE_BYTES {
            cache.tables.insert(key, buf.clone());
            cache.bytes += bytes;
        }
        Ok(buf)
    }

    /// The stages of an NTT over every segment of `n` words in `x` (`segments` of them): the
    /// strides that fit a workgroup's block in one `ntt_local.wgsl` dispatch, the larger ones
    /// two per dispatch (radix 4) and a last single one if their number is odd.
    fn stages<'a>(
        &'a self,
        x: &'a wgpu::Buffer,
        tw: &'a wgpu::Buffer,
        n: usize,
        segments: usize,
        dit: bool,
        out: &mut Vec<Dispatch<'a>>,
    ) {
        if n < 2 {
            return;
        }
        let total = (segments * n / 2) as u64;
        // Stages with h <= local_h stay inside blocks of 2 * local_h words: one dispatch of
        // `ntt_local.wgsl` for all of them; the larger strides one dispatch each.
        let local_h = (n / 2).min(LOCAL_NTT_WORDS / 2);
        let local = Dispatch {
            pipeline: if dit {
                &self.pipelines.dit_local
            } else {
                &self.pipelines.dif_local
            },
            buffers: vec![x, tw],
            params: vec![n as u32, local_h as u32, (total / local_h as u64) as u32, 0],
            threads: total / local_h as u64 * WORKGROUP,
        };
        let mut hs: Vec<usize> = (0..n.trailing_zeros())
            .map(|s| 1usize << s)
            .filter(|&h| h > local_h)
            .collect();
        let mut local = Some(local);
        if dit {
            out.extend(local.take());
        } else {
            hs.reverse();
        }
        // Two stages per dispatch (radix 4) while two remain: DIF h then h / 2, DIT h then 2h.
        let mut i = 0;
        while i < hs.len() {
            let (pipeline, h, threads) = match (dit, hs.get(i + 1)) {
                (false, Some(_)) => (&self.pipelines.dif2, hs[i], total / 2),
                (true, Some(_)) => (&self.pipelines.dit2, hs[i], total / 2),
                (false, None) => (&self.pipelines.dif, hs[i], total),
                (true, None) => (&self.pipelines.dit, hs[i], total),
            };
            out.push(Dispatch {
                pipeline,
                buffers: vec![x, tw],
                params: vec![n as u32, h as u32, threads as u32, 0],
                threads,
            });
            i += if threads == total { 1 } else { 2 };
        }
        // DIF: the small strides come last.
        out.extend(local);
    }

    /// Forward or inverse NTT of every column: DIF, bit reversal, and `1/n` for the inverse.
    fn transform(&self, columns: &mut WgpuColumns, inverse: bool) -> Result<(), Error> {
        let n = columns.num_rows;
        if n < 2 {
            return Ok(());
        }
        let what = if inverse { "inverse NTT" } else { "NTT" };
        self.guarded(what, || {
            let tw = self.twiddles(n, inverse)?;
            let mut work = Vec::new();
            // One column group (device buffer) after the other, in one submission.
            for part in &columns.parts {
                let words = (n * part.count) as u64;
                self.stages(&part.buf, &tw, n, part.count, false, &mut work);
                work.push(Dispatch {
                    pipeline: &self.pipelines.bitrev,
                    buffers: vec![&part.buf],
                    params: vec![n as u32, n.trailing_zeros(), words as u32, 0, 0, 0, 0, 0],
                    threads: words,
                });
                if inverse {
                    let inv_n = BaseElement::new(n as u64).inv().inner();
                    let [lo, hi] = word_halves(inv_n);
                    work.push(Dispatch {
                        pipeline: &self.pipelines.scale,
                        buffers: vec![&part.buf],
                        params: vec![n as u32, 0, words as u32, 0, lo, hi, 0, 0],
                        threads: words,
                    });
                }
            }
            self.dispatch(&work)
        })
    }

    /// Row hashes of a device matrix into a device buffer of 32-byte digests (4 words each),
    /// one dispatch per row range: `Rp64_256` or BLAKE3-256.
    fn hash_rows_device(&self, rows: &WgpuRows, blake3: bool) -> Result<wgpu::Buffer, Error> {
        let digests = self.storage("row digests", rows.num_rows * 4)?;
        let [lo, hi] = word_halves(BaseElement::new(rows.num_cols as u64).inner());
        let work: Vec<Dispatch<'_>> = rows
            .parts
            .iter()
            .enumerate()
            .map(|(k, part)| {
                let row0 = (k * rows.rows_per_part) as u32;
                let (w, count) = (rows.num_cols as u32, part.count as u32);
                if blake3 {
                    Dispatch {
                        pipeline: &self.pipelines.blake3_rows,
                        buffers: vec![&part.buf, &digests],
                        params: vec![w, count, row0, 0],
                        threads: part.count as u64,
                    }
                } else {
                    Dispatch {
                        pipeline: &self.pipelines.hash_rows,
                        buffers: vec![&part.buf, &self.rescue, &digests],
                        params: vec![w, count, lo, hi, row0, 0, 0, 0],
                        threads: part.count as u64,
                    }
                }
            })
            .collect();
        self.dispatch(&work)?;
        Ok(digests)
    }

    /// Inner nodes over device leaves (`num_leaves` a power of two, at least 2) with
    /// `Rp64_256` or BLAKE3-256 merges.
    fn tree_device<H: Hasher>(
        &self,
        leaves: wgpu::Buffer,
        num_leaves: usize,
        blake3: bool,
        finish: Finish<H>,
    ) -> Result<WgpuTree<H>, Error> {
        let nodes = self.storage("Merkle nodes", num_leaves * 4)?;
        self.queue
            .write_buffer(&nodes, 0, bytemuck::cast_slice(&[0u64; 4]));
        let [lo, hi] = word_halves(BaseElement::new(8).inner());
        let mut work = Vec::new();
        let mut m = num_leaves / 2;
        let mut first = true;
        while m >= 1 {
            // Parents nodes[m..2m]; children leaves[0..2m] or nodes[2m..4m].
            let (flag, src) = if first { (1, 0) } else { (0, 2 * m) };
            work.push(if blake3 {
                Dispatch {
                    pipeline: &self.pipelines.blake3_merge,
                    buffers: vec![&leaves, &nodes],
                    params: vec![flag, src as u32, m as u32, m as u32, 0, 0, 0, 0],
                    threads: m as u64,
                }
            } else {
                Dispatch {
                    pipeline: &self.pipelines.merge,
                    buffers: vec![&leaves, &nodes, &self.rescue],
                    params: vec![flag, src as u32, m as u32, m as u32, lo, hi, 0, 0],
                    threads: m as u64,
                }
            });
            first = false;
            m /= 2;
        }
        self.dispatch(&work)?;
        Ok(WgpuTree {
            inner: TreeInner::Device {
                leaves,
                nodes,
                num_leaves,
                finish,
                _hasher: PhantomData,
            },
        })
    }

    fn cpu(&self) -> Result<&CpuBackend, Error> {
        if let Some(c) = self.cpu.get() {
            return Ok(c);
        }
        let c = CpuBackend::with_isa(Isa::best())?;
        Ok(self.cpu.get_or_init(|| c))
    }
}

/// The device's per-buffer limit: the smaller of the buffer size and the storage binding
/// limits.
fn hard_buffer_limit(limits: &wgpu::Limits) -> u64 {
    limits
        .max_buffer_size
        .min(limits.max_storage_buffer_binding_size)
}

/// Words of the largest matrix the kernels accept (32-bit row and word indexes per dispatch).
const MAX_WORDS: u64 = 1 << 32;

fn desc_backends() -> wgpu::Backends {
    wgpu::Backends::from_env()
        .unwrap_or(wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12)
}

/// One kernel launch: pipeline, storage buffers in binding order (the params uniform follows
/// them), the params words, and the number of invocations.
struct Dispatch<'a> {
    pipeline: &'a wgpu::ComputePipeline,
    buffers: Vec<&'a wgpu::Buffer>,
    params: Vec<u32>,
    threads: u64,
}

/// Largest transform of this backend: kernels index words with 32-bit integers.
const MAX_LOG_SIZE: u32 = 31;

impl Backend for WgpuBackend {
    type Columns = WgpuColumns;
    type Rows = WgpuRows;
    type Tree<H: Hasher> = WgpuTree<H>;

    fn info(&self) -> BackendInfo {
        let max_words = self.max_buffer_bytes() / WORD;
        let max_log = max_words.max(1).ilog2().min(MAX_LOG_SIZE);
        BackendInfo {
            name: "wgpu".to_owned(),
            device: Device::Gpu {
                name: self.adapter.name.clone(),
                driver: format!("{} {}", self.adapter.driver, self.adapter.driver_info)
                    .trim()
                    .to_owned(),
                api: format!("{:?}", self.adapter.backend),
            },
            memory_bytes: Some(self.max_buffer_bytes()),
            capabilities: Capabilities {
                ntt: true,
                coset_lde: true,
                merkle_rp64_256: true,
                merkle_blake3: true,
                mlkem768_decap: true,
                max_log_size: max_log,
            },
        }
    }

    fn upload_columns(&self, host: ColumnMatrix) -> Result<WgpuColumns, Error> {
        let (n, cols) = (host.num_rows(), host.num_cols());
        self.check_total("columns", n * cols)?;
        let per = self.cols_per_part(n, cols);
        self.guarded("uploading columns", || {
            Ok(WgpuColumns {
                parts: self.upload_parts("columns", &words_of(host.data()), per * n, n)?,
                num_rows: n,
                num_cols: cols,
            })
        })
    }

    fn upload_rows(&self, host: RowMatrix) -> Result<WgpuRows, Error> {
        let (rows, cols) = (host.num_rows(), host.num_cols());
        self.check_total("rows", rows * cols)?;
        let per = self.rows_per_part(rows, cols);
        self.guarded("uploading rows", || {
            Ok(WgpuRows {
                parts: self.upload_parts("rows", &words_of(host.data()), per * cols, cols)?,
                rows_per_part: per,
                num_rows: rows,
                num_cols: cols,
            })
        })
    }

    fn download_columns(&self, columns: &WgpuColumns) -> Result<ColumnMatrix, Error> {
        let words = self.guarded("downloading columns", || {
            self.read_parts(&columns.parts, columns.num_rows)
        })?;
        ColumnMatrix::from_column_major(elements_of(&words), columns.num_rows)
    }

    fn download_rows(&self, rows: &WgpuRows) -> Result<RowMatrix, Error> {
        let words = self.guarded("downloading rows", || {
            self.read_parts(&rows.parts, rows.num_cols)
        })?;
        RowMatrix::from_row_major(elements_of(&words), rows.num_cols)
    }

    fn read_rows(
        &self,
        rows: &WgpuRows,
        indexes: &[usize],
    ) -> Result<Vec<Vec<BaseElement>>, Error> {
        let row_bytes = rows.num_cols as u64 * WORD;
        // Byte ranges per row range (chunk), with the position of each queried row.
        let mut by_part: Vec<PartQueries> = rows
            .parts
            .iter()
            .map(|_| (Vec::new(), Vec::new()))
            .collect();
        for (pos, &i) in indexes.iter().enumerate() {
            if i >= rows.num_rows {
                return Err(Error::Shape {
                    what: "row index (must be below)",
                    expected: rows.num_rows,
                    found: i,
                });
            }
            let (k, local) = (i / rows.rows_per_part, i % rows.rows_per_part);
            by_part[k].0.push((local as u64 * row_bytes, row_bytes));
            by_part[k].1.push(pos);
        }
        let mut out = vec![Vec::new(); indexes.len()];
        self.guarded("reading queried rows", || {
            for (part, (ranges, positions)) in rows.parts.iter().zip(&by_part) {
                if ranges.is_empty() {
                    continue;
                }
                let words = self.read_back(&part.buf, ranges)?;
                for (pos, row) in positions.iter().zip(words.chunks_exact(rows.num_cols)) {
                    out[*pos] = elements_of(row);
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn ntt(&self, columns: &mut WgpuColumns) -> Result<(), Error> {
        self.transform(columns, false)
    }

    fn intt(&self, columns: &mut WgpuColumns) -> Result<(), Error> {
        self.transform(columns, true)
    }

    fn coset_lde(
        &self,
        coefficients: &WgpuColumns,
        blowup: usize,
        offset: BaseElement,
    ) -> Result<WgpuRows, Error> {
        let n = coefficients.num_rows;
        let cols = coefficients.num_cols;
        let big = crate::backend::lde_domain(n, blowup, offset)?;
        let words = big.checked_mul(cols).ok_or(Error::DeviceMemory {
            what: "LDE matrix",
            bytes: u64::MAX,
            limit: self.memory_budget,
        })?;
        self.check_total("LDE matrix", words)?;
        // A column of the LDE is the smallest chunk of the coset scratch; a row the smallest
        // chunk of the output.
        self.check_bytes("LDE column", big)?;
        self.check_bytes("LDE row", cols)?;
        let rows_per_part = self.rows_per_part(big, cols);
        let group = self.cols_per_part(big, cols);
        self.guarded("coset LDE", || {
            // Shift powers (offset * g^t)^rev(p) for every coset t, in DIT input order.
            let key = Table::ShiftPowers {
                n,
                blowup,
                offset: offset.as_int(),
            };
            let powers = self.cached_table(key, || {
                let g = BaseElement::get_root_of_unity(big.ilog2());
                let mut powers = Vec::with_capacity(big);
                for t in 0..blowup {
                    powers.extend(ntt::shift_powers_bitrev(offset * g.exp(t as u64), n));
                }
                powers
            })?;
            let tw = self.twiddles(n, false)?;
            let out: Vec<Part> = (0..big / rows_per_part)
                .map(|_| {
                    Ok(Part {
                        buf: self.storage("LDE rows", rows_per_part * cols)?,
                        count: rows_per_part,
                    })
                })
                .collect::<Result<_, Error>>()?;
            // One column group at a time: its cosets in a scratch buffer of at most the
            // budget, then transposed into every row range.
            let mut col0 = 0usize;
            for part in &coefficients.parts {
                let mut start = 0usize;
                while start < part.count {
                    let g_cols = group.min(part.count - start);
                    let g_words = g_cols * big;
                    let scratch = self.storage("LDE cosets", g_words)?;
                    let mut work = vec![Dispatch {
                        pipeline: &self.pipelines.lde_prep,
                        buffers: vec![&part.buf, &powers, &scratch],
                        params: vec![
                            n as u32,
                            n.trailing_zeros(),
                            big as u32,
                            g_words as u32,
                            start as u32,
                            0,
                            0,
                            0,
                        ],
                        threads: g_words as u64,
                    }];
                    self.stages(&scratch, &tw, n, g_cols * blowup, true, &mut work);
                    for (k, dst) in out.iter().enumerate() {
                        let threads = rows_per_part * g_cols;
                        work.push(Dispatch {
                            pipeline: &self.pipelines.transpose,
                            buffers: vec![&scratch, &dst.buf],
                            params: vec![
                                n as u32,
                                blowup as u32,
                                cols as u32,
                                threads as u32,
                                (col0 + start) as u32,
                                g_cols as u32,
                                (k * rows_per_part) as u32,
                                0,
                            ],
                            threads: threads as u64,
                        });
                    }
                    self.dispatch(&work)?;
                    start += g_cols;
                }
                col0 += part.count;
            }
            Ok(WgpuRows {
                parts: out,
                rows_per_part,
                num_rows: big,
                num_cols: cols,
            })
        })
    }

    fn hash_rows_rp64_256(
        &self,
        rows: &WgpuRows,
    ) -> Result<Vec<<Rp64_256 as Hasher>::Digest>, Error> {
        let words = self.guarded("Rp64_256 row hashing", || {
            let d = self.hash_rows_device(rows, false)?;
            self.read_all(&d, rows.num_rows * 4)
        })?;
        Ok(rp_digests(&words))
    }

    fn merkle_tree_rp64_256(
        &self,
        leaves: Vec<<Rp64_256 as Hasher>::Digest>,
    ) -> Result<WgpuTree<Rp64_256>, Error> {
        let words = rp_leaf_words(&leaves)?;
        self.guarded("Rp64_256 Merkle tree", || {
            let buf = self.upload("Merkle leaves", &words)?;
            self.tree_device(buf, leaves.len(), false, rp_finish)
        })
    }

    fn commit_rows_rp64_256(&self, rows: &WgpuRows) -> Result<WgpuTree<Rp64_256>, Error> {
        if rows.num_rows < 2 {
            return Err(Error::TooFewLeaves {
                leaves: rows.num_rows,
            });
        }
        check_len("number of Merkle leaves", rows.num_rows)?;
        self.guarded("Rp64_256 commitment", || {
            let leaves = self.hash_rows_device(rows, false)?;
            self.tree_device(leaves, rows.num_rows, false, rp_finish)
        })
    }

    fn commit_rows_blake3(
        &self,
        rows: &WgpuRows,
    ) -> Result<WgpuTree<Blake3_256<BaseElement>>, Error> {
        if rows.num_rows < 2 {
            return Err(Error::TooFewLeaves {
                leaves: rows.num_rows,
            });
        }
        check_len("number of Merkle leaves", rows.num_rows)?;
        if rows.num_cols > BLAKE3_MAX_WIDTH {
            let host = self.download_rows(rows)?;
            let cpu = self.cpu()?;
            return Ok(WgpuTree {
                inner: TreeInner::Host(cpu.commit_rows_blake3(&host)?),
            });
        }
        self.guarded("BLAKE3 commitment", || {
            let leaves = self.hash_rows_device(rows, true)?;
            self.tree_device(leaves, rows.num_rows, true, b3_finish)
        })
    }

    fn download_tree<H: Hasher>(&self, tree: WgpuTree<H>) -> Result<MerkleTree<H>, Error> {
        match tree.inner {
            TreeInner::Host(t) => Ok(t),
            TreeInner::Device {
                leaves,
                nodes,
                num_leaves,
                finish,
                ..
            } => {
                let (n, l) = self.guarded("downloading a Merkle tree", || {
                    Ok((
                        self.read_all(&nodes, num_leaves * 4)?,
                        self.read_all(&leaves, num_leaves * 4)?,
                    ))
                })?;
                finish(n, l)
            }
        }
    }

    fn decap_batch(
        &self,
        dk: &crypto::kem::mlkem768::DecapsulationKey,
        ciphertexts: &[crypto::kem::mlkem768::Ciphertext],
    ) -> Result<Vec<crypto::kem::SharedSecret>, Error> {
        mlkem::decap_batch(self, dk, ciphertexts)
    }
}

/// The byte ranges `(offset, len)` to read from one row range and the positions of those rows
/// in the caller's list.
type PartQueries = (Vec<(u64, u64)>, Vec<usize>);

/// How long a readback map may take to report once the device is idle.
const MAP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
