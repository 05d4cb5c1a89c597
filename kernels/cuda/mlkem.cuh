// ML-KEM-768 decapsulation (FIPS 203 `ML-KEM.Decaps`), one key, many ciphertexts.
//
// Every helper is `__host__ __device__`: NVRTC compiles this header (through mlkem.cu) for the
// GPU, and the host C compiler compiles the very same code (through mlkem_host.c) for the CPU
// checks in kernels/tests/cuda_mlkem_host.rs, which compare it with the reference
// implementation on the Wycheproof vectors and on fresh random ciphertexts.
//
// Structure:
// 1. Keccak-f[1600] and the four FIPS 202 functions ML-KEM needs, each specialised to its input
//    shape: G = SHA3-512(m || h), PRF = SHAKE256(r || N) (128 bytes), J = SHAKE256(z || c)
//    (32 bytes), XOF = SHAKE128(rho || j || i) for SampleNTT. The state lives in registers
//    (every index into it is a compile-time constant after unrolling).
// 2. Arithmetic modulo q = 3329 on canonical residues (Barrett reduction with an exact
//    quotient, no data-dependent branches), the NTT / inverse NTT and the base-case products of
//    FIPS 203 Algorithms 9-12, Compress / Decompress and the byte (de)codings.
// 3. Cooperative functions run by all threads of a group: `tid` and `nt` are this thread's index
//    and the group size; a work loop `for (i = tid; i < n; i += nt)` covers every item once for
//    any group size, and `MLKEM_SYNC()` separates the stages. On the GPU a group is a thread
//    block (`__syncthreads`); on the host it is one thread (`nt == 1`, the barrier is a no-op)
//    or a set of POSIX threads with a barrier (mlkem_host.c), which checks the stage barriers.
//    - `mlkem768_expand_key`: once per batch, parses `dk = dk_pke || ek || H(ek) || z` into
//      `s_hat`, `t_hat`, the matrix `A_hat` (SampleNTT rejection sampling), `h` and `z`.
//    - `mlkem768_reject_secret` (one thread per ciphertext, not cooperative): the
//      implicit-rejection secret K_bar = J(z || c), written where the secret goes.
//    - `mlkem768_decaps_group`: one ciphertext: K-PKE.Decrypt, G, re-encryption, a
//      constant-time comparison (no early exit) and the selection between K' and K_bar.
//
// Secrets (the message m, K', r, the noise) live only in the group's workspace, which the group
// overwrites with zeros before it finishes.
#ifndef EPA_MLKEM_CUH
#define EPA_MLKEM_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define MLKEM_HD __host__ __device__ __forceinline__
#define MLKEM_TABLE __device__ __constant__ const
#define MLKEM_UNROLL _Pragma("unroll")
#define MLKEM_NO_UNROLL _Pragma("unroll 1")
#else
#define MLKEM_HD static inline
#define MLKEM_TABLE static const
#define MLKEM_UNROLL _Pragma("GCC unroll 32")
#define MLKEM_NO_UNROLL _Pragma("GCC unroll 1")
#endif

#if defined(__CUDA_ARCH__)
#define MLKEM_SYNC() __syncthreads()
#define MLKEM_ATOMIC_OR(p, v) atomicOr((p), (v))
#else
// The host build (mlkem_host.c) defines the barrier: a no-op for one thread per group, a POSIX
// barrier for several.
static void mlkem_host_sync(void);
#define MLKEM_SYNC() mlkem_host_sync()
#define MLKEM_ATOMIC_OR(p, v) __atomic_fetch_or((p), (v), __ATOMIC_RELAXED)
#endif

typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

// ---------------------------------------------------------------------------------------------
// Sizes (FIPS 203, ML-KEM-768: k = 3, eta1 = eta2 = 2, du = 10, dv = 4).

#define MLKEM_Q 3329u
#define MLKEM_K 3
#define MLKEM_N 256
#define MLKEM768_DK_BYTES 2400
#define MLKEM768_CT_BYTES 1088
#define MLKEM768_CT_WORDS (MLKEM768_CT_BYTES / 4)
#define MLKEM768_SS_BYTES 32
#define MLKEM768_SS_WORDS 8
// Offsets in dk: dk_pke (ByteEncode12(s_hat)) || ek (ByteEncode12(t_hat) || rho) || h || z.
#define MLKEM768_DK_T 1152
#define MLKEM768_DK_RHO 2304
#define MLKEM768_DK_H 2336
#define MLKEM768_DK_Z 2368
// Offset of c2 (ByteEncode4(Compress4(v))) in a ciphertext; c1 is 3 x 320 bytes before it.
#define MLKEM768_CT_V 960

// ---------------------------------------------------------------------------------------------
// Keccak-f[1600] (FIPS 202).

