// The Rescue-Prime `Rp64_256` permutation (12 words of state, 7 rounds), step for step as
// winter-crypto 0.13 computes it on Montgomery words, plus its sponge (`hash_elements`) and
// 2-to-1 `merge`. The inverse S-box x^(1/7) is winter-crypto's exponentiation chain; the MDS
// product is the circulant matrix on 32-bit halves, summed exactly in 64 bits and folded with
// the special form of p (the same integers winter-crypto's frequency-domain product yields).
// `__host__ __device__`: tested with the host C compiler against winter-crypto
// (kernels/tests/cuda_host.rs). Constants: 12 small MDS integers and 168 round-constant words
// (constant memory on the GPU, read uniformly by every thread of a warp).
#ifndef EPA_RESCUE_CUH
#define EPA_RESCUE_CUH

#include "field.cuh"

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define EPA_CONST __constant__ const
#else
#define EPA_CONST static const
#endif

#define RP_STATE 12
#define RP_ROUNDS 7
#define RP_RATE 8
#define RP_RATE_START 4

// First row of the circulant MDS matrix.
EPA_CONST u64 RP_MDS[RP_STATE] = {7, 23, 8, 26, 13, 10, 9, 7, 6, 22, 21, 8};

// ARK1 and ARK2 as raw Montgomery words, one row of 12 per round.
EPA_CONST u64 RP_ARK1[RP_ROUNDS * RP_STATE] = {
    0x3f05bc91ffd5316full, 0xd4bc8d4e4d2ff139ull, 0xed513ba9d10ab322ull, 0xf15414058310b66eull, 0x71f566fb05f8eca9ull, 0x6eb551ebb7df3286ull, 0xe08fab9d929232abull, 0xcae6b66577f91c3bull, 0x4d88558f9237eb1cull, 0xfec7d213f8aea764ull, 0xd4f885b5afec945full, 0x804371c6ed8bacf9ull,
    0x583875b0dd8cdbb6ull, 0x42c884ae3a226dd0ull, 0xac7929b4f8686c3aull, 0xa7f1687da8425ab7ull, 0xfbe31a86a047727aull, 0xb20eecb8a92544b4ull, 0xb450b28f532d53dbull, 0x4afa6d28a3d9fcdaull, 0xdd3749edc4001829ull, 0xa5c8bf243c846750ull, 0xb08a571838eab47dull, 0xc319607d3c319886ull,
    0x56ca1c4bc72b0531ull, 0xa71e24d6a060cc0aull, 0x7b3be59ecb363407ull, 0x334ec938c4349c7eull, 0x4b1411ca02617b4dull, 0x410f62fe14aa9991ull, 0xc1d9ad86cbec6c13ull, 0xb2d2866e924a885bull, 0x779b93befb287f03ull, 0x1dd1769c12b0479cull, 0xcd3daa47e11fd4b5ull, 0xaeea1583558c77f5ull,
    0xcadcd8ece0cd653aull, 0xff57abf8990992a3ull, 0xaee29b8a04a7e26dull, 0xa5d15d768e48875bull, 0x82a9e9d0c9328926ull, 0xfb9ad100f1814675ull, 0xdf12422fcc5baa01ull, 0xd4caf605e44788e4ull, 0x0d1b6fc27bd8bf3full, 0xca3132bbb494d2d2ull, 0x94d0d2337fbe8798ull, 0x9587068f1ab5ea28ull,
    0x96a5e3f9ab7205a4ull, 0xa1305ab85e8a8f78ull, 0x44d828cbd4861db1ull, 0x79ccf88182569277ull, 0x075d20a8b34915f6ull, 0x92eb1cb362387b39ull, 0x59ac1beac266f278ull, 0xee8b348886cdafe0ull, 0x9de0619f79925dbfull, 0xf8091d2eeac4783bull, 0xfda7951a240a92b2ull, 0xd3302a85d2e2e071ull,
    0x6a3106b7d41b5210ull, 0x89ce3255ef8a7665ull, 0xbb878c5945b622d3ull, 0x8e435eda47b1da33ull, 0x1878cbccce6b32ceull, 0xf99d7a1d5979ff34ull, 0xd67cd480832f8f2dull, 0x7cc878bad0a057dbull, 0x645dfbe02e62650aull, 0x95613650d634be9bull, 0x20e2e7516723e77dull, 0x8c89044b5fb7c171ull,
    0x79c6850691b460daull, 0x27280b3c832aa04dull, 0xe3b7f0e64b448a32ull, 0xf78ccbe5c9f2a851ull, 0x3f0d224c20d1d225ull, 0x4e69a7220043b0cfull, 0x1d17daefeb49bb9eull, 0x2dfa643b177b1ca1ull, 0xe8c11c0bc4a9b82cull, 0x3de3d60ed5a05279ull, 0x7ece5514073da985ull, 0xb5e0be78e2fea57full,
};
EPA_CONST u64 RP_ARK2[RP_ROUNDS * RP_STATE] = {
    0xad8f4217e39132ceull, 0xf75e2b4e90bc20ebull, 0x62aeeb6e434513f6ull, 0x7add4628388ab1f9ull, 0xcf706afc07504d21ull, 0x025b035a2eddfef3ull, 0x8e143a04ad68f9eaull, 0x7de7fc5c2f3f3e67ull, 0x8d718ebf2b8e9437ull, 0x91ebe0f1c5e1395eull, 0xef4993ea1f2d521cull, 0xb26d63db27d9be51ull,
    0x41e99fb19b988ab1ull, 0x275a53bc11607b9bull, 0x8cead63f44e93d14ull, 0xb181d3e2fb331864ull, 0x6fa7b59d9e9b0125ull, 0x99c88f95c24f54a3ull, 0x16b19d251be14c08ull, 0xf22b0e2703656f31ull, 0x4ff71f402d70391dull, 0xcd19c3e84f3a04cbull, 0x5796ab54491b81b8ull, 0x1a71babb23839469ull,
    0x06f8103c683086c4ull, 0x855352fac2f78d85ull, 0x1fda04d1d6df9346ull, 0xa7988c0f374c60a4ull, 0x58fb6320713eef30ull, 0x241b5425282461baull, 0x911f457e537f4785ull, 0xe26dd6c15b470e49ull, 0xc807ce192a6b6758ull, 0x8776a02d03ddb3b0ull, 0x7587568d85c50dafull, 0xd2be5045f2db1df1ull,
    0x759fffdd6aac357eull, 0xd80c33f2e97ecad6ull, 0x046f6154c462b9a1ull, 0x9806e0d343d85c50ull, 0x0920a719a6eecbc3ull, 0xdeec635ef8ab9a15ull, 0x15649638eb08dae3ull, 0xcc1f063bd1db9a2bull, 0xd57d19ec43c71294ull, 0xcde946672fd1e880ull, 0xe4f7a8787a1aeb59ull, 0x3c5d83929a529ed9ull,
    0x9f64ebbc8f305e23ull, 0x1ab28cb6b4c65e1aull, 0xf6bcb87e9143e781ull, 0x19980c74c443f5e9ull, 0x4d27fa417c19b8b3ull, 0xf672da693c69ff48ull, 0xf817f0b5e03f4b51ull, 0x9d144d03ece257d7ull, 0x6748f87e9ecd39e7ull, 0xa1fcf662540474caull, 0xdb0c05c3c345a822ull, 0x1ea370a5668bf215ull,
    0x08a064250583a8d4ull, 0x1ee57776d1030144ull, 0x70aba5249644ffb5ull, 0x4c8b5e815b7cb65eull, 0xd7939f0e32922402ull, 0x2f1f419d96779529ull, 0x3d2175e616f8e26aull, 0x75e6973dff2bd7a9ull, 0x3bf34b4c76cdf12full, 0xa390ac3baeaed4cfull, 0xb563a74e059a4f2dull, 0x3ac1aed4779181baull,
    0x782f2dbe89501715ull, 0xdf3223a61f34d7b3ull, 0xc771ab08fb1cba5eull, 0x0a5d0c235e7f511cull, 0x15f62b0187952168ull, 0x3623021a63ec45f4ull, 0xd125955ed002cdb0ull, 0xefc5109a4de6f163ull, 0xd58541e54d473814ull, 0xd446c6bd7b3c43d5ull, 0x3f44fcb98767bc3bull, 0xca0b3634cb030873ull,
};

