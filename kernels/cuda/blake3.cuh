// BLAKE3 (hash mode, 32-byte output) over Goldilocks words, as winter-crypto 0.13's
// `Blake3_256<BaseElement>` uses it: a row's digest is BLAKE3 of the canonical little-endian
// bytes of its elements (8 per element), a tree node's is BLAKE3 of its two 32-byte children.
// `__host__ __device__`: tested with the host C compiler against the blake3 crate
// (kernels/tests/cuda_host.rs). Digests are 8 little-endian u32 words (= the 32 bytes).
#ifndef EPA_BLAKE3_CUH
#define EPA_BLAKE3_CUH

#include "field.cuh"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define EPA_B3_CONST __constant__ const
#else
#define EPA_B3_CONST static const
#endif

#define B3_CHUNK_START 1u
#define B3_CHUNK_END 2u
#define B3_PARENT 4u
#define B3_ROOT 8u
// Words (u64) per 1024-byte chunk and per 64-byte block.
#define B3_CHUNK_WORDS 128ull
#define B3_BLOCK_WORDS 8ull
// Depth of the chaining-value stack: inputs up to 2^B3_MAX_DEPTH chunks (callers check).
#define B3_MAX_DEPTH 24

EPA_B3_CONST u32 B3_IV[8] = {0x6A09E667u, 0xBB67AE85u, 0x3C6EF372u, 0xA54FF53Au,
                             0x510E527Fu, 0x9B05688Cu, 0x1F83D9ABu, 0x5BE0CD19u};

// Message word order of each of the 7 rounds (the permutation applied r times).
EPA_B3_CONST unsigned char B3_SCHEDULE[7][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8},
    {3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1},
    {10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6},
    {12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4},
    {9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7},
    {11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13},
};

EPA_HD u32 b3_rotr(u32 x, int n) {
    return (x >> n) | (x << (32 - n));
}

#define B3_G(a, b, c, d, mx, my)            \
    do {                                    \
        s[a] = s[a] + s[b] + (mx);          \
        s[d] = b3_rotr(s[d] ^ s[a], 16);    \
        s[c] = s[c] + s[d];                 \
        s[b] = b3_rotr(s[b] ^ s[c], 12);    \
        s[a] = s[a] + s[b] + (my);          \
        s[d] = b3_rotr(s[d] ^ s[a], 8);     \
        s[c] = s[c] + s[d];                 \
        s[b] = b3_rotr(s[b] ^ s[c], 7);     \
    } while (0)

// The BLAKE3 compression function: `out` gets the 16-word output (its first 8 words are the
// next chaining value).
EPA_HD void b3_compress(const u32 cv[8], const u32 m[16], u64 counter, u32 block_len,
                        u32 flags, u32 out[16]) {
    u32 s[16];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        s[i] = cv[i];
    }
    s[8] = B3_IV[0];
    s[9] = B3_IV[1];
    s[10] = B3_IV[2];
    s[11] = B3_IV[3];
    s[12] = (u32)counter;
    s[13] = (u32)(counter >> 32);
    s[14] = block_len;
    s[15] = flags;
#pragma unroll
    for (int r = 0; r < 7; r++) {
        const unsigned char *o = B3_SCHEDULE[r];
        B3_G(0, 4, 8, 12, m[o[0]], m[o[1]]);
        B3_G(1, 5, 9, 13, m[o[2]], m[o[3]]);
        B3_G(2, 6, 10, 14, m[o[4]], m[o[5]]);
        B3_G(3, 7, 11, 15, m[o[6]], m[o[7]]);
        B3_G(0, 5, 10, 15, m[o[8]], m[o[9]]);
        B3_G(1, 6, 11, 12, m[o[10]], m[o[11]]);
        B3_G(2, 7, 8, 13, m[o[12]], m[o[13]]);
        B3_G(3, 4, 9, 14, m[o[14]], m[o[15]]);
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        out[i] = s[i] ^ s[i + 8];
        out[i + 8] = s[i + 8] ^ cv[i];
    }
}