MLKEM_TABLE u64 MLKEM_KECCAK_RC[24] = {
    0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
    0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
    0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
    0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
    0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
    0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull,
};

MLKEM_HD u64 mlkem_rol64(u64 x, unsigned n) {
    return (x << n) | (x >> (64u - n));
}

// The 24 rounds on a state of 25 lanes (lane x + 5 y). Only the round loop is left rolled; every
// lane index is a compile-time constant, so the state stays in registers on the GPU.
MLKEM_HD void mlkem_keccak_f1600(u64 s[25]) {
    for (int round = 0; round < 24; round++) {
        u64 c[5];
        MLKEM_UNROLL
        for (int x = 0; x < 5; x++) {
            c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
        }
        MLKEM_UNROLL
        for (int x = 0; x < 5; x++) {
            u64 d = c[(x + 4) % 5] ^ mlkem_rol64(c[(x + 1) % 5], 1);
            MLKEM_UNROLL
            for (int y = 0; y < 25; y += 5) {
                s[x + y] ^= d;
            }
        }
        // rho and pi: B[y, 2x + 3y] = rot(A[x, y], r[x, y]).
        u64 b[25];
        b[0] = s[0];
        b[10] = mlkem_rol64(s[1], 1);
        b[20] = mlkem_rol64(s[2], 62);
        b[5] = mlkem_rol64(s[3], 28);
        b[15] = mlkem_rol64(s[4], 27);
        b[16] = mlkem_rol64(s[5], 36);
        b[1] = mlkem_rol64(s[6], 44);
        b[11] = mlkem_rol64(s[7], 6);
        b[21] = mlkem_rol64(s[8], 55);
        b[6] = mlkem_rol64(s[9], 20);
        b[7] = mlkem_rol64(s[10], 3);
        b[17] = mlkem_rol64(s[11], 10);
        b[2] = mlkem_rol64(s[12], 43);
        b[12] = mlkem_rol64(s[13], 25);
        b[22] = mlkem_rol64(s[14], 39);
        b[23] = mlkem_rol64(s[15], 41);
        b[8] = mlkem_rol64(s[16], 45);
        b[18] = mlkem_rol64(s[17], 15);
        b[3] = mlkem_rol64(s[18], 21);
        b[13] = mlkem_rol64(s[19], 8);
        b[14] = mlkem_rol64(s[20], 18);
        b[24] = mlkem_rol64(s[21], 2);
        b[9] = mlkem_rol64(s[22], 61);
        b[19] = mlkem_rol64(s[23], 56);
        b[4] = mlkem_rol64(s[24], 14);
        // chi and iota.
        MLKEM_UNROLL
        for (int y = 0; y < 25; y += 5) {
            MLKEM_UNROLL
            for (int x = 0; x < 5; x++) {
                s[y + x] = b[y + x] ^ (~b[y + (x + 1) % 5] & b[y + (x + 2) % 5]);
            }
        }
        s[0] ^= MLKEM_KECCAK_RC[round];
    }
}

MLKEM_HD u64 mlkem_load64(const u8 *p) {
    u64 r = 0;
    MLKEM_UNROLL
    for (int i = 0; i < 8; i++) {
        r |= (u64)p[i] << (8 * i);
    }
    return r;
}

MLKEM_HD void mlkem_store64(u8 *p, u64 v) {
    MLKEM_UNROLL
    for (int i = 0; i < 8; i++) {
        p[i] = (u8)(v >> (8 * i));
    }
}

MLKEM_HD void mlkem_zero_state(u64 s[25]) {
    MLKEM_UNROLL
    for (int i = 0; i < 25; i++) {
        s[i] = 0;
    }
}

// G(m || h) = SHA3-512 of 64 bytes (one block of rate 72; padding 0x06 ... 0x80): the 64-byte
// output K' || r.
MLKEM_HD void mlkem_g(const u8 m[32], const u8 h[32], u8 out[64]) {
    u64 s[25];
    mlkem_zero_state(s);
    MLKEM_UNROLL
    for (int i = 0; i < 4; i++) {
        s[i] = mlkem_load64(m + 8 * i);
        s[4 + i] = mlkem_load64(h + 8 * i);
    }
    s[8] = 0x8000000000000006ull;
    mlkem_keccak_f1600(s);
    MLKEM_UNROLL
    for (int i = 0; i < 8; i++) {
        mlkem_store64(out + 8 * i, s[i]);
    }
    mlkem_zero_state(s);
}

