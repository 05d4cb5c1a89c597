// The per-thread bodies of the NTT and coset LDE kernels (ntt.cu), `__host__ __device__` so
// that the host C compiler can run whole transforms with the same index arithmetic on the CPU
// (kernels/tests/cuda_host.rs): the host runs one "thread" per block, so its barriers are
// no-ops.
//
// The forward transform is a decimation in frequency (natural order in, bit-reversed out)
// followed by a bit reversal; stage `h` (half-size of its butterflies) uses the twiddles
// `tw[h + j] = w_{2h}^j`, one table for every size up to its length (as the CPU backend).
// Stages run in passes of up to 11 stages over a tile of at most 2^11 words held in shared
// memory: a 2^24 transform makes 3 passes over device memory instead of 24.
#ifndef EPA_NTT_CUH
#define EPA_NTT_CUH

#include "field.cuh"

#if defined(__CUDA_ARCH__)
#define EPA_SYNC() __syncthreads()
#else
#define EPA_SYNC() ((void)0)
#endif

// Log2 of the most words a block holds in shared memory (16 KiB).
#define TILE_BITS 11
// Log2 of the powers per table of the LDE shift (low part).
#define SHIFT_LO_BITS 10

// Global in-column index of local word `l` of tile (`hi`, `mid`) in a pass over bits
// [s, s + r) with `c` consecutive low words.
EPA_HD u64 ntt_gidx(u32 l, u64 hi, u64 mid, u32 s, u32 r, u32 c) {
    return (hi << (s + r)) | ((u64)(l >> c) << s) | (mid << c) | (u64)(l & ((1u << c) - 1u));
}

// One pass of DIF stages over bits [s, s + r) of the in-column index, for tile `tile` of the
// matrix (`tiles_per_col` tiles per column of 2^log_n words): for fixed high bits (above
// s + r) and middle bits [c, s), the 2^r groups times 2^c consecutive low words. Thread `tid`
// of `nthreads` works on the tile through `sh` (2^(r + c) words of shared memory).
EPA_HD void ntt_dif_tile(u64 *x, const u64 *tw, u32 log_n, u32 s, u32 r, u32 c,
                         u64 tiles_per_col, u64 tile, u64 *sh, u32 tid, u32 nthreads) {
    const u64 col = tile / tiles_per_col;
    const u64 t = tile % tiles_per_col;
    const u32 mid_bits = s - c;
    const u64 mid = t & ((1ull << mid_bits) - 1ull);
    const u64 hi = t >> mid_bits;
    u64 *base = x + (col << log_n);
    const u32 words = 1u << (r + c);
    for (u32 l = tid; l < words; l += nthreads) {
        sh[l] = base[ntt_gidx(l, hi, mid, s, r, c)];
    }
    EPA_SYNC();
    for (int b = (int)(s + r) - 1; b >= (int)s; b--) {
        const u64 h = 1ull << b;
        const u32 lb = (u32)b - s + c;
        const u32 half = 1u << lb;
        for (u32 k = tid; k < words / 2; k += nthreads) {
            const u32 i = ((k >> lb) << (lb + 1)) | (k & (half - 1u));
            const u64 g = ntt_gidx(i, hi, mid, s, r, c);
            const u64 w = tw[h + (g & (h - 1ull))];
            u64 a = sh[i];
            u64 bb = sh[i + half];
            gl_dif(&a, &bb, w);
            sh[i] = a;
            sh[i + half] = bb;
        }
        EPA_SYNC();
    }
    for (u32 l = tid; l < words; l += nthreads) {
        base[ntt_gidx(l, hi, mid, s, r, c)] = sh[l];
    }
}

