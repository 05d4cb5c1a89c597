// Host-side harness of the CUDA C helpers: the `__host__ __device__` code of field.cuh,
// rescue.cuh, blake3.cuh and ntt.cuh compiled with the host C compiler, driven by commands on
// standard input (whitespace-separated words, numbers in hex) and answering on standard output,
// one line per command. kernels/tests/cuda_host.rs builds it and compares every answer with
// winter-math, winter-crypto and the blake3 crate on fresh random inputs. Not part of any
// kernel; never compiled by NVRTC.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "field.cuh"
#include "rescue.cuh"
#include "blake3.cuh"
#include "ntt.cuh"

static u64 rd(void) {
    unsigned long long v;
    if (scanf("%llx", &v) != 1) {
        fprintf(stderr, "host_harness: expected a hex number\n");
        exit(2);
    }
    return (u64)v;
}

static u64 *rd_vec(u64 n) {
    u64 *v = (u64 *)malloc((n ? n : 1) * sizeof(u64));
    if (!v) {
        fprintf(stderr, "host_harness: out of memory\n");
        exit(2);
    }
    for (u64 i = 0; i < n; i++) {
        v[i] = rd();
    }
    return v;
}

static void out_vec(const u64 *v, u64 n) {
    for (u64 i = 0; i < n; i++) {
        printf(i + 1 < n ? "%llx " : "%llx", (unsigned long long)v[i]);
    }
    printf("\n");
}

static void out_u32(const u32 *v, u64 n) {
    for (u64 i = 0; i < n; i++) {
        printf(i + 1 < n ? "%x " : "%x", v[i]);
    }
    printf("\n");
}

// Runs the DIF passes (count, then s r c each) over `segments` columns of 2^log_n words of `x`
// exactly as the kernel grid does, one tile after the other with a single thread.
static void run_dif(u64 *x, const u64 *tw, u32 log_n, u64 segments) {
    u64 passes = rd();
    u32 plan[64][3];
    if (passes > 64) {
        fprintf(stderr, "host_harness: too many passes\n");
        exit(2);
    }
    for (u64 p = 0; p < passes; p++) {
        plan[p][0] = (u32)rd();
        plan[p][1] = (u32)rd();
        plan[p][2] = (u32)rd();
    }
    for (u64 p = 0; p < passes; p++) {
        u32 s = plan[p][0], r = plan[p][1], c = plan[p][2];
        u64 words = 1ull << (r + c);
        u64 tiles_per_col = (1ull << log_n) / words;
        u64 *sh = (u64 *)malloc(words * sizeof(u64));
        for (u64 tile = 0; tile < tiles_per_col * segments; tile++) {
            ntt_dif_tile(x, tw, log_n, s, r, c, tiles_per_col, tile, sh, 0, 1);
        }
        free(sh);
    }
}