// The Montgomery word of `BaseElement::new(8)` (the capacity word of `merge`).
#define RP_LEN8 0x00000007fffffff8ull

EPA_HD u64 rp_sbox1(u64 x) {
    u64 x2 = gl_square(x);
    u64 x4 = gl_square(x2);
    u64 x3 = gl_mul(x2, x);
    return gl_mul(x3, x4);
}

EPA_HD u64 rp_exp_acc(u64 base, u64 tail, int m) {
    u64 r = base;
    for (int i = 0; i < m; i++) {
        r = gl_square(r);
    }
    return gl_mul(r, tail);
}

// x^(1/7) by winter-crypto's addition chain.
EPA_HD u64 rp_inv_sbox1(u64 x) {
    u64 t1 = gl_square(x);
    u64 t2 = gl_square(t1);
    u64 t3 = rp_exp_acc(t2, t2, 3);
    u64 t4 = rp_exp_acc(t3, t3, 6);
    u64 t5 = rp_exp_acc(t4, t4, 12);
    u64 t6 = rp_exp_acc(t5, t3, 6);
    u64 t7 = rp_exp_acc(t6, t6, 31);
    u64 a = gl_square(gl_square(gl_mul(gl_square(t7), t6)));
    u64 b = gl_mul(gl_mul(t1, t2), x);
    return gl_mul(a, b);
}