// Word `idx` of the in-place bit reversal of every column of 2^log_n words, times `scale`
// when `do_scale` is set: the smaller index of each pair swaps.
EPA_HD void ntt_bitrev_one(u64 *x, u32 log_n, u64 idx, u64 scale, u32 do_scale) {
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

// Log2 of the side of a tile of the tiled bit reversal (32 x 32 words).
#define BITREV_TILE_BITS 5
#define BITREV_TILE (1u << BITREV_TILE_BITS)
// Row pitch of a tile in shared memory (one word of padding against bank conflicts).
#define BITREV_PITCH (BITREV_TILE + 1u)
// Shared-memory words of `ntt_bitrev_tile` (two tiles).
#define BITREV_SHARED (2u * BITREV_TILE * BITREV_PITCH)

// Block `block` of the tiled bit reversal of columns of 2^log_n words (log_n >= 10), times
// `scale` when `do_scale` is set. An index is (a, m, b): `a` its top 5 bits, `b` its low 5,
// `m` the rest; its reverse is (rev b, rev m, rev a). Block (column, m) with m <= rev m loads
// the 32 x 32 tiles of m and rev m (rows of 32 consecutive words) and writes each into the
// other's place transposed (again rows of 32 consecutive words), so every access is
// coalesced. `sh` holds BITREV_SHARED words.
EPA_HD void ntt_bitrev_tile(u64 *x, u32 log_n, u64 block, u64 scale, u32 do_scale, u64 *sh,
                            u32 tid, u32 nthreads) {
    const u32 mid_bits = log_n - 2u * BITREV_TILE_BITS;
    const u64 col = block >> mid_bits;
    const u32 m = (u32)(block & ((1ull << mid_bits) - 1ull));
    const u32 m2 = gl_rev_bits(m, mid_bits);
    if (m2 < m) {
        // The pair is handled by block m2 (the whole block returns, before any barrier).
        return;
    }
    u64 *base = x + (col << log_n);
    u64 *sa = sh;
    u64 *sb = sh + BITREV_TILE * BITREV_PITCH;
    const u32 hi_shift = mid_bits + BITREV_TILE_BITS;
    const u32 low_mask = BITREV_TILE - 1u;
    for (u32 e = tid; e < BITREV_TILE * BITREV_TILE; e += nthreads) {
        const u64 a = e >> BITREV_TILE_BITS;
        const u64 b = e & low_mask;
        sa[(a * BITREV_PITCH) + b] = base[(a << hi_shift) | ((u64)m << BITREV_TILE_BITS) | b];
        if (m2 != m) {
            sb[(a * BITREV_PITCH) + b] = base[(a << hi_shift) | ((u64)m2 << BITREV_TILE_BITS) | b];
        }
    }
    EPA_SYNC();
    for (u32 e = tid; e < BITREV_TILE * BITREV_TILE; e += nthreads) {
        const u64 a2 = e >> BITREV_TILE_BITS;
        const u64 b2 = e & low_mask;
        // Destination (a2, m2, b2) takes source (rev b2, m, rev a2).
        const u32 ra = gl_rev_bits((u32)a2, BITREV_TILE_BITS);
        const u32 rb = gl_rev_bits((u32)b2, BITREV_TILE_BITS);
        u64 v = sa[rb * BITREV_PITCH + ra];
        if (do_scale) {
            v = gl_mul(v, scale);
        }
        base[(a2 << hi_shift) | ((u64)m2 << BITREV_TILE_BITS) | b2] = v;
        if (m2 != m) {
            u64 w = sb[rb * BITREV_PITCH + ra];
            if (do_scale) {
                w = gl_mul(w, scale);
            }
            base[(a2 << hi_shift) | ((u64)m << BITREV_TILE_BITS) | b2] = w;
        }
    }
}

// Word `idx` of the first LDE step: coefficient `p` of column `c` times `s_t^p` for coset
// `t` (`s_t = offset * g^t`), natural order, from the tables `lo[t][p mod 2^10]` and
// `hi[t][p >> 10]`.
EPA_HD void lde_prep_one(const u64 *coeffs, const u64 *pw_lo, const u64 *pw_hi, u64 *out,
                         u32 log_n, u32 log_blowup, u64 hi_len, u64 idx) {
    const u32 log_big = log_n + log_blowup;
    const u64 c = idx >> log_big;
    const u64 rem = idx & ((1ull << log_big) - 1ull);
    const u64 t = rem >> log_n;
    const u64 p = rem & ((1ull << log_n) - 1ull);
    const u64 lo = pw_lo[(t << SHIFT_LO_BITS) + (p & ((1ull << SHIFT_LO_BITS) - 1ull))];
    const u64 hi = pw_hi[t * hi_len + (p >> SHIFT_LO_BITS)];
    out[idx] = gl_mul(coeffs[(c << log_n) + p], gl_mul(lo, hi));
}

// Side of a tile of the LDE transpose, and the row pitch of its shared-memory copy.
#define LT_TILE 32u
#define LT_PITCH (LT_TILE + 1u)
// Shared-memory words of `lde_transpose_tile`.
#define LT_SHARED (LT_TILE * LT_PITCH)

// Block `block` of the last LDE step for a group of `gcols` columns starting at column `col0`:
// the DIF outputs (column-major, `blowup` bit-reversed cosets of `n` per column: segment
// `c * blowup + t` holds point `rev(j)` of coset `t` at position `j`) to the row-major LDE
// matrix of `out_cols` columns, row `t + blowup * i` holding point `i` of coset `t`.
// Positions `p = t * gcols + c` of an output row block and segment offsets `j` form a
// (blowup * gcols) x n matrix; a block moves one 32 x 32 tile of it through shared memory,
// reading 32 consecutive words of each of 32 segments and writing, for each of 32 rows
// `i = rev(j)`, its positions in runs of consecutive words. `sh` holds LT_SHARED words.
EPA_HD void lde_transpose_tile(const u64 *src, u64 *dst, u32 log_n, u32 log_blowup, u32 gcols,
                               u32 col0, u32 out_cols, u64 block, u64 *sh, u32 tid,
                               u32 nthreads) {
    const u64 n = 1ull << log_n;
    const u64 positions = (u64)gcols << log_blowup;
    const u64 j_tiles = (n + LT_TILE - 1u) / LT_TILE;
    const u64 p0 = (block / j_tiles) * LT_TILE;
    const u64 j0 = (block % j_tiles) * LT_TILE;
    for (u32 e = tid; e < LT_TILE * LT_TILE; e += nthreads) {
        const u32 pl = e / LT_TILE;
        const u32 jl = e % LT_TILE;
        const u64 p = p0 + pl;
        const u64 j = j0 + jl;
        if (p < positions && j < n) {
            const u64 t = p / gcols;
            const u64 c = p % gcols;
            sh[pl * LT_PITCH + jl] = src[(((c << log_blowup) + t) << log_n) + j];
        }
    }
    EPA_SYNC();
    for (u32 e = tid; e < LT_TILE * LT_TILE; e += nthreads) {
        const u32 jl = e / LT_TILE;
        const u32 pl = e % LT_TILE;
        const u64 p = p0 + pl;
        const u64 j = j0 + jl;
        if (p < positions && j < n) {
            const u64 t = p / gcols;
            const u64 c = p % gcols;
            const u64 row = ((u64)gl_rev_bits((u32)j, log_n) << log_blowup) + t;
            dst[row * out_cols + col0 + c] = sh[pl * LT_PITCH + jl];
        }
    }
}

#endif