// PRF_2(r, N) = SHAKE256(r || N), 128 bytes (one block of rate 136; padding 0x1F ... 0x80).
MLKEM_HD void mlkem_prf(const u8 r[32], u8 n, u8 out[128]) {
    u64 s[25];
    mlkem_zero_state(s);
    MLKEM_UNROLL
    for (int i = 0; i < 4; i++) {
        s[i] = mlkem_load64(r + 8 * i);
    }
    s[4] = (u64)n | (0x1full << 8);
    s[16] = 0x8000000000000000ull;
    mlkem_keccak_f1600(s);
    MLKEM_UNROLL
    for (int i = 0; i < 16; i++) {
        mlkem_store64(out + 8 * i, s[i]);
    }
    mlkem_zero_state(s);
}

// Lane `i` of a byte string at an 8-byte aligned address: one 64-bit load on the GPU, bytes on
// the host (no alignment or aliasing assumption there).
MLKEM_HD u64 mlkem_load_lane(const u8 *p, unsigned i) {
#if defined(__CUDA_ARCH__)
    return ((const u64 *)p)[i];
#else
    return mlkem_load64(p + 8u * i);
#endif
}

// J(z || c) = SHAKE256(z || c), 32 bytes: 1120 input bytes are 8 full blocks of 136 and a last
// block of 32 bytes plus padding. Lane boundaries fall on multiples of 8 in both z and c; `c`
// must be 8-byte aligned.
MLKEM_HD void mlkem_j(const u8 z[32], const u8 *c, u8 out[32]) {
    u64 s[25];
    mlkem_zero_state(s);
    // The first block: z (4 lanes) and c[0..104] (13 lanes).
    MLKEM_UNROLL
    for (int i = 0; i < 4; i++) {
        s[i] ^= mlkem_load64(z + 8 * i);
    }
    MLKEM_UNROLL
    for (int i = 4; i < 17; i++) {
        s[i] ^= mlkem_load_lane(c, i - 4);
    }
    mlkem_keccak_f1600(s);
    // Blocks 1..7: c[104 + 136 (b - 1) ..][..136], lanes 13 + 17 (b - 1) ...
    for (unsigned b = 1; b < 8u; b++) {
        unsigned base = 13u + 17u * (b - 1u);
        MLKEM_UNROLL
        for (int i = 0; i < 17; i++) {
            s[i] ^= mlkem_load_lane(c, base + i);
        }
        mlkem_keccak_f1600(s);
    }
    // The last block: c[1056..1088] (lanes 132..135), then the padding.
    MLKEM_UNROLL
    for (int i = 0; i < 4; i++) {
        s[i] ^= mlkem_load_lane(c, 132 + i);
    }
    s[4] ^= 0x1full;
    s[16] ^= 0x8000000000000000ull;
    mlkem_keccak_f1600(s);
    MLKEM_UNROLL
    for (int i = 0; i < 4; i++) {
        mlkem_store64(out + 8 * i, s[i]);
    }
    mlkem_zero_state(s);
}

// ---------------------------------------------------------------------------------------------
// Arithmetic modulo q on canonical residues in [0, q).

// zetas[i] = 17^BitRev7(i) mod q (FIPS 203, Appendix A).
MLKEM_TABLE u16 MLKEM_ZETAS[128] = {
    1,    1729, 2580, 3289, 2642, 630,  1897, 848,  1062, 1919, 193,  797,  2786, 3260, 569,
    1746, 296,  2447, 1339, 1476, 3046, 56,   2240, 1333, 1426, 2094, 535,  2882, 2393, 2879,
    1974, 821,  289,  331,  3253, 1756, 1197, 2304, 2277, 2055, 650,  1977, 2513, 632,  2865,
    33,   1320, 1915, 2319, 1435, 807,  452,  1438, 2868, 1534, 2402, 2647, 2617, 1481, 648,
    2474, 3110, 1227, 910,  17,   2761, 583,  2649, 1637, 723,  2288, 1100, 1409, 2662, 3281,
    233,  756,  2156, 3015, 3050, 1703, 1651, 2789, 1789, 1847, 952,  1461, 2687, 939,  2308,
    2437, 2388, 733,  2337, 268,  641,  1584, 2298, 2037, 3220, 375,  2549, 2090, 1645, 1063,
    319,  2773, 757,  2099, 561,  2466, 2594, 2804, 1092, 403,  1026, 1143, 2150, 2775, 886,
    1722, 1212, 1874, 1029, 2110, 2935, 885,  2154,
};