// Folds `l + h * 2^32` (a 96-bit sum) modulo p as winter-crypto does.
EPA_HD u64 rp_mds_reduce(u64 l, u64 h) {
    u64 s_lo = l + (h << 32);
    u64 s_hi = (h >> 32) + (s_lo < l ? 1ull : 0ull);
    u64 z = (s_hi << 32) - s_hi;
    u64 res = s_lo + z;
    return res + gl_adj(res < s_lo);
}

EPA_HD void rp_mds(u64 st[RP_STATE]) {
    u64 lo[RP_STATE];
    u64 hi[RP_STATE];
#pragma unroll
    for (int i = 0; i < RP_STATE; i++) {
        lo[i] = st[i] & 0xffffffffull;
        hi[i] = st[i] >> 32;
    }
#pragma unroll
    for (int r = 0; r < RP_STATE; r++) {
        u64 acc_l = 0;
        u64 acc_h = 0;
#pragma unroll
        for (int c = 0; c < RP_STATE; c++) {
            // Circulant: entry (r, c) is row[(c - r) mod 12].
            u64 m = RP_MDS[(c + RP_STATE - r) % RP_STATE];
            acc_l += lo[c] * m;
            acc_h += hi[c] * m;
        }
        st[r] = rp_mds_reduce(acc_l, acc_h);
    }
}

// The `Rp64_256` permutation in place.
EPA_HD void rp_permute(u64 st[RP_STATE]) {
#pragma unroll 1
    for (int round = 0; round < RP_ROUNDS; round++) {
#pragma unroll
        for (int i = 0; i < RP_STATE; i++) {
            st[i] = rp_sbox1(st[i]);
        }
        rp_mds(st);
#pragma unroll
        for (int i = 0; i < RP_STATE; i++) {
            st[i] = gl_add(st[i], RP_ARK1[round * RP_STATE + i]);
        }
#pragma unroll
        for (int i = 0; i < RP_STATE; i++) {
            st[i] = rp_inv_sbox1(st[i]);
        }
        rp_mds(st);
#pragma unroll
        for (int i = 0; i < RP_STATE; i++) {
            st[i] = gl_add(st[i], RP_ARK2[round * RP_STATE + i]);
        }
    }
}

// `Rp64_256::hash_elements` of `width` words read as `x[i * stride]`; `len_word` is the
// Montgomery word of `BaseElement::new(width)`. Writes the 4-word digest.
EPA_HD void rp_hash_strided(const u64 *x, u64 width, u64 stride, u64 len_word, u64 out[4]) {
    u64 st[RP_STATE];
#pragma unroll
    for (int i = 0; i < RP_STATE; i++) {
        st[i] = 0;
    }
    st[0] = len_word;
    u64 c = 0;
    while (c < width) {
        u64 take = width - c < RP_RATE ? width - c : RP_RATE;
#pragma unroll
        for (int k = 0; k < RP_RATE; k++) {
            if ((u64)k < take) {
                st[RP_RATE_START + k] = gl_add(st[RP_RATE_START + k], x[(c + k) * stride]);
            }
        }
        rp_permute(st);
        c += take;
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[i] = st[RP_RATE_START + i];
    }
}

// `Rp64_256::merge` of two digests `a` and `b` (4 words each) into `out`.
EPA_HD void rp_merge(const u64 a[4], const u64 b[4], u64 out[4]) {
    u64 st[RP_STATE];
#pragma unroll
    for (int i = 0; i < RP_STATE; i++) {
        st[i] = 0;
    }
    st[0] = RP_LEN8;
#pragma unroll
    for (int i = 0; i < 4; i++) {
        st[RP_RATE_START + i] = a[i];
        st[RP_RATE_START + 4 + i] = b[i];
    }
    rp_permute(st);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        out[i] = st[RP_RATE_START + i];
    }
}

#endif
