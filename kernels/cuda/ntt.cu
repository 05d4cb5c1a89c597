// Batched Goldilocks NTT and coset LDE kernels over raw Montgomery words.
//
// The forward transform is a decimation in frequency (natural order in, bit-reversed out)
// followed by a bit reversal; stage `h` (half-size of its butterflies) uses the twiddles
// `tw[h + j] = w_{2h}^j`, one table for every size up to its length (as the CPU backend).
// Stages run in passes of up to 11 stages over a tile of 2^11 words held in shared memory:
// a 2^24 transform makes 3 passes over device memory instead of 24.
#include "field.cuh"

// Log2 of the words a block holds in shared memory (16 KiB).
#define TILE_BITS 11
// Log2 of the powers per table of the LDE shift (low part).
#define SHIFT_LO_BITS 10

// One pass of DIF stages over bits [s, s + r) of the in-column index, on every column of
// `2^log_n` words. A block owns one tile of 2^(r + c) words: for fixed high bits (above
// s + r) and fixed middle bits [c, s), the 2^r groups times 2^c consecutive low words, so the
// loads are runs of 2^c consecutive words. Grid: columns * tiles_per_col blocks.
// Memory traffic: each word read and written once (16 B), twiddles from L2.
extern "C" __global__ void ntt_dif_pass(u64 *x, const u64 *tw, u32 log_n, u32 s, u32 r, u32 c,
                                        u64 tiles_per_col) {
    extern __shared__ u64 sh[];
    const u64 tile = (u64)blockIdx.x + (u64)blockIdx.y * (u64)gridDim.x;
    const u64 col = tile / tiles_per_col;
    const u64 t = tile % tiles_per_col;
    const u32 mid_bits = s - c;
    const u64 mid = t & ((1ull << mid_bits) - 1ull);
    const u64 hi = t >> mid_bits;
    u64 *base = x + (col << log_n);
    const u32 words = 1u << (r + c);
    const u32 lo_mask = (1u << c) - 1u;
    // Global in-column index of local word l.
#define GIDX(l) ((hi << (s + r)) | ((u64)((l) >> c) << s) | (mid << c) | (u64)((l) & lo_mask))
    for (u32 l = threadIdx.x; l < words; l += blockDim.x) {
        sh[l] = base[GIDX(l)];
    }
    __syncthreads();
    for (int b = (int)(s + r) - 1; b >= (int)s; b--) {
        const u64 h = 1ull << b;
        const u32 lb = (u32)b - s + c;
        const u32 half = 1u << lb;
        for (u32 k = threadIdx.x; k < words / 2; k += blockDim.x) {
            const u32 i = ((k >> lb) << (lb + 1)) | (k & (half - 1u));
            const u64 g = GIDX(i);
            const u64 w = tw[h + (g & (h - 1ull))];
            u64 a = sh[i];
            u64 bb = sh[i + half];
            gl_dif(&a, &bb, w);
            sh[i] = a;
            sh[i + half] = bb;
        }
        __syncthreads();
    }
    for (u32 l = threadIdx.x; l < words; l += blockDim.x) {
        base[GIDX(l)] = sh[l];
    }
#undef GIDX
}

// Bit reversal of every column of 2^log_n words in place, times `scale` when `do_scale` is
// set (1/n for the inverse transform). One thread per word; the smaller index of each pair
// swaps. Memory traffic: each word read and written once (scattered, 16 B).
extern "C" __global__ void ntt_bitrev_scale(u64 *x, u32 log_n, u64 total, u64 scale,
                                            u32 do_scale) {
    const u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                    (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (idx >= total) {
        return;
    }
    const u64 n_mask = (1ull << log_n) - 1ull;
    const u64 base = idx & ~n_mask;
    const u32 p = (u32)(idx & n_mask);
    const u32 q = gl_rev_bits(p, log_n);
    if (q < p) {
        return;
    }
    u64 a = x[base + p];
    u64 b = x[base + q];
    if (do_scale) {
        a = gl_mul(a, scale);
        b = gl_mul(b, scale);
    }
    x[base + p] = b;
    x[base + q] = a;
}

// First step of the coset LDE: for every column `c` and coset `t`, coefficient `p` times
// `s_t^p` with `s_t = offset * g^t`, natural order (the input of a DIF). The powers come from
// two small tables per coset: `lo[t][p mod 2^10]` and `hi[t][p >> 10]`.
// Memory traffic: per output word one coefficient read (cached across the cosets) and one
// write, tables from L1/L2: about 16 B per LDE word.
extern "C" __global__ void lde_prep(const u64 *coeffs, const u64 *pw_lo, const u64 *pw_hi,
                                    u64 *out, u32 log_n, u32 log_blowup, u64 hi_len,
                                    u64 total) {
    const u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                    (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (idx >= total) {
        return;
    }
    const u32 log_big = log_n + log_blowup;
    const u64 c = idx >> log_big;
    const u64 rem = idx & ((1ull << log_big) - 1ull);
    const u64 t = rem >> log_n;
    const u64 p = rem & ((1ull << log_n) - 1ull);
    const u64 lo = pw_lo[(t << SHIFT_LO_BITS) + (p & ((1ull << SHIFT_LO_BITS) - 1ull))];
    const u64 hi = pw_hi[t * hi_len + (p >> SHIFT_LO_BITS)];
    out[idx] = gl_mul(coeffs[(c << log_n) + p], gl_mul(lo, hi));
}

// Last step of the coset LDE: the DIF outputs (column-major, `blowup` bit-reversed cosets of
// `n` per column) to the row-major LDE matrix, row `t + blowup * i` holding point `i` of
// coset `t`. One thread per output word (coalesced writes, scattered reads).
extern "C" __global__ void lde_transpose(const u64 *src, u64 *dst, u32 log_n, u32 log_blowup,
                                         u32 cols, u64 total) {
    const u64 idx = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                    (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (idx >= total) {
        return;
    }
    const u64 row = idx / cols;
    const u64 c = idx % cols;
    const u64 t = row & ((1ull << log_blowup) - 1ull);
    const u32 i = (u32)(row >> log_blowup);
    const u64 seg = (c << log_blowup) + t;
    dst[idx] = src[(seg << log_n) + gl_rev_bits(i, log_n)];
}