// The chaining value of a parent node over two child chaining values.
EPA_HD void b3_parent(const u32 left[8], const u32 right[8], u32 flags, u32 out[8]) {
    u32 m[16];
    u32 iv[8];
    u32 o[16];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        m[i] = left[i];
        m[i + 8] = right[i];
        iv[i] = B3_IV[i];
    }
    b3_compress(iv, m, 0, 64, B3_PARENT | flags, o);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        out[i] = o[i];
    }
}

// BLAKE3-256 of the canonical little-endian bytes of the `n` Montgomery words
// `x[0], x[stride], ...` (winter-crypto's `Blake3_256::hash_elements` of `BaseElement`s).
// `n` must stay below 2^B3_MAX_DEPTH chunks of 128 words.
EPA_HD void b3_hash_words(const u64 *x, u64 n, u64 stride, u32 out[8]) {
    u32 stack[B3_MAX_DEPTH][8];
    int depth = 0;
    u64 chunks = n == 0 ? 1 : (n + B3_CHUNK_WORDS - 1) / B3_CHUNK_WORDS;
    u32 cv[8];
    for (u64 ch = 0; ch < chunks; ch++) {
        const u64 start = ch * B3_CHUNK_WORDS;
        const u64 len = n - start < B3_CHUNK_WORDS ? n - start : B3_CHUNK_WORDS;
        u64 blocks = len == 0 ? 1 : (len + B3_BLOCK_WORDS - 1) / B3_BLOCK_WORDS;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            cv[i] = B3_IV[i];
        }
        for (u64 b = 0; b < blocks; b++) {
            const u64 first = start + b * B3_BLOCK_WORDS;
            const u64 bw = len - b * B3_BLOCK_WORDS < B3_BLOCK_WORDS ? len - b * B3_BLOCK_WORDS
                                                                      : B3_BLOCK_WORDS;
            u32 m[16];
#pragma unroll
            for (int k = 0; k < 8; k++) {
                u64 v = (u64)k < bw ? gl_to_canonical(x[(first + (u64)k) * stride]) : 0ull;
                m[2 * k] = (u32)v;
                m[2 * k + 1] = (u32)(v >> 32);
            }
            u32 flags = (b == 0 ? B3_CHUNK_START : 0u) | (b + 1 == blocks ? B3_CHUNK_END : 0u);
            if (b + 1 == blocks && chunks == 1) {
                flags |= B3_ROOT;
            }
            u32 o[16];
            b3_compress(cv, m, ch, (u32)(bw * 8), flags, o);
#pragma unroll
            for (int i = 0; i < 8; i++) {
                cv[i] = o[i];
            }
        }
        if (ch + 1 < chunks) {
            // Merge completed subtrees: one merge per trailing zero bit of the chunk count.
            u64 total = ch + 1;
            while ((total & 1ull) == 0 && depth > 0) {
                depth--;
                b3_parent(stack[depth], cv, 0, cv);
                total >>= 1;
            }
            for (int i = 0; i < 8; i++) {
                stack[depth][i] = cv[i];
            }
            depth++;
        }
    }
    while (depth > 0) {
        depth--;
        b3_parent(stack[depth], cv, depth == 0 ? B3_ROOT : 0u, cv);
    }
#pragma unroll
    for (int i = 0; i < 8; i++) {
        out[i] = cv[i];
    }
}

// winter-crypto's `Blake3_256::merge`: BLAKE3-256 of the 64 bytes `a || b` (one block).
EPA_HD void b3_merge(const u32 a[8], const u32 b[8], u32 out[8]) {
    u32 m[16];
    u32 iv[8];
    u32 o[16];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        m[i] = a[i];
        m[i + 8] = b[i];
        iv[i] = B3_IV[i];
    }
    b3_compress(iv, m, 0, 64, B3_CHUNK_START | B3_CHUNK_END | B3_ROOT, o);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        out[i] = o[i];
    }
}

#endif
