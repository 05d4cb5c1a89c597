// Goldilocks arithmetic on raw Montgomery words (winter-math's representation of
// `BaseElement`), integer step for integer step the same as winter-math 0.13, so results are
// bit-exact on any word, canonical or not. `__host__ __device__`: the same code is compiled by
// NVRTC for the GPU and by the host C compiler for the CPU checks (kernels/tests/cuda_host.rs).
// No memory traffic of its own.
#ifndef EPA_FIELD_CUH
#define EPA_FIELD_CUH

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define EPA_HD __host__ __device__ __forceinline__
#else
#define EPA_HD static inline
#define __host__
#define __device__
#endif

typedef unsigned long long u64;
typedef unsigned int u32;

#define EPA_P 0xffffffff00000001ull

// High 64 bits of the 128-bit product `a * b`.
EPA_HD u64 gl_mulhi(u64 a, u64 b) {
#if defined(__CUDA_ARCH__)
    return __umul64hi(a, b);
#else
    return (u64)(((unsigned __int128)a * (unsigned __int128)b) >> 64);
#endif
}

// `0u32.wrapping_sub(flag) as u64`: 2^32 - 1 when the flag is set.
EPA_HD u64 gl_adj(int flag) {
    return flag ? 0xffffffffull : 0ull;
}

// winter-math `a + b`: `a - (p - b)`, corrected on borrow.
EPA_HD u64 gl_add(u64 a, u64 b) {
    u64 pb = EPA_P - b;
    return (a - pb) - gl_adj(a < pb);
}

// winter-math `a - b`.
EPA_HD u64 gl_sub(u64 a, u64 b) {
    return (a - b) - gl_adj(a < b);
}

// winter-math's Montgomery reduction of the 128-bit value `xh * 2^64 + xl`.
EPA_HD u64 gl_mont_red(u64 xl, u64 xh) {
    u64 a = xl + (xl << 32);
    u64 e = a < xl ? 1ull : 0ull;
    u64 b = a - (a >> 32) - e;
    return (xh - b) - gl_adj(xh < b);
}

// Montgomery product `a * b / 2^64 mod p`.
EPA_HD u64 gl_mul(u64 a, u64 b) {
    return gl_mont_red(a * b, gl_mulhi(a, b));
}

EPA_HD u64 gl_square(u64 a) {
    return gl_mul(a, a);
}

// `a^e` by square and multiply; `one` is the Montgomery word of 1.
EPA_HD u64 gl_exp(u64 a, u64 e, u64 one) {
    u64 r = one;
    while (e != 0) {
        if (e & 1ull) {
            r = gl_mul(r, a);
        }
        a = gl_square(a);
        e >>= 1;
    }
    return r;
}

// The Montgomery word of 1 (`2^64 mod p`).
#define EPA_ONE 0x00000000ffffffffull

// `a^(p - 2)`: the inverse of a non-zero element (0 maps to 0), as winter-math's `inv`.
EPA_HD u64 gl_inv(u64 a) {
    return gl_exp(a, EPA_P - 2, EPA_ONE);
}

// winter-math's `as_int`: the canonical integer of a Montgomery word.
EPA_HD u64 gl_to_canonical(u64 x) {
    return gl_mont_red(x, 0);
}

// DIF butterfly `a' = a + b`, `b' = (a - b) * w`.
EPA_HD void gl_dif(u64 *a, u64 *b, u64 w) {
    u64 x = *a;
    u64 y = *b;
    *a = gl_add(x, y);
    *b = gl_mul(gl_sub(x, y), w);
}

// DIT butterfly `t = b * w`, `a' = a + t`, `b' = a - t`.
EPA_HD void gl_dit(u64 *a, u64 *b, u64 w) {
    u64 x = *a;
    u64 t = gl_mul(*b, w);
    *a = gl_add(x, t);
    *b = gl_sub(x, t);
}

// The low `bits` bits of `i`, reversed.
EPA_HD u32 gl_rev_bits(u32 i, u32 bits) {
    if (bits == 0) {
        return 0;
    }
#if defined(__CUDA_ARCH__)
    return __brev(i) >> (32 - bits);
#else
    u32 r = 0;
    for (u32 k = 0; k < bits; k++) {
        r = (r << 1) | ((i >> k) & 1u);
    }
    return r;
#endif
}

#endif