int main(void) {
    char op[32];
    while (scanf("%31s", op) == 1) {
        if (!strcmp(op, "add") || !strcmp(op, "sub") || !strcmp(op, "mul")) {
            u64 a = rd(), b = rd();
            u64 r = op[0] == 'a' ? gl_add(a, b) : op[0] == 's' ? gl_sub(a, b) : gl_mul(a, b);
            out_vec(&r, 1);
        } else if (!strcmp(op, "inv") || !strcmp(op, "canon")) {
            u64 a = rd();
            u64 r = op[0] == 'i' ? gl_inv(a) : gl_to_canonical(a);
            out_vec(&r, 1);
        } else if (!strcmp(op, "dif") || !strcmp(op, "dit")) {
            u64 v[2];
            v[0] = rd();
            v[1] = rd();
            u64 w = rd();
            if (op[2] == 'f') {
                gl_dif(&v[0], &v[1], w);
            } else {
                gl_dit(&v[0], &v[1], w);
            }
            out_vec(v, 2);
        } else if (!strcmp(op, "perm")) {
            u64 st[RP_STATE];
            for (int i = 0; i < RP_STATE; i++) {
                st[i] = rd();
            }
            rp_permute(st);
            out_vec(st, RP_STATE);
        } else if (!strcmp(op, "rph")) {
            u64 n = rd();
            u64 len_word = rd();
            u64 *x = rd_vec(n);
            u64 d[4];
            rp_hash_strided(x, n, 1, len_word, d);
            out_vec(d, 4);
            free(x);
        } else if (!strcmp(op, "rpm")) {
            u64 a[4], b[4], d[4];
            for (int i = 0; i < 4; i++) a[i] = rd();
            for (int i = 0; i < 4; i++) b[i] = rd();
            rp_merge(a, b, d);
            out_vec(d, 4);
        } else if (!strcmp(op, "b3h")) {
            u64 n = rd();
            u64 *x = rd_vec(n);
            u32 d[8];
            b3_hash_words(x, n, 1, d);
            out_u32(d, 8);
            free(x);
        } else if (!strcmp(op, "b3m")) {
            u32 a[8], b[8], d[8];
            for (int i = 0; i < 8; i++) a[i] = (u32)rd();
            for (int i = 0; i < 8; i++) b[i] = (u32)rd();
            b3_merge(a, b, d);
            out_u32(d, 8);
        } else if (!strcmp(op, "ntt")) {
            // ntt log_n cols scale do_scale tw[n] data[cols * n] passes...
            u32 log_n = (u32)rd();
            u64 cols = rd();
            u64 scale = rd();
            u32 do_scale = (u32)rd();
            u64 n = 1ull << log_n;
            u64 *tw = rd_vec(n);
            u64 *x = rd_vec(cols * n);
            run_dif(x, tw, log_n, cols);
            if (log_n >= 2 * BITREV_TILE_BITS) {
                // The tiled kernel's blocks, as the backend launches them for long columns.
                u64 sh[BITREV_SHARED];
                u64 blocks = cols << (log_n - 2 * BITREV_TILE_BITS);
                for (u64 blk = 0; blk < blocks; blk++) {
                    ntt_bitrev_tile(x, log_n, blk, scale, do_scale, sh, 0, 1);
                }
            } else {
                for (u64 i = 0; i < cols * n; i++) {
                    ntt_bitrev_one(x, log_n, i, scale, do_scale);
                }
            }
            out_vec(x, cols * n);
            free(tw);
            free(x);
        } else if (!strcmp(op, "lde")) {
            // lde log_n log_blowup cols group hi_len tw[n] lo[blowup << 10] hi[blowup * hi_len]
            //     coeffs[cols * n] passes...: column groups of at most `group` columns, one
            //     after the other, as the backend runs them under a small memory budget.
            u32 log_n = (u32)rd();
            u32 log_blowup = (u32)rd();
            u64 cols = rd();
            u64 group = rd();
            u64 hi_len = rd();
            u64 n = 1ull << log_n;
            u64 blowup = 1ull << log_blowup;
            u64 big = n * blowup;
            u64 *tw = rd_vec(n);
            u64 *lo = rd_vec(blowup << SHIFT_LO_BITS);
            u64 *hi = rd_vec(blowup * hi_len);
            u64 *coeffs = rd_vec(cols * n);
            u64 npasses = rd();
            u64 plan[64 * 3];
            if (npasses > 64) {
                fprintf(stderr, "host_harness: too many passes\n");
                exit(2);
            }
            for (u64 p = 0; p < npasses * 3; p++) {
                plan[p] = rd();
            }
            u64 *scratch = (u64 *)malloc(big * group * sizeof(u64));
            u64 *rows = (u64 *)malloc(big * cols * sizeof(u64));
            for (u64 c0 = 0; c0 < cols; c0 += group) {
                u64 g = cols - c0 < group ? cols - c0 : group;
                for (u64 i = 0; i < big * g; i++) {
                    lde_prep_one(coeffs + c0 * n, lo, hi, scratch, log_n, log_blowup, hi_len, i);
                }
                for (u64 p = 0; p < npasses; p++) {
                    u32 s = (u32)plan[3 * p], r = (u32)plan[3 * p + 1], c = (u32)plan[3 * p + 2];
                    u64 words = 1ull << (r + c);
                    u64 tiles_per_col = n / words;
                    u64 *sh = (u64 *)malloc(words * sizeof(u64));
                    for (u64 tile = 0; tile < tiles_per_col * g * blowup; tile++) {
                        ntt_dif_tile(scratch, tw, log_n, s, r, c, tiles_per_col, tile, sh, 0, 1);
                    }
                    free(sh);
                }
                // The transpose kernel's blocks, one after the other.
                u64 tsh[LT_SHARED];
                u64 tblocks = ((g * blowup + LT_TILE - 1) / LT_TILE) * ((n + LT_TILE - 1) / LT_TILE);
                for (u64 blk = 0; blk < tblocks; blk++) {
                    lde_transpose_tile(scratch, rows, log_n, log_blowup, (u32)g, (u32)c0,
                                       (u32)cols, blk, tsh, 0, 1);
                }
            }
            out_vec(rows, big * cols);
            free(tw);
            free(lo);
            free(hi);
            free(coeffs);
            free(scratch);
            free(rows);
        } else {
            fprintf(stderr, "host_harness: unknown command %s\n", op);
            return 2;
        }
        fflush(stdout);
    }
    return 0;
}
