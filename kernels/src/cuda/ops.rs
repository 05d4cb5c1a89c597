//! The [`Backend`] operations of [`CudaBackend`]: buffers, launches, transfers.

use std::{fmt, marker::PhantomData, sync::Arc};

use cudarc::driver::{CudaSlice, LaunchConfig, PinnedHostSlice, PushKernelArg};
use winter_crypto::{
    Hasher, MerkleTree,
    hashers::{Blake3_256, Rp64_256},
};
use winter_math::{FieldElement, StarkField, fields::f64::BaseElement};

use super::CudaBackend;
use crate::device_words::{b3_finish, elements_of, rp_digests, rp_finish, rp_leaf_words, words_of};
use crate::{
    Error,
    backend::{Backend, BackendInfo, Capabilities, ColumnMatrix, Device, RowMatrix, check_len},
    cpu::ntt,
};

/// Bytes of one Goldilocks element.
const WORD: u64 = 8;
/// Log2 of the words one NTT block holds in shared memory (`TILE_BITS` in ntt.cu).
const TILE_BITS: u32 = 11;
/// Most stages of one NTT pass that does not end the transform: the other `TILE_BITS - r`
/// bits of a tile are consecutive words, so loads come in runs of at least 8 words.
const MAX_UPPER_STAGES: u32 = 8;
/// Threads per block of the NTT passes.
const NTT_THREADS: u32 = 256;
/// Log2 of the side of a tile of the tiled bit reversal (`BITREV_TILE_BITS` in ntt.cuh); it
/// serves columns of at least `2^(2 * BITREV_TILE_BITS)` words.
const BITREV_TILE_BITS: u32 = 5;
/// Threads per block of the tiled bit reversal and the tiled LDE transpose
/// (`__launch_bounds__(256)` in ntt.cu).
const TILE_THREADS: u32 = 256;
/// Side of a tile of the LDE transpose (`LT_TILE` in ntt.cuh).
const LT_TILE: usize = 32;
/// Threads per block of the element-wise kernels.
const THREADS: u32 = 256;
/// Threads per block of the hash kernels (`__launch_bounds__(128)` in merkle.cu).
const HASH_THREADS: u32 = 128;
/// Log2 of the low table of the LDE shift powers (`SHIFT_LO_BITS` in ntt.cu).
const SHIFT_LO_BITS: u32 = 10;
/// Largest transform of this backend (log2).
const MAX_LOG_SIZE: u32 = 32;
/// Transfers below this many words go through pageable memory; larger ones through pinned
/// staging buffers.
const PINNED_MIN_WORDS: usize = 1 << 14;
/// Pinned staging buffers and scratch buffers kept for reuse.
const POOL_KEEP: usize = 4;
/// Most chunks of a BLAKE3 row hash (`B3_MAX_DEPTH` in blake3.cuh): 128 words per chunk.
const B3_MAX_ROW_WORDS: usize = 128 << 24;

/// A column-major matrix resident on the device.
pub struct CudaColumns {
    buf: CudaSlice<u64>,
    num_rows: usize,
    num_cols: usize,
}

impl CudaColumns {
    /// Number of rows (the length of every column).
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns.
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }
}

impl fmt::Debug for CudaColumns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaColumns")
            .field("num_rows", &self.num_rows)
            .field("num_cols", &self.num_cols)
            .finish_non_exhaustive()
    }
}

/// A row-major matrix resident on the device.
pub struct CudaRows {
    buf: CudaSlice<u64>,
    num_rows: usize,
    num_cols: usize,
}

impl CudaRows {
    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Number of columns (elements per row).
    pub fn num_cols(&self) -> usize {
        self.num_cols
    }
}

impl fmt::Debug for CudaRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaRows")
            .field("num_rows", &self.num_rows)
            .field("num_cols", &self.num_cols)
            .finish_non_exhaustive()
    }
}

/// Turns downloaded node and leaf words into winter-crypto's tree.
type Finish<H> = fn(Vec<u64>, Vec<u64>) -> Result<MerkleTree<H>, Error>;

/// A Merkle tree resident on the device: leaves and nodes, 4 words (32 bytes) per digest.
pub struct CudaTree<H: Hasher> {
    leaves: CudaSlice<u64>,
    nodes: CudaSlice<u64>,
    num_leaves: usize,
    finish: Finish<H>,
    _hasher: PhantomData<H>,
}