// gammas[i] = 17^(2 BitRev7(i) + 1) mod q: the moduli X^2 - gamma of the base-case products.
MLKEM_TABLE u16 MLKEM_GAMMAS[128] = {
    17,   3312, 2761, 568,  583,  2746, 2649, 680,  1637, 1692, 723,  2606, 2288, 1041, 1100,
    2229, 1409, 1920, 2662, 667,  3281, 48,   233,  3096, 756,  2573, 2156, 1173, 3015, 314,
    3050, 279,  1703, 1626, 1651, 1678, 2789, 540,  1789, 1540, 1847, 1482, 952,  2377, 1461,
    1868, 2687, 642,  939,  2390, 2308, 1021, 2437, 892,  2388, 941,  733,  2596, 2337, 992,
    268,  3061, 641,  2688, 1584, 1745, 2298, 1031, 2037, 1292, 3220, 109,  375,  2954, 2549,
    780,  2090, 1239, 1645, 1684, 1063, 2266, 319,  3010, 2773, 556,  757,  2572, 2099, 1230,
    561,  2768, 2466, 863,  2594, 735,  2804, 525,  1092, 2237, 403,  2926, 1026, 2303, 1143,
    2186, 2150, 1179, 2775, 554,  886,  2443, 1722, 1607, 1212, 2117, 1874, 1455, 1029, 2300,
    2110, 1219, 2935, 394,  885,  2444, 2154, 1175,
};

// 128^-1 mod q: the scaling of the inverse NTT.
#define MLKEM_INV128 3303u
// floor(2^32 / q): the Barrett constant.
#define MLKEM_BARRETT 1290167u

MLKEM_HD u32 mlkem_mulhi(u32 a, u32 b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return (u32)(((u64)a * (u64)b) >> 32);
#endif
}

// floor(x / q), exact for any 32-bit x: the Barrett estimate is low by at most one, which one
// comparison (as arithmetic, no branch) corrects.
MLKEM_HD u32 mlkem_divq(u32 x) {
    u32 quot = mlkem_mulhi(x, MLKEM_BARRETT);
    u32 rem = x - quot * MLKEM_Q;
    return quot + ((MLKEM_Q - 1u - rem) >> 31);
}

// x mod q in [0, q) for any 32-bit x.
MLKEM_HD u32 mlkem_modq(u32 x) {
    return x - mlkem_divq(x) * MLKEM_Q;
}

// (a + b) mod q for a, b in [0, q).
MLKEM_HD u32 mlkem_add(u32 a, u32 b) {
    u32 r = a + b - MLKEM_Q;
    return r + (MLKEM_Q & (0u - (r >> 31)));
}

// (a - b) mod q for a, b in [0, q).
MLKEM_HD u32 mlkem_sub(u32 a, u32 b) {
    u32 r = a - b;
    return r + (MLKEM_Q & (0u - (r >> 31)));
}

// (a * b) mod q for a, b in [0, q).
MLKEM_HD u32 mlkem_mul(u32 a, u32 b) {
    return mlkem_modq(a * b);
}

// Compress_d(x) = round(2^d x / q) mod 2^d for x in [0, q) (q is odd: no ties).
MLKEM_HD u32 mlkem_compress(u32 x, unsigned d) {
    return mlkem_divq((x << d) + (MLKEM_Q - 1u) / 2u) & ((1u << d) - 1u);
}

// Decompress_d(y) = round(q y / 2^d), ties up, for y in [0, 2^d).
MLKEM_HD u32 mlkem_decompress(u32 y, unsigned d) {
    return (y * MLKEM_Q + (1u << (d - 1u))) >> d;
}

// SamplePolyCBD_2 of one nibble: (b0 + b1) - (b2 + b3) mod q.
MLKEM_HD u32 mlkem_cbd2(u32 nibble) {
    u32 a = (nibble & 1u) + ((nibble >> 1) & 1u);
    u32 b = ((nibble >> 2) & 1u) + ((nibble >> 3) & 1u);
    return mlkem_sub(a, b);
}

// Coefficient i (0..255) of SamplePolyCBD_2 over a 128-byte PRF output.
MLKEM_HD u32 mlkem_cbd2_at(const u8 *prf, unsigned i) {
    return mlkem_cbd2((u32)(prf[i >> 1] >> (4u * (i & 1u))) & 15u);
}

// One butterfly of layer `layer` (0..6) of the NTT (FIPS 203 Algorithm 9): butterfly b (0..127)
// pairs f[j] and f[j + len] with len = 128 >> layer.
MLKEM_HD void mlkem_ntt_butterfly(u16 *f, unsigned layer, unsigned b) {
    unsigned len = 128u >> layer;
    unsigned group = b >> (7u - layer);
    unsigned j = 2u * len * group + (b & (len - 1u));
    u32 zeta = MLKEM_ZETAS[(1u << layer) + group];
    u32 lo = f[j];
    u32 t = mlkem_mul(zeta, f[j + len]);
    f[j + len] = (u16)mlkem_sub(lo, t);
    f[j] = (u16)mlkem_add(lo, t);
}

