// Rp64_256 and BLAKE3-256 row hashing and Merkle tree levels (winter-crypto's `MerkleTree` layout: node 1 is
// the root, parents of level `m` at nodes[m..2m], children at nodes[2m..4m] or the leaves).
#include "rescue.cuh"
#include "blake3.cuh"

// `Rp64_256::hash_elements` of every row of a row-major matrix, one thread per row.
// Memory traffic: each row read once (8 B per element) and 32 B of digest written per row;
// compute bound (one permutation per 8 elements).
extern "C" __global__ void __launch_bounds__(128) rp_hash_rows(const u64 *rows, u64 *digests,
                                                               u64 width, u64 num_rows,
                                                               u64 len_word) {
    const u64 row = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                    (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (row >= num_rows) {
        return;
    }
    u64 d[4];
    rp_hash_strided(rows + row * width, width, 1, len_word, d);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        digests[row * 4 + i] = d[i];
    }
}

// One tree level: `dst[j] = merge(src[2j], src[2j + 1])` for `j < count` (digest indexes,
// 4 words each). Memory traffic: 64 B read and 32 B written per parent.
extern "C" __global__ void __launch_bounds__(128) rp_merge_level(const u64 *src, u64 *dst,
                                                                 u64 count) {
    const u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                  (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (j >= count) {
        return;
    }
    u64 a[4];
    u64 b[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        a[i] = src[(2 * j) * 4 + i];
        b[i] = src[(2 * j + 1) * 4 + i];
    }
    u64 o[4];
    rp_merge(a, b, o);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        dst[j * 4 + i] = o[i];
    }
}

// `Blake3_256::hash_elements` of every row, one thread per row; each digest is 32 bytes
// (8 little-endian u32 words, stored as 4 u64). Memory traffic: each row read once, 32 B
// written per row.
extern "C" __global__ void __launch_bounds__(128) b3_hash_rows(const u64 *rows, u32 *digests,
                                                               u64 width, u64 num_rows) {
    const u64 row = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                    (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (row >= num_rows) {
        return;
    }
    u32 d[8];
    b3_hash_words(rows + row * width, width, 1, d);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        digests[row * 8 + i] = d[i];
    }
}

// One BLAKE3 tree level: `dst[j] = merge(src[2j], src[2j + 1])` (32-byte digests).
// Memory traffic: 64 B read and 32 B written per parent.
extern "C" __global__ void __launch_bounds__(128) b3_merge_level(const u32 *src, u32 *dst,
                                                                 u64 count) {
    const u64 j = (u64)blockIdx.x * blockDim.x + threadIdx.x +
                  (u64)blockIdx.y * gridDim.x * blockDim.x;
    if (j >= count) {
        return;
    }
    u32 a[8];
    u32 b[8];
#pragma unroll
    for (int i = 0; i < 8; i++) {
        a[i] = src[(2 * j) * 8 + i];
        b[i] = src[(2 * j + 1) * 8 + i];
    }
    u32 o[8];
    b3_merge(a, b, o);
#pragma unroll
    for (int i = 0; i < 8; i++) {
        dst[j * 8 + i] = o[i];
    }
}