impl<H: Hasher> fmt::Debug for CudaTree<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaTree")
            .field("leaves", &self.num_leaves)
            .finish_non_exhaustive()
    }
}

/// A one-dimensional launch of `threads` threads in blocks of `block`.
fn launch_1d(threads: u64, block: u32) -> Result<LaunchConfig, Error> {
    let blocks = threads.div_ceil(u64::from(block)).max(1);
    let blocks = u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or(Error::TooLarge {
            what: "kernel grid",
            log_size: threads.max(1).ilog2(),
            max_log: 31 + block.ilog2(),
        })?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// The passes of a DIF over `log_n` bits as `(s, r, c)`: stages over bits `[s, s + r)`, tiles
/// with `c` consecutive low words. Upper bits first, the last pass covers bits `[0, 11)`.
/// Public for the host checks, which run the kernels' tile code on the CPU with this plan.
pub fn dif_passes(log_n: u32) -> Vec<(u32, u32, u32)> {
    let last = log_n.min(TILE_BITS);
    let upper = log_n - last;
    let mut out = Vec::new();
    if upper > 0 {
        let k = upper.div_ceil(MAX_UPPER_STAGES);
        let mut top = log_n;
        for i in 0..k {
            // Spread the upper bits as evenly as possible over the k passes.
            let r = upper / k + u32::from(i < upper % k);
            top -= r;
            out.push((top, r, TILE_BITS - r));
        }
    }
    out.push((0, last, 0));
    out
}

/// The coset shift tables of an LDE of `n` coefficients with `blowup` cosets: for coset `t`
/// (`s_t = offset * g^t`, `g` of order `n * blowup`) the powers `lo[t][j] = s_t^j` for
/// `j < 2^10` and `hi[t][k] = s_t^(2^10 k)` for `k < hi_len = max(1, n >> 10)`, raw words;
/// `s_t^p = lo[t][p mod 2^10] * hi[t][p >> 10]`. Public for the host checks.
pub fn lde_shift_tables(
    offset: BaseElement,
    n: usize,
    blowup: usize,
) -> (Vec<u64>, Vec<u64>, usize) {
    let g = BaseElement::get_root_of_unity((n * blowup).ilog2());
    let lo_len = 1usize << SHIFT_LO_BITS;
    let hi_len = (n >> SHIFT_LO_BITS).max(1);
    let mut lo = Vec::with_capacity(blowup * lo_len);
    let mut hi = Vec::with_capacity(blowup * hi_len);
    for t in 0..blowup {
        let s = offset * g.exp(t as u64);
        let mut acc = BaseElement::ONE;
        for _ in 0..lo_len {
            lo.push(acc.inner());
            acc *= s;
        }
        // `acc` is now s^(2^10).
        let step = acc;
        let mut acc = BaseElement::ONE;
        for _ in 0..hi_len {
            hi.push(acc.inner());
            acc *= step;
        }
    }
    (lo, hi, hi_len)
}

impl CudaBackend {
    /// Refuses a working set above the budget or the free device memory, before allocating.
    fn check_budget(&self, what: &'static str, words: usize) -> Result<(), Error> {
        let bytes = (words as u64).saturating_mul(WORD);
        let free = self
            .context()
            .mem_get_info()
            .map(|(free, _)| free as u64)
            .unwrap_or(self.budget);
        let limit = self.budget.min(free);
        if bytes > limit {
            return Err(Error::DeviceMemory { what, bytes, limit });
        }
        Ok(())
    }

    /// A device buffer of `words` words (contents unspecified), from the pool when one of that
    /// length is there.
    fn scratch(&self, what: &'static str, words: usize) -> Result<CudaSlice<u64>, Error> {
        {
            let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|b| b.len() == words) {
                return Ok(pool.swap_remove(i));
            }
        }
        self.check_budget(what, words)?;
        self.stream
            .alloc_zeros::<u64>(words.max(1))
            .map_err(self.drv(what))
    }

    /// Returns a scratch buffer to the pool.
    fn recycle(&self, buf: CudaSlice<u64>) {
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(buf);
        if pool.len() > POOL_KEEP {
            pool.remove(0);
        }
    }

    /// A pinned host buffer of exactly `words` words, from the pool when one is there.
    fn staging(&self, words: usize) -> Result<PinnedHostSlice<u64>, Error> {
        {
            let mut pool = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = pool.iter().position(|b| b.len() == words) {
                return Ok(pool.swap_remove(i));
            }
        }
        // SAFETY: the pinned buffer's contents are unspecified until written; every caller
        // fills it completely (upload) or reads only what a device copy wrote (download).
        unsafe { self.ctx.alloc_pinned::<u64>(words) }.map_err(self.drv("allocating pinned memory"))
    }

    fn unstage(&self, buf: PinnedHostSlice<u64>) {
        let mut pool = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(buf);
        if pool.len() > POOL_KEEP {
            pool.remove(0);
        }
    }

    /// Copies host words to a new device buffer (through pinned staging when large).
    fn upload_words(&self, what: &'static str, words: &[u64]) -> Result<CudaSlice<u64>, Error> {
        self.check_budget(what, words.len())?;
        let err = self.drv(what);
        if words.len() < PINNED_MIN_WORDS {
            return self.stream.clone_htod(words).map_err(err);
        }
        let mut dev = self.scratch(what, words.len())?;
        let mut pinned = self.staging(words.len())?;
        pinned.as_mut_slice().map_err(&err)?.copy_from_slice(words);
        self.stream.memcpy_htod(&pinned, &mut dev).map_err(&err)?;
        self.stream.synchronize().map_err(&err)?;
        self.unstage(pinned);
        Ok(dev)
    }

    /// Copies the first `len` words of a device buffer to the host.
    fn download_words(
        &self,
        what: &'static str,
        buf: &CudaSlice<u64>,
        len: usize,
    ) -> Result<Vec<u64>, Error> {
        let err = self.drv(what);
        let view = buf.slice(..len);
        if len < PINNED_MIN_WORDS {
            let v = self.stream.clone_dtoh(&view).map_err(&err)?;
            self.stream.synchronize().map_err(&err)?;
            return Ok(v);
        }
        let mut pinned = self.staging(len)?;
        self.stream.memcpy_dtoh(&view, &mut pinned).map_err(&err)?;
        self.stream.synchronize().map_err(&err)?;
        let out = pinned.as_slice().map_err(&err)?.to_vec();
        self.unstage(pinned);
        Ok(out)
    }

    /// The forward and inverse twiddle tables for transforms of up to `2^log_n` points,
    /// uploaded once and kept.
    fn twiddles(&self, log_n: u32, inverse: bool) -> Result<Arc<CudaSlice<u64>>, Error> {
        let key = (log_n, inverse);
        if let Some(t) = self
            .twiddles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Arc::clone(t));
        }
        let t = ntt::Twiddles::new(1usize << log_n.max(1));
        let fwd = Arc::new(self.upload_words("twiddles", &t.fwd)?);
        let inv = Arc::new(self.upload_words("twiddles", &t.inv)?);
        let mut map = self.twiddles.lock().unwrap_or_else(|e| e.into_inner());
        map.insert((log_n, false), Arc::clone(&fwd));
        map.insert((log_n, true), Arc::clone(&inv));
        Ok(if inverse { inv } else { fwd })
    }

    /// DIF stages over every segment of `2^log_n` words of `x` (`segments` of them), natural
    /// order in, bit-reversed order out.
    fn dif(
        &self,
        x: &mut CudaSlice<u64>,
        log_n: u32,
        segments: usize,
        inverse: bool,
    ) -> Result<(), Error> {
        let tw = self.twiddles(log_n, inverse)?;
        let err = self.drv("an NTT pass");
        for (s, r, c) in dif_passes(log_n) {
            let words = 1u64 << (r + c);
            let tiles_per_col = (1u64 << log_n) / words;
            let blocks = tiles_per_col.saturating_mul(segments as u64);
            let blocks = u32::try_from(blocks)
                .ok()
                .filter(|&b| b <= i32::MAX as u32)
                .ok_or(Error::TooLarge {
                    what: "NTT grid",
                    log_size: log_n,
                    max_log: MAX_LOG_SIZE,
                })?;
            let threads = NTT_THREADS.min((words / 2).max(1) as u32);
            let cfg = LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: (words * WORD) as u32,
            };
            let mut b = self.stream.launch_builder(&self.f.dif_pass);
            b.arg(&mut *x)
                .arg(tw.as_ref())
                .arg(&log_n)
                .arg(&s)
                .arg(&r)
                .arg(&c)
                .arg(&tiles_per_col);
            // SAFETY: the argument list matches `ntt_dif_pass` (u64*, const u64*, u32 x4,
            // u64); the grid covers `segments` columns of 2^log_n words, all inside `x`
            // (its length is `segments << log_n`), and the twiddle table has 2^log_n words.
            unsafe { b.launch(cfg) }.map_err(&err)?;
        }
        Ok(())
    }

    /// Forward or inverse NTT of every column in place.
    fn transform(&self, columns: &mut CudaColumns, inverse: bool) -> Result<(), Error> {
        let n = columns.num_rows;
        if n < 2 {
            return Ok(());
        }
        let log_n = n.ilog2();
        let what = if inverse { "inverse NTT" } else { "NTT" };
        let err = self.drv(what);
        self.dif(&mut columns.buf, log_n, columns.num_cols, inverse)?;
        let total = (n * columns.num_cols) as u64;
        let (scale, do_scale) = if inverse {
            (BaseElement::new(n as u64).inv().inner(), 1u32)
        } else {
            (0u64, 0u32)
        };
        if log_n >= 2 * BITREV_TILE_BITS {
            let blocks = (columns.num_cols as u64) << (log_n - 2 * BITREV_TILE_BITS);
            let cfg = LaunchConfig {
                grid_dim: (launch_1d(blocks, 1)?.grid_dim.0, 1, 1),
                block_dim: (TILE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.stream.launch_builder(&self.f.bitrev_tiled);
            b.arg(&mut columns.buf)
                .arg(&log_n)
                .arg(&scale)
                .arg(&do_scale);
            // SAFETY: matches `ntt_bitrev_tiled` (u64*, u32, u64, u32) with its static shared
            // memory; one block per (column, middle index), every index inside the buffer of
            // `num_cols << log_n` words.
            unsafe { b.launch(cfg) }.map_err(&err)?;
        } else {
            let mut b = self.stream.launch_builder(&self.f.bitrev_scale);
            b.arg(&mut columns.buf)
                .arg(&log_n)
                .arg(&total)
                .arg(&scale)
                .arg(&do_scale);
            // SAFETY: matches `ntt_bitrev_scale` (u64*, u32, u64, u64, u32); threads past
            // `total` (the buffer's length) return at once.
            unsafe { b.launch(launch_1d(total, THREADS)?) }.map_err(&err)?;
        }
        self.stream.synchronize().map_err(&err)
    }

    /// Row digests (4 words each) of a device matrix with `Rp64_256` or BLAKE3.
    fn hash_rows_device(&self, rows: &CudaRows, blake3: bool) -> Result<CudaSlice<u64>, Error> {
        let what = if blake3 {
            "BLAKE3 row hashing"
        } else {
            "Rp64_256 row hashing"
        };
        let err = self.drv(what);
        let mut digests = self.scratch("row digests", rows.num_rows * 4)?;
        let width = rows.num_cols as u64;
        let num_rows = rows.num_rows as u64;
        let cfg = launch_1d(num_rows, HASH_THREADS)?;
        if blake3 {
            let mut b = self.stream.launch_builder(&self.f.b3_hash_rows);
            b.arg(&rows.buf)
                .arg(&mut digests)
                .arg(&width)
                .arg(&num_rows);
            // SAFETY: matches `b3_hash_rows` (const u64*, u32*, u64, u64): `rows` holds
            // `num_rows * width` words and `digests` 8 u32 per row; the width is below the
            // kernel's chunk-stack limit (checked by the caller).
            unsafe { b.launch(cfg) }.map_err(&err)?;
        } else {
            let len_word = BaseElement::new(width).inner();
            let mut b = self.stream.launch_builder(&self.f.hash_rows);
            b.arg(&rows.buf)
                .arg(&mut digests)
                .arg(&width)
                .arg(&num_rows)
                .arg(&len_word);
            // SAFETY: matches `rp_hash_rows` (const u64*, u64*, u64, u64, u64): `rows` holds
            // `num_rows * width` words and `digests` 4 words per row.
            unsafe { b.launch(cfg) }.map_err(&err)?;
        }
        Ok(digests)
    }

    /// Inner nodes over device leaves (a power of two, at least 2), level by level.
    fn tree_device<H: Hasher>(
        &self,
        leaves: CudaSlice<u64>,
        num_leaves: usize,
        blake3: bool,
        finish: Finish<H>,
    ) -> Result<CudaTree<H>, Error> {
        let err = self.drv("building a Merkle tree");
        self.check_budget("Merkle nodes", num_leaves * 4)?;
        let mut nodes = self
            .stream
            .alloc_zeros::<u64>(num_leaves * 4)
            .map_err(&err)?;
        let f = if blake3 {
            &self.f.b3_merge_level
        } else {
            &self.f.merge_level
        };
        let mut m = num_leaves / 2;
        let mut first = true;
        while m >= 1 {
            let count = m as u64;
            let cfg = launch_1d(count, HASH_THREADS)?;
            if first {
                let mut dst = nodes.slice_mut(m * 4..2 * m * 4);
                let mut b = self.stream.launch_builder(f);
                b.arg(&leaves).arg(&mut dst).arg(&count);
                // SAFETY: matches `*_merge_level` (const digest*, digest*, u64): the leaves
                // hold 2m digests, `dst` is nodes[m..2m].
                unsafe { b.launch(cfg) }.map_err(&err)?;
            } else {
                // Children nodes[2m..4m] and parents nodes[m..2m] do not overlap.
                let (mut lo, hi) = nodes.split_at_mut(2 * m * 4);
                let src = hi.slice(..2 * m * 4);
                let mut dst = lo.slice_mut(m * 4..);
                let mut b = self.stream.launch_builder(f);
                b.arg(&src).arg(&mut dst).arg(&count);
                // SAFETY: as above, children nodes[2m..4m], parents nodes[m..2m].
                unsafe { b.launch(cfg) }.map_err(&err)?;
            }
            first = false;
            m /= 2;
        }
        self.stream.synchronize().map_err(&err)?;
        Ok(CudaTree {
            leaves,
            nodes,
            num_leaves,
            finish,
            _hasher: PhantomData,
        })
    }

    fn check_tree_rows(rows: &CudaRows) -> Result<(), Error> {
        if rows.num_rows < 2 {
            return Err(Error::TooFewLeaves {
                leaves: rows.num_rows,
            });
        }
        check_len("number of Merkle leaves", rows.num_rows)
    }
}

impl Backend for CudaBackend {
    type Columns = CudaColumns;
    type Rows = CudaRows;
    type Tree<H: Hasher> = CudaTree<H>;

    fn info(&self) -> BackendInfo {
        BackendInfo {
            name: "cuda".to_owned(),
            device: Device::Gpu {
                name: self.device_name.clone(),
                driver: self.driver_version.clone(),
                api: format!("CUDA (compute capability {}.{})", self.cc.0, self.cc.1),
            },
            memory_bytes: Some(self.budget),
            capabilities: Capabilities {
                ntt: true,
                coset_lde: true,
                merkle_rp64_256: true,
                merkle_blake3: true,
                mlkem768_decap: super::mlkem::SUPPORTED,
                max_log_size: MAX_LOG_SIZE.min((self.budget / WORD).max(2).ilog2()),
            },
        }
    }

    fn upload_columns(&self, host: ColumnMatrix) -> Result<CudaColumns, Error> {
        Ok(CudaColumns {
            buf: self.upload_words("columns", &words_of(host.data()))?,
            num_rows: host.num_rows(),
            num_cols: host.num_cols(),
        })
    }

    fn upload_rows(&self, host: RowMatrix) -> Result<CudaRows, Error> {
        Ok(CudaRows {
            buf: self.upload_words("rows", &words_of(host.data()))?,
            num_rows: host.num_rows(),
            num_cols: host.num_cols(),
        })
    }

    fn download_columns(&self, columns: &CudaColumns) -> Result<ColumnMatrix, Error> {
        let len = columns.num_rows * columns.num_cols;
        let words = self.download_words("downloading columns", &columns.buf, len)?;
        ColumnMatrix::from_column_major(elements_of(&words), columns.num_rows)
    }

    fn download_rows(&self, rows: &CudaRows) -> Result<RowMatrix, Error> {
        let len = rows.num_rows * rows.num_cols;
        let words = self.download_words("downloading rows", &rows.buf, len)?;
        RowMatrix::from_row_major(elements_of(&words), rows.num_cols)
    }

    fn read_rows(
        &self,
        rows: &CudaRows,
        indexes: &[usize],
    ) -> Result<Vec<Vec<BaseElement>>, Error> {
        let err = self.drv("reading queried rows");
        let w = rows.num_cols;
        let mut out = Vec::with_capacity(indexes.len());
        for &i in indexes {
            if i >= rows.num_rows {
                return Err(Error::Shape {
                    what: "row index (must be below)",
                    expected: rows.num_rows,
                    found: i,
                });
            }
            let view = rows.buf.slice(i * w..(i + 1) * w);
            out.push(self.stream.clone_dtoh(&view).map_err(&err)?);
        }
        self.stream.synchronize().map_err(&err)?;
        Ok(out.iter().map(|r| elements_of(r)).collect())
    }

    fn ntt(&self, columns: &mut CudaColumns) -> Result<(), Error> {
        self.transform(columns, false)
    }

    fn intt(&self, columns: &mut CudaColumns) -> Result<(), Error> {
        self.transform(columns, true)
    }

    fn coset_lde(
        &self,
        coefficients: &CudaColumns,
        blowup: usize,
        offset: BaseElement,
    ) -> Result<CudaRows, Error> {
        let n = coefficients.num_rows;
        let cols = coefficients.num_cols;
        let big = crate::backend::lde_domain(n, blowup, offset)?;
        let words = big.checked_mul(cols).ok_or(Error::DeviceMemory {
            what: "LDE matrix",
            bytes: u64::MAX,
            limit: self.budget,
        })?;
        // The row-major output lives throughout; the coset scratch holds a group of columns at
        // a time: all of them when the budget allows, fewer (down to one) otherwise.
        let limit = self.budget.min(
            self.context()
                .mem_get_info()
                .map(|(free, _)| free as u64)
                .unwrap_or(self.budget),
        ) / WORD;
        let per_col = big as u64;
        let room = limit.saturating_sub(words as u64) / per_col;
        if room == 0 {
            return Err(Error::DeviceMemory {
                what: "LDE matrix and one column of scratch",
                bytes: (words as u64 + per_col).saturating_mul(WORD),
                limit: limit * WORD,
            });
        }
        let group = (room.min(cols as u64)) as usize;
        let err = self.drv("coset LDE");
        let log_n = n.ilog2();
        let log_blowup = blowup.ilog2();
        let (lo, hi, hi_len) = lde_shift_tables(offset, n, blowup);
        let lo = self.upload_words("LDE shift powers", &lo)?;
        let hi = self.upload_words("LDE shift powers", &hi)?;
        let hi_len = hi_len as u64;
        let mut out = self.scratch("LDE rows", words)?;
        let mut scratch = self.scratch("LDE cosets", big * group)?;
        let out_cols = cols as u32;
        let mut c0 = 0usize;
        while c0 < cols {
            let g = group.min(cols - c0);
            let total = (big * g) as u64;
            let coeffs = coefficients.buf.slice(c0 * n..(c0 + g) * n);
            let mut b = self.stream.launch_builder(&self.f.lde_prep);
            b.arg(&coeffs)
                .arg(&lo)
                .arg(&hi)
                .arg(&mut scratch)
                .arg(&log_n)
                .arg(&log_blowup)
                .arg(&hi_len)
                .arg(&total);
            // SAFETY: matches `lde_prep` (const u64* x3, u64*, u32, u32, u64, u64); the
            // coefficients view holds `g * n` words, the tables `blowup << 10` and
            // `blowup * hi_len` words, the scratch at least `total = g * big` words.
            unsafe { b.launch(launch_1d(total, THREADS)?) }.map_err(&err)?;
            if n >= 2 {
                self.dif(&mut scratch, log_n, g * blowup, false)?;
            }
            let (g32, c032) = (g as u32, c0 as u32);
            let tiles = (g * blowup).div_ceil(LT_TILE) as u64 * n.div_ceil(LT_TILE) as u64;
            let cfg = LaunchConfig {
                grid_dim: (launch_1d(tiles, 1)?.grid_dim.0, 1, 1),
                block_dim: (TILE_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = self.stream.launch_builder(&self.f.lde_transpose);
            b.arg(&scratch)
                .arg(&mut out)
                .arg(&log_n)
                .arg(&log_blowup)
                .arg(&g32)
                .arg(&c032)
                .arg(&out_cols);
            // SAFETY: matches `lde_transpose` (const u64*, u64*, u32 x5) with its static
            // shared memory; one block per 32 x 32 tile of the group's `g * blowup` segments
            // of `n` words (inside the scratch), writing columns [c0, c0 + g) of the
            // `big * cols`-word output.
            unsafe { b.launch(cfg) }.map_err(&err)?;
            c0 += g;
        }
        self.stream.synchronize().map_err(&err)?;
        self.recycle(scratch);
        Ok(CudaRows {
            buf: out,
            num_rows: big,
            num_cols: cols,
        })
    }

    fn hash_rows_rp64_256(
        &self,
        rows: &CudaRows,
    ) -> Result<Vec<<Rp64_256 as Hasher>::Digest>, Error> {
        let d = self.hash_rows_device(rows, false)?;
        let words = self.download_words("downloading row digests", &d, rows.num_rows * 4)?;
        self.recycle(d);
        Ok(rp_digests(&words))
    }

    fn merkle_tree_rp64_256(
        &self,
        leaves: Vec<<Rp64_256 as Hasher>::Digest>,
    ) -> Result<CudaTree<Rp64_256>, Error> {
        let words = rp_leaf_words(&leaves)?;
        let buf = self.upload_words("Merkle leaves", &words)?;
        self.tree_device(buf, leaves.len(), false, rp_finish)
    }

    fn commit_rows_rp64_256(&self, rows: &CudaRows) -> Result<CudaTree<Rp64_256>, Error> {
        Self::check_tree_rows(rows)?;
        let leaves = self.hash_rows_device(rows, false)?;
        self.tree_device(leaves, rows.num_rows, false, rp_finish)
    }

    fn commit_rows_blake3(
        &self,
        rows: &CudaRows,
    ) -> Result<CudaTree<Blake3_256<BaseElement>>, Error> {
        Self::check_tree_rows(rows)?;
        if rows.num_cols > B3_MAX_ROW_WORDS {
            // Wider than the kernel's chunk stack: hash on the CPU, build the tree here.
            let host = self.download_rows(rows)?;
            let tree = self.cpu()?.commit_rows_blake3(&host)?;
            let words: Vec<u64> = tree
                .leaves()
                .iter()
                .flat_map(|d| {
                    winter_crypto::Digest::as_bytes(d)
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
                        .collect::<Vec<_>>()
                })
                .collect();
            let buf = self.upload_words("Merkle leaves", &words)?;
            return self.tree_device(buf, rows.num_rows, true, b3_finish);
        }
        let leaves = self.hash_rows_device(rows, true)?;
        self.tree_device(leaves, rows.num_rows, true, b3_finish)
    }

    fn download_tree<H: Hasher>(&self, tree: CudaTree<H>) -> Result<MerkleTree<H>, Error> {
        let len = tree.num_leaves * 4;
        let nodes = self.download_words("downloading a Merkle tree", &tree.nodes, len)?;
        let leaves = self.download_words("downloading a Merkle tree", &tree.leaves, len)?;
        self.recycle(tree.leaves);
        (tree.finish)(nodes, leaves)
    }

    fn decap_batch(
        &self,
        dk: &crypto::kem::mlkem768::DecapsulationKey,
        ciphertexts: &[crypto::kem::mlkem768::Ciphertext],
    ) -> Result<Vec<crypto::kem::SharedSecret>, Error> {
        self.decap_batch_cuda(dk, ciphertexts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dif_passes_cover_every_stage_once_within_a_tile() {
        for log_n in 1..=32u32 {
            let passes = dif_passes(log_n);
            let mut next_top = log_n;
            for &(s, r, c) in &passes {
                assert_eq!(s + r, next_top, "log_n {log_n}: passes must be contiguous");
                assert!(
                    r >= 1 && r + c <= TILE_BITS,
                    "log_n {log_n}: tile too large"
                );
                assert!(c <= s, "log_n {log_n}: low words must lie below the pass");
                next_top = s;
            }
            assert_eq!(next_top, 0, "log_n {log_n}: stages left over");
            assert_eq!(
                passes.len() as u32,
                1 + (log_n.saturating_sub(11)).div_ceil(8)
            );
        }
    }
}
