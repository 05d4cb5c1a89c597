// Batched Goldilocks NTT and coset LDE kernels over raw Montgomery words; the bodies are in
// ntt.cuh (shared with the host checks).
#include "ntt.cuh"

// The global index of this thread in a 1-D (or x-major 2-D) grid.
__device__ __forceinline__ u64 thread_index() {
    return (u64)blockIdx.x * blockDim.x + threadIdx.x +
           (u64)blockIdx.y * gridDim.x * blockDim.x;
}

// One pass of DIF stages over bits [s, s + r) on every column of 2^log_n words; one block
// per tile, 2^(r + c) words of dynamic shared memory. Grid: columns * tiles_per_col blocks.
// Memory traffic: each word read and written once (16 B), twiddles from L2.
extern "C" __global__ void ntt_dif_pass(u64 *x, const u64 *tw, u32 log_n, u32 s, u32 r, u32 c,
                                        u64 tiles_per_col) {
    extern __shared__ u64 sh[];
    const u64 tile = (u64)blockIdx.x + (u64)blockIdx.y * (u64)gridDim.x;
    ntt_dif_tile(x, tw, log_n, s, r, c, tiles_per_col, tile, sh, threadIdx.x, blockDim.x);
}

// Bit reversal of every column in place, times `scale` when `do_scale` is set (1/n for the
// inverse transform), for columns shorter than 2^10 (longer ones use `ntt_bitrev_tiled`).
// One thread per word. Memory traffic: each word read and written once
// (scattered, 16 B).
extern "C" __global__ void ntt_bitrev_scale(u64 *x, u32 log_n, u64 total, u64 scale,
                                            u32 do_scale) {
    const u64 idx = thread_index();
    if (idx < total) {
        ntt_bitrev_one(x, log_n, idx, scale, do_scale);
    }
}

// Tiled bit reversal of every column (log_n >= 10), times `scale` when `do_scale` is set: one
// block of 256 threads per (column, middle index), see `ntt_bitrev_tile`. Memory traffic: each
// word read and written once, coalesced (16 B per element).
extern "C" __global__ void __launch_bounds__(256) ntt_bitrev_tiled(u64 *x, u32 log_n, u64 scale,
                                                                   u32 do_scale) {
    __shared__ u64 sh[BITREV_SHARED];
    const u64 block = (u64)blockIdx.x + (u64)blockIdx.y * (u64)gridDim.x;
    ntt_bitrev_tile(x, log_n, block, scale, do_scale, sh, threadIdx.x, blockDim.x);
}

// First step of the coset LDE (see `lde_prep_one`). Memory traffic: per output word one
// coefficient read (cached across the cosets) and one write, tables from L1/L2: about 16 B
// per LDE word.
extern "C" __global__ void lde_prep(const u64 *coeffs, const u64 *pw_lo, const u64 *pw_hi,
                                    u64 *out, u32 log_n, u32 log_blowup, u64 hi_len,
                                    u64 total) {
    const u64 idx = thread_index();
    if (idx < total) {
        lde_prep_one(coeffs, pw_lo, pw_hi, out, log_n, log_blowup, hi_len, idx);
    }
}

// Last step of the coset LDE (see `lde_transpose_tile`) for columns [col0, col0 + gcols) of
// an `out_cols`-column row-major output: one block of 256 threads per 32 x 32 tile, grid
// ceil(blowup * gcols / 32) * ceil(n / 32) blocks. Memory traffic: each LDE word read once
// and written once (16 B), in runs of 32 consecutive words.
extern "C" __global__ void __launch_bounds__(256) lde_transpose(const u64 *src, u64 *dst,
                                                                u32 log_n, u32 log_blowup,
                                                                u32 gcols, u32 col0,
                                                                u32 out_cols) {
    __shared__ u64 sh[LT_SHARED];
    const u64 block = (u64)blockIdx.x + (u64)blockIdx.y * (u64)gridDim.x;
    lde_transpose_tile(src, dst, log_n, log_blowup, gcols, col0, out_cols, block, sh,
                       threadIdx.x, blockDim.x);
}