// One butterfly of layer `layer` (0..6) of the inverse NTT (Algorithm 10, without the final
// scaling by 128^-1): len = 2 << layer.
MLKEM_HD void mlkem_intt_butterfly(u16 *f, unsigned layer, unsigned b) {
    unsigned len = 2u << layer;
    unsigned group = b >> (layer + 1u);
    unsigned j = 2u * len * group + (b & (len - 1u));
    u32 zeta = MLKEM_ZETAS[(256u >> (layer + 1u)) - 1u - group];
    u32 lo = f[j];
    u32 hi = f[j + len];
    f[j] = (u16)mlkem_add(lo, hi);
    f[j + len] = (u16)mlkem_mul(zeta, mlkem_sub(hi, lo));
}

// Accumulates the base-case product (Algorithm 12) of pair i of a and b into c0, c1 without
// reduction: each term is below 2 q^2 < 2^25, so a sum of three stays far below 2^32.
MLKEM_HD void mlkem_basemul_acc(const u16 *a, const u16 *b, unsigned i, u32 *c0, u32 *c1) {
    u32 a0 = a[2 * i], a1 = a[2 * i + 1];
    u32 b0 = b[2 * i], b1 = b[2 * i + 1];
    *c0 += a0 * b0 + mlkem_mul(a1, b1) * (u32)MLKEM_GAMMAS[i];
    *c1 += a0 * b1 + a1 * b0;
}

// ---------------------------------------------------------------------------------------------
// The key, expanded once per batch.

// One decapsulation key, ready for many ciphertexts: every polynomial is in the NTT domain with
// canonical coefficients. `a[i][j]` = SampleNTT(rho || j || i), as FIPS 203 K-PKE.Encrypt.
typedef struct {
    u16 a[MLKEM_K][MLKEM_K][MLKEM_N];
    u16 s[MLKEM_K][MLKEM_N];
    u16 t[MLKEM_K][MLKEM_N];
    u8 h[32];
    u8 z[32];
} mlkem768_key;

// The Rust side allocates the key by this size (kernels/src/cuda/mlkem.rs).
typedef char mlkem768_key_size_is_7744[(sizeof(mlkem768_key) == 7744) ? 1 : -1];

// Coefficients 2p and 2p + 1 of a ByteDecode_12 encoding (three bytes per pair), reduced mod q
// as FIPS 203 ByteDecode_12 specifies.
MLKEM_HD void mlkem_decode12_pair(const u8 *enc, unsigned p, u16 *out) {
    u32 b0 = enc[3 * p], b1 = enc[3 * p + 1], b2 = enc[3 * p + 2];
    out[2 * p] = (u16)mlkem_modq(b0 | ((b1 & 15u) << 8));
    out[2 * p + 1] = (u16)mlkem_modq((b1 >> 4) | (b2 << 4));
}

// SampleNTT(rho || j || i) (Algorithm 7): SHAKE128 squeezed block by block (168 bytes = 56
// triples, so no triple straddles two blocks), two 12-bit candidates per triple, kept below q.
// Data-dependent in the public seed only.
MLKEM_HD void mlkem_sample_ntt(const u8 rho[32], u8 j, u8 i, u16 out[MLKEM_N]) {
    u64 s[25];
    mlkem_zero_state(s);
    MLKEM_UNROLL
    for (int l = 0; l < 4; l++) {
        s[l] = mlkem_load64(rho + 8 * l);
    }
    s[4] = (u64)j | ((u64)i << 8) | (0x1full << 16);
    s[20] = 0x8000000000000000ull;
    unsigned count = 0;
    while (count < MLKEM_N) {
        mlkem_keccak_f1600(s);
        u8 block[168];
        MLKEM_UNROLL
        for (int l = 0; l < 21; l++) {
            mlkem_store64(block + 8 * l, s[l]);
        }
        // Kept rolled: the block is read at run-time offsets (local memory on the GPU, once
        // per batch), where full unrolling would spill registers instead.
        MLKEM_NO_UNROLL
        for (unsigned p = 0; p < 168 && count < MLKEM_N; p += 3) {
            u32 d1 = (u32)block[p] | (((u32)block[p + 1] & 15u) << 8);
            u32 d2 = ((u32)block[p + 1] >> 4) | ((u32)block[p + 2] << 4);
            if (d1 < MLKEM_Q) {
                out[count++] = (u16)d1;
            }
            if (d2 < MLKEM_Q && count < MLKEM_N) {
                out[count++] = (u16)d2;
            }
        }
    }
}

