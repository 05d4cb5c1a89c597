// ML-KEM-768 decapsulation (FIPS 203 ML-KEM.Decaps) in four kernels, every ciphertext under
// the one key the host unpacked (s_hat, t_hat, A_hat in NTT form, H(ek), z, and the NTT
// tables). The polynomial work runs one workgroup of 128 invocations per ciphertext on
// polynomials in workgroup memory (8 slots of 256 coefficients in [0, q), 8 KiB; invocation t
// owns NTT butterfly t of every layer and the coefficients t and t + 128). The Keccak work
// runs one invocation per hash, so that every lane of the GPU hashes (a workgroup-per-
// ciphertext kernel would leave all but one lane idle for 17 permutations).
//   decrypt (workgroup per ciphertext): decompress u (slots 0-2) and v (slot 6), NTT(u),
//     w = invNTT(s_hat o u_hat) (slot 7), m' = Compress_1(v - w) -> scratch.
//   hash_gj (invocation per ciphertext): (K', r) = G(m' || H(ek)), K_bar = J(z || c).
//   prf (invocation per ciphertext and N = 0..6): PRF_2(r, N), the CBD input of y, e1, e2.
//   encrypt (workgroup per ciphertext): y = CBD_2 (slots 0-2), NTT(y), u' = invNTT(A_hat^T o
//     y_hat) + e1 (slots 3-5), v' = invNTT(t_hat^T o y_hat) + e2 + Decompress_1(m') (slot 6);
//     c' is compared with c on the compressed coefficients (ByteDecode_d is a bijection for
//     d < 12), every coefficient, no early exit; the secret is select(K', K_bar, c' != c).
// Scratch per ciphertext (1 KiB, secret, cleared by the host before release): m' (8 words),
// K' (8), r (8), K_bar (8), the seven PRF blocks (7 x 32).
// Memory traffic per ciphertext: the 1088-byte ciphertext read three times (decode, J,
// compare); the key (s_hat 3 KiB, t_hat 3 KiB, A_hat 9 KiB, 1 KiB of tables as 32-bit words)
// read by every workgroup, from the cache after the first; 1 KiB of scratch written and about
// 1.1 KiB read back; 32 bytes of secret written.

const Q: u32 = 3329u;
const CT_WORDS: u32 = 272u;
// Layout of the key buffer in 32-bit words.
const S_HAT: u32 = 0u;
const T_HAT: u32 = 768u;
const A_HAT: u32 = 1536u; // A_hat[i][j] at A_HAT + (3i + j) * 256
const H_OFF: u32 = 3840u;
const Z_OFF: u32 = 3848u;
const ZETAS: u32 = 3856u; // 17^BitRev7(i)
const GAMMAS: u32 = 3984u; // 17^(2 BitRev7(i) + 1)
// Bit offset of c2 (v) in the ciphertext: 3 * 256 coefficients of 10 bits.
const V_BITS: u32 = 7680u;
// Layout of a ciphertext's scratch in 32-bit words.
const SCRATCH_WORDS: u32 = 256u;
const SC_M: u32 = 0u;
const SC_K: u32 = 8u;
const SC_R: u32 = 16u;
const SC_KBAR: u32 = 24u;
const SC_PRF: u32 = 32u;

