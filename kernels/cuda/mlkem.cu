// ML-KEM-768 batch decapsulation kernels: one key, many ciphertexts (FIPS 203 ML-KEM.Decaps).
// The algorithm is in mlkem.cuh, shared with the host build that the CPU tests check; this
// file only maps it onto the GPU. A batch is three launches on one stream:
//
// 1. `mlkem768_expand_key_kernel` (one block): parses dk into the expanded key (s_hat, t_hat,
//    A_hat, h, z: 7744 bytes) in device memory. Reads 2400 bytes, writes 7744; the nine
//    SampleNTT samplings run on nine threads, the decodings on all.
// 2. `mlkem768_reject_kernel` (one thread per ciphertext): K_bar = J(z || c) into the output.
//    Reads 1088 bytes per ciphertext as 64-bit lanes, writes 32.
// 3. `mlkem768_decaps_kernel` (one block per ciphertext, grid-stride over
//    the batch): decrypt, re-encrypt, compare, select. Reads the ciphertext once into shared
//    memory (272 coalesced words), the key's polynomials (A_hat, s_hat, t_hat: 7.5 KB shared
//    by every block, served from L1/L2) and K_bar; writes the 32-byte secret. Every
//    intermediate (u, v, w, m', K', r, y, e1, e2, u', v') stays in the block's 5668 bytes of
//    shared memory, which the block zeroes before it exits.
#include "mlkem.cuh"

// The most threads per block the decapsulation kernel is compiled for. The Rust side launches
// it with 128 (DECAPS_BLOCK in kernels/src/cuda/mlkem.rs, the fastest on an H100); the code is
// correct for any block size, as the host harness checks with groups of 1 to 256 threads.
#define MLKEM_BLOCK 256

extern "C" __global__ void __launch_bounds__(256)
    mlkem768_expand_key_kernel(const u8 *__restrict__ dk, mlkem768_key *__restrict__ key) {
    mlkem768_expand_key(dk, key, threadIdx.x, blockDim.x);
}

extern "C" __global__ void __launch_bounds__(256)
    mlkem768_reject_kernel(const mlkem768_key *__restrict__ key, const u32 *__restrict__ cts,
                           u32 *__restrict__ ss, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        mlkem768_reject_secret(key, cts + (u64)i * MLKEM768_CT_WORDS,
                               ss + (u64)i * MLKEM768_SS_WORDS);
    }
}

extern "C" __global__ void __launch_bounds__(MLKEM_BLOCK)
    mlkem768_decaps_kernel(const mlkem768_key *__restrict__ key, const u32 *__restrict__ cts,
                           u32 *__restrict__ ss, u32 n) {
    __shared__ mlkem768_ws ws;
    for (u32 b = blockIdx.x; b < n; b += gridDim.x) {
        mlkem768_decaps_group(key, cts + (u64)b * MLKEM768_CT_WORDS,
                              ss + (u64)b * MLKEM768_SS_WORDS, &ws, threadIdx.x, blockDim.x);
    }
}