// Expands `dk` (2400 bytes) into `key`, cooperatively: thread `tid` of `nt` takes every nt-th
// item. No barrier inside: every item writes its own part of `key`, and the caller separates
// this from the decapsulations (a kernel boundary on the GPU, sequencing on the host).
MLKEM_HD void mlkem768_expand_key(const u8 *dk, mlkem768_key *key, unsigned tid, unsigned nt) {
    // s_hat and t_hat: 3 x 128 coefficient pairs each.
    for (unsigned p = tid; p < 2u * MLKEM_K * 128u; p += nt) {
        unsigned which = p / (MLKEM_K * 128u);
        unsigned q = p % (MLKEM_K * 128u);
        unsigned poly = q / 128u;
        const u8 *enc = dk + which * MLKEM768_DK_T + 384u * poly;
        u16 *out = which == 0 ? key->s[poly] : key->t[poly];
        mlkem_decode12_pair(enc, q % 128u, out);
    }
    // A_hat: nine independent rejection samplings.
    for (unsigned e = tid; e < MLKEM_K * MLKEM_K; e += nt) {
        unsigned i = e / MLKEM_K, j = e % MLKEM_K;
        mlkem_sample_ntt(dk + MLKEM768_DK_RHO, (u8)j, (u8)i, key->a[i][j]);
    }
    for (unsigned b = tid; b < 64u; b += nt) {
        if (b < 32u) {
            key->h[b] = dk[MLKEM768_DK_H + b];
        } else {
            key->z[b - 32u] = dk[MLKEM768_DK_Z + b - 32u];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One ciphertext per group.

// A group's workspace (shared memory on the GPU, 5668 bytes). Regions are reused across
// stages where their lifetimes do not overlap, as the stage comments in
// `mlkem768_decaps_group` say.
typedef struct {
    // The ciphertext, as words so that it is loaded 4 bytes at a time.
    u32 ct[MLKEM768_CT_WORDS];
    // Decrypt: u (3 polys) then NTT(u), and v. Encrypt: A_hat^T y (3 polys) and t_hat^T y.
    u16 p[MLKEM_K + 1][MLKEM_N];
    // Decrypt: w = s_hat o NTT(u) (poly 0). Encrypt: y, then NTT(y).
    u16 y[MLKEM_K][MLKEM_N];
    // The seven PRF outputs: y_0..2, e1_0..2, e2.
    u8 prf[2 * MLKEM_K + 1][128];
    // The decrypted message m'.
    u8 m[32];
    // K' || r = G(m' || h), as words for the final selection.
    u32 kr[16];
    // Non-zero when the re-encryption differs from the ciphertext.
    u32 diff;
} mlkem768_ws;

typedef char mlkem768_ws_size_is_5668[(sizeof(mlkem768_ws) == 5668) ? 1 : -1];

// The 4-coefficient group g (0..255) of the re-encryption, compressed and encoded exactly as the
// ciphertext bytes at the same place: groups 0..191 are u' (10 bits per coefficient, 5 bytes),
// 192..255 are v' (4 bits, 2 bytes). Returns the XOR of the recomputed and the received bytes.
MLKEM_HD u32 mlkem_reencrypt_diff(const mlkem768_ws *ws, unsigned g) {
    const u8 *ct = (const u8 *)ws->ct;
    if (g < 192u) {
        unsigned poly = g / 64u;
        unsigned c = 4u * (g % 64u);
        const u8 *e1 = ws->prf[MLKEM_K + poly];
        u32 x[4];
        MLKEM_UNROLL
        for (int k = 0; k < 4; k++) {
            u32 u = mlkem_mul(ws->p[poly][c + k], MLKEM_INV128);
            x[k] = mlkem_compress(mlkem_add(u, mlkem_cbd2_at(e1, c + k)), 10);
        }
        const u8 *enc = ct + 5u * g;
        u32 d = (u32)(u8)x[0] ^ enc[0];
        d |= (u32)(u8)((x[0] >> 8) | (x[1] << 2)) ^ enc[1];
        d |= (u32)(u8)((x[1] >> 6) | (x[2] << 4)) ^ enc[2];
        d |= (u32)(u8)((x[2] >> 4) | (x[3] << 6)) ^ enc[3];
        d |= (u32)(u8)(x[3] >> 2) ^ enc[4];
        return d;
    }
    unsigned c = 4u * (g - 192u);
    const u8 *e2 = ws->prf[2 * MLKEM_K];
    u32 x[4];
    MLKEM_UNROLL
    for (int k = 0; k < 4; k++) {
        unsigned i = c + k;
        u32 v = mlkem_mul(ws->p[MLKEM_K][i], MLKEM_INV128);
        u32 mu = ((u32)(ws->m[i >> 3] >> (i & 7u)) & 1u) * ((MLKEM_Q + 1u) / 2u);
        v = mlkem_add(mlkem_add(v, mlkem_cbd2_at(e2, i)), mu);
        x[k] = mlkem_compress(v, 4);
    }
    const u8 *enc = ct + MLKEM768_CT_V + 2u * (g - 192u);
    u32 d = (u32)(u8)(x[0] | (x[1] << 4)) ^ enc[0];
    d |= (u32)(u8)(x[2] | (x[3] << 4)) ^ enc[1];
    return d;
}

// The implicit-rejection secret K_bar = J(z || c) of one ciphertext (272 words, 8-byte aligned)
// into `ss` (8 words), where `mlkem768_decaps_group` expects it. One thread per ciphertext: the
// nine permutations of J run in lockstep across a warp instead of on one lane of a block.
MLKEM_HD void mlkem768_reject_secret(const mlkem768_key *key, const u32 *ct, u32 *ss) {
    u32 kbar[MLKEM768_SS_WORDS];
    mlkem_j(key->z, (const u8 *)ct, (u8 *)kbar);
    MLKEM_UNROLL
    for (int i = 0; i < MLKEM768_SS_WORDS; i++) {
        ss[i] = kbar[i];
        kbar[i] = 0;
    }
}

// Decapsulates the ciphertext `ct` (272 words) under `key` into `ss` (8 words, holding K_bar from
// `mlkem768_reject_secret` on entry), run by every thread of a group with its index `tid` of
// `nt` over the group's workspace `ws`. The barriers
// `MLKEM_SYNC()` are reached by every thread of the group the same number of times (no barrier
// sits under a thread-dependent condition).
MLKEM_HD void mlkem768_decaps_group(const mlkem768_key *key, const u32 *ct, u32 *ss,
                                    mlkem768_ws *ws, unsigned tid, unsigned nt) {
    // Stage 0: load c (the workspace may still be in use by the previous ciphertext).
    MLKEM_SYNC();
    for (unsigned i = tid; i < MLKEM768_CT_WORDS; i += nt) {
        ws->ct[i] = ct[i];
    }
    if (tid == 0) {
        ws->diff = 0;
    }
    MLKEM_SYNC();
    const u8 *c = (const u8 *)ws->ct;

    // Stage 1: u = Decompress_10(ByteDecode_10(c1)) into p[0..2], v = Decompress_4(c2) into
    // p[3], four coefficients per item.
    for (unsigned g = tid; g < 256u; g += nt) {
        if (g < 192u) {
            const u8 *enc = c + 5u * g;
            u32 b0 = enc[0], b1 = enc[1], b2 = enc[2], b3 = enc[3], b4 = enc[4];
            u16 *out = &ws->p[g / 64u][4u * (g % 64u)];
            out[0] = (u16)mlkem_decompress(b0 | ((b1 & 0x03u) << 8), 10);
            out[1] = (u16)mlkem_decompress((b1 >> 2) | ((b2 & 0x0fu) << 6), 10);
            out[2] = (u16)mlkem_decompress((b2 >> 4) | ((b3 & 0x3fu) << 4), 10);
            out[3] = (u16)mlkem_decompress((b3 >> 6) | (b4 << 2), 10);
        } else {
            const u8 *enc = c + MLKEM768_CT_V + 2u * (g - 192u);
            u16 *out = &ws->p[MLKEM_K][4u * (g - 192u)];
            out[0] = (u16)mlkem_decompress(enc[0] & 15u, 4);
            out[1] = (u16)mlkem_decompress(enc[0] >> 4, 4);
            out[2] = (u16)mlkem_decompress(enc[1] & 15u, 4);
            out[3] = (u16)mlkem_decompress(enc[1] >> 4, 4);
        }
    }
    MLKEM_SYNC();

    // Stage 2: NTT(u), the three polynomials together, one barrier per layer.
    for (unsigned layer = 0; layer < 7u; layer++) {
        for (unsigned b = tid; b < MLKEM_K * 128u; b += nt) {
            mlkem_ntt_butterfly(ws->p[b / 128u], layer, b % 128u);
        }
        MLKEM_SYNC();
    }

    // Stage 3: w_hat = s_hat^T o NTT(u) into y[0].
    for (unsigned i = tid; i < 128u; i += nt) {
        u32 c0 = 0, c1 = 0;
        MLKEM_UNROLL
        for (int j = 0; j < MLKEM_K; j++) {
            mlkem_basemul_acc(key->s[j], ws->p[j], i, &c0, &c1);
        }
        ws->y[0][2 * i] = (u16)mlkem_modq(c0);
        ws->y[0][2 * i + 1] = (u16)mlkem_modq(c1);
    }
    MLKEM_SYNC();

    // Stage 4: w = NTT^-1(w_hat) (scaled in stage 5).
    for (unsigned layer = 0; layer < 7u; layer++) {
        for (unsigned b = tid; b < 128u; b += nt) {
            mlkem_intt_butterfly(ws->y[0], layer, b);
        }
        MLKEM_SYNC();
    }

    // Stage 5: m' = ByteEncode_1(Compress_1(v - w)), a byte per item.
    for (unsigned i = tid; i < 32u; i += nt) {
        u32 byte = 0;
        MLKEM_UNROLL
        for (int k = 0; k < 8; k++) {
            u32 w = mlkem_mul(ws->y[0][8 * i + k], MLKEM_INV128);
            byte |= mlkem_compress(mlkem_sub(ws->p[MLKEM_K][8 * i + k], w), 1) << k;
        }
        ws->m[i] = (u8)byte;
    }
    MLKEM_SYNC();

    // Stage 6: (K', r) = G(m' || h), one thread.
    if (tid == 0) {
        mlkem_g(ws->m, key->h, (u8 *)ws->kr);
    }
    MLKEM_SYNC();

    // Stage 7: the seven PRF outputs SHAKE256(r || N), N = 0..6: seven neighbouring threads, so
    // that on the GPU they run the permutation in lockstep in one warp.
    for (unsigned job = tid; job < 2u * MLKEM_K + 1u; job += nt) {
        mlkem_prf((const u8 *)ws->kr + 32, (u8)job, ws->prf[job]);
    }
    MLKEM_SYNC();

    // Stage 8: y = SamplePolyCBD_2(PRF(r, 0..2)) into y[0..2] (w is no longer needed), two
    // coefficients per byte.
    for (unsigned i = tid; i < MLKEM_K * 128u; i += nt) {
        unsigned poly = i / 128u, byte = i % 128u;
        u32 x = ws->prf[poly][byte];
        ws->y[poly][2 * byte] = (u16)mlkem_cbd2(x & 15u);
        ws->y[poly][2 * byte + 1] = (u16)mlkem_cbd2(x >> 4);
    }
    MLKEM_SYNC();

    // Stage 9: y_hat = NTT(y).
    for (unsigned layer = 0; layer < 7u; layer++) {
        for (unsigned b = tid; b < MLKEM_K * 128u; b += nt) {
            mlkem_ntt_butterfly(ws->y[b / 128u], layer, b % 128u);
        }
        MLKEM_SYNC();
    }

    // Stage 10: A_hat^T o y_hat into p[0..2] and t_hat^T o y_hat into p[3] (u and v are no
    // longer needed).
    for (unsigned item = tid; item < (MLKEM_K + 1u) * 128u; item += nt) {
        unsigned row = item / 128u, i = item % 128u;
        u32 c0 = 0, c1 = 0;
        MLKEM_UNROLL
        for (int j = 0; j < MLKEM_K; j++) {
            const u16 *a = row < MLKEM_K ? key->a[j][row] : key->t[j];
            mlkem_basemul_acc(a, ws->y[j], i, &c0, &c1);
        }
        ws->p[row][2 * i] = (u16)mlkem_modq(c0);
        ws->p[row][2 * i + 1] = (u16)mlkem_modq(c1);
    }
    MLKEM_SYNC();

    // Stage 11: NTT^-1 of the four (scaled in stage 12).
    for (unsigned layer = 0; layer < 7u; layer++) {
        for (unsigned b = tid; b < (MLKEM_K + 1u) * 128u; b += nt) {
            mlkem_intt_butterfly(ws->p[b / 128u], layer, b % 128u);
        }
        MLKEM_SYNC();
    }

    // Stage 12: u' = NTT^-1(..) + e1, v' = NTT^-1(..) + e2 + Decompress_1(m'), compressed and
    // compared with c: every group is compared, the differences OR-ed (no early exit).
    u32 diff = 0;
    for (unsigned g = tid; g < 256u; g += nt) {
        diff |= mlkem_reencrypt_diff(ws, g);
    }
    MLKEM_ATOMIC_OR(&ws->diff, diff);
    MLKEM_SYNC();

    // Stage 13: K = K' if c' == c, else K_bar (in `ss` on entry), selected with a mask.
    u32 reject = 0u - ((ws->diff | (0u - ws->diff)) >> 31);
    for (unsigned i = tid; i < MLKEM768_SS_WORDS; i += nt) {
        ss[i] = ws->kr[i] ^ (reject & (ws->kr[i] ^ ss[i]));
    }
    MLKEM_SYNC();

    // Stage 14: wipe the workspace (m', K', r, the noise, the plaintext-dependent polynomials).
    u32 *words = (u32 *)ws;
    for (unsigned i = tid; i < (unsigned)(sizeof(mlkem768_ws) / 4u); i += nt) {
        words[i] = 0;
    }
}

#endif // EPA_MLKEM_CUH