struct Params {
    count: u32, // ciphertexts in this dispatch
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Every kernel has the same bind group layout (the host creates it explicitly).
@group(0) @binding(0) var<storage, read> key: array<u32>;
@group(0) @binding(1) var<storage, read> cts: array<u32>;
@group(0) @binding(2) var<storage, read_write> scratch: array<u32>;
@group(0) @binding(3) var<storage, read_write> secrets: array<u32>;
@group(0) @binding(4) var<uniform> prm: Params;

var<workgroup> poly: array<u32, 2048>;
var<workgroup> msg: array<atomic<u32>, 8>;
var<workgroup> diff: atomic<u32>;

// First word of this invocation's ciphertext and of its scratch.
var<private> ct_base: u32;
var<private> sc_base: u32;

// Word k of J's input z || c.
fn j_word(k: u32) -> u32 {
    if k < 8u {
        return key[Z_OFF + k];
    }
    return cts[ct_base + k - 8u];
}

fn addq(a: u32, b: u32) -> u32 {
    return (a + b) % Q;
}

fn subq(a: u32, b: u32) -> u32 {
    return (a + Q - b) % Q;
}

fn mulq(a: u32, b: u32) -> u32 {
    return (a * b) % Q;
}

// The `d`-bit value at bit `bit` of this workgroup's ciphertext (ByteDecode_d, little-endian).
fn ct_bits(bit: u32, d: u32) -> u32 {
    let w = ct_base + bit / 32u;
    let off = bit % 32u;
    var v = cts[w] >> off;
    if off + d > 32u {
        v |= cts[w + 1u] << (32u - off);
    }
    return v & ((1u << d) - 1u);
}

// Decompress_d(y) = round(q y / 2^d).
fn decompress(y: u32, d: u32) -> u32 {
    return (y * Q + (1u << (d - 1u))) >> d;
}

// Compress_d(x) = round(2^d x / q) mod 2^d, for x in [0, q).
fn compress(x: u32, d: u32) -> u32 {
    return (((x << (d + 1u)) + Q) / (2u * Q)) & ((1u << d) - 1u);
}

// Coefficient k of SamplePolyCBD_2 over this ciphertext's PRF block n (4 bits each).
fn cbd(n: u32, k: u32) -> u32 {
    let nib = (scratch[sc_base + SC_PRF + n * 32u + k / 8u] >> (4u * (k % 8u))) & 0xfu;
    let x = (nib & 1u) + ((nib >> 1u) & 1u);
    let y = ((nib >> 2u) & 1u) + ((nib >> 3u) & 1u);
    return (x + Q - y) % Q;
}

// NTT (FIPS 203 Algorithm 9) of `count` polynomials from slot `first`, in place.
fn ntt(first: u32, count: u32, t: u32) {
    for (var len = 128u; len >= 2u; len >>= 1u) {
        let group = t / len;
        let j = group * 2u * len + t % len;
        let zeta = key[ZETAS + 128u / len + group];
        for (var p = 0u; p < count; p++) {
            let base = (first + p) * 256u;
            let a = poly[base + j];
            let b = mulq(zeta, poly[base + j + len]);
            poly[base + j + len] = subq(a, b);
            poly[base + j] = addq(a, b);
        }
        workgroupBarrier();
    }
}

// Inverse NTT (FIPS 203 Algorithm 10) of `count` polynomials from slot `first`, in place.
fn intt(first: u32, count: u32, t: u32) {
    for (var len = 2u; len <= 128u; len <<= 1u) {
        let group = t / len;
        let j = group * 2u * len + t % len;
        let zeta = key[ZETAS + 256u / len - 1u - group];
        for (var p = 0u; p < count; p++) {
            let base = (first + p) * 256u;
            let a = poly[base + j];
            let b = poly[base + j + len];
            poly[base + j] = addq(a, b);
            poly[base + j + len] = mulq(zeta, subq(b, a));
        }
        workgroupBarrier();
    }
    for (var p = 0u; p < count; p++) {
        let base = (first + p) * 256u;
        poly[base + t] = mulq(poly[base + t], 3303u);
        poly[base + t + 128u] = mulq(poly[base + t + 128u], 3303u);
    }
    workgroupBarrier();
}

// Pair t of the sum over j of key[key_at(j)] o poly[slot j] (MultiplyNTTs, Algorithm 11),
// written to slot `dst`. `stride` steps the key polynomial with j (256 for a vector, 768 for a
// column of A_hat).
fn dot_pair(key_first: u32, stride: u32, dst: u32, t: u32) {
    let gamma = key[GAMMAS + t];
    var c0 = 0u;
    var c1 = 0u;
    for (var j = 0u; j < 3u; j++) {
        let ka = key_first + j * stride + 2u * t;
        let a0 = key[ka];
        let a1 = key[ka + 1u];
        let b0 = poly[j * 256u + 2u * t];
        let b1 = poly[j * 256u + 2u * t + 1u];
        c0 += (mulq(a0, b0) + mulq(mulq(a1, b1), gamma)) % Q;
        c1 += (mulq(a0, b1) + mulq(a1, b0)) % Q;
    }
    poly[dst * 256u + 2u * t] = c0 % Q;
    poly[dst * 256u + 2u * t + 1u] = c1 % Q;
}

// Index of this invocation in a 2-D grid of 64-wide workgroups.
fn thread_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * 64u) + gid.x;
}

@compute @workgroup_size(128)
fn decrypt(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let idx = wid.y * nwg.x + wid.x;
    if idx >= prm.count {
        return;
    }
    ct_base = idx * CT_WORDS;
    if t < 8u {
        atomicStore(&msg[t], 0u);
    }
    for (var h = 0u; h < 256u; h += 128u) {
        let k = t + h;
        for (var i = 0u; i < 3u; i++) {
            poly[i * 256u + k] = decompress(ct_bits((i * 256u + k) * 10u, 10u), 10u);
        }
        poly[6u * 256u + k] = decompress(ct_bits(V_BITS + k * 4u, 4u), 4u);
    }
    workgroupBarrier();
    ntt(0u, 3u, t);
    dot_pair(S_HAT, 256u, 7u, t);
    workgroupBarrier();
    intt(7u, 1u, t);
    for (var h = 0u; h < 256u; h += 128u) {
        let k = t + h;
        let bit = compress(subq(poly[6u * 256u + k], poly[7u * 256u + k]), 1u);
        atomicOr(&msg[k / 32u], bit << (k % 32u));
    }
    workgroupBarrier();
    if t < 8u {
        scratch[idx * SCRATCH_WORDS + SC_M + t] = atomicLoad(&msg[t]);
    }
}

@compute @workgroup_size(64)
fn hash_gj(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = thread_index(gid, nwg);
    if idx >= prm.count {
        return;
    }
    ct_base = idx * CT_WORDS;
    let sc = idx * SCRATCH_WORDS;
    var m: array<u32, 16>;
    for (var k = 0u; k < 8u; k++) {
        m[k] = scratch[sc + SC_M + k];
        m[8u + k] = key[H_OFF + k];
    }
    let g = sha3_512_64(m);
    for (var k = 0u; k < 16u; k++) {
        scratch[sc + SC_K + k] = g[k]; // K' then r
    }
    let j = shake256_j();
    for (var k = 0u; k < 8u; k++) {
        scratch[sc + SC_KBAR + k] = j[k];
    }
}

@compute @workgroup_size(64)
fn prf(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let job = thread_index(gid, nwg);
    if job >= prm.count * 7u {
        return;
    }
    let sc = (job / 7u) * SCRATCH_WORDS;
    let n = job % 7u;
    var r: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        r[k] = scratch[sc + SC_R + k];
    }
    let block = shake256_prf(r, n);
    for (var k = 0u; k < 32u; k++) {
        scratch[sc + SC_PRF + n * 32u + k] = block[k];
    }
}

@compute @workgroup_size(128)
fn encrypt(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
) {
    let idx = wid.y * nwg.x + wid.x;
    if idx >= prm.count {
        return;
    }
    ct_base = idx * CT_WORDS;
    sc_base = idx * SCRATCH_WORDS;
    if t == 0u {
        atomicStore(&diff, 0u);
    }
    for (var h = 0u; h < 256u; h += 128u) {
        let k = t + h;
        for (var i = 0u; i < 3u; i++) {
            poly[i * 256u + k] = cbd(i, k);
        }
    }
    workgroupBarrier();
    ntt(0u, 3u, t);
    // u'_hat[i] = sum_j A_hat[j][i] o y_hat[j]; v'_hat = sum_j t_hat[j] o y_hat[j].
    for (var i = 0u; i < 3u; i++) {
        dot_pair(A_HAT + i * 256u, 768u, 3u + i, t);
    }
    dot_pair(T_HAT, 256u, 6u, t);
    workgroupBarrier();
    intt(3u, 4u, t);

    // Compare c' with c, every coefficient.
    var d = 0u;
    for (var h = 0u; h < 256u; h += 128u) {
        let k = t + h;
        for (var i = 0u; i < 3u; i++) {
            let u = addq(poly[(3u + i) * 256u + k], cbd(3u + i, k));
            d |= compress(u, 10u) ^ ct_bits((i * 256u + k) * 10u, 10u);
        }
        let m = scratch[sc_base + SC_M + k / 32u];
        let mu = ((m >> (k % 32u)) & 1u) * 1665u;
        let v = (poly[6u * 256u + k] + cbd(6u, k) + mu) % Q;
        d |= compress(v, 4u) ^ ct_bits(V_BITS + k * 4u, 4u);
    }
    atomicOr(&diff, d);
    workgroupBarrier();
    if t < 8u {
        let reject = atomicLoad(&diff) != 0u;
        secrets[idx * 8u + t] =
            select(scratch[sc_base + SC_K + t], scratch[sc_base + SC_KBAR + t], reject);
    }
}
