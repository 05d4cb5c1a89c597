// BLAKE3-256 over 32-bit words (the reference compression function, unkeyed hashing mode),
// bit-exact with the `blake3` crate and therefore with winter-crypto's `Blake3_256`.
// Shared by `blake3_rows` and `blake3_merge`; no memory traffic of its own (the state and the
// message block live in private memory).

const IV0: u32 = 0x6a09e667u;
const IV1: u32 = 0xbb67ae85u;
const IV2: u32 = 0x3c6ef372u;
const IV3: u32 = 0xa54ff53au;
const IV4: u32 = 0x510e527fu;
const IV5: u32 = 0x9b05688cu;
const IV6: u32 = 0x1f83d9abu;
const IV7: u32 = 0x5be0cd19u;

const CHUNK_START: u32 = 1u;
const CHUNK_END: u32 = 2u;
const PARENT: u32 = 4u;
const ROOT: u32 = 8u;

// The compression state, the message block and the chaining value being built.
var<private> v: array<u32, 16>;
var<private> m: array<u32, 16>;
var<private> cv: array<u32, 8>;

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

fn g(a: u32, b: u32, c: u32, d: u32, mx: u32, my: u32) {
    v[a] = v[a] + v[b] + mx;
    v[d] = rotr(v[d] ^ v[a], 16u);
    v[c] = v[c] + v[d];
    v[b] = rotr(v[b] ^ v[c], 12u);
    v[a] = v[a] + v[b] + my;
    v[d] = rotr(v[d] ^ v[a], 8u);
    v[c] = v[c] + v[d];
    v[b] = rotr(v[b] ^ v[c], 7u);
}

fn round_fn() {
    g(0u, 4u, 8u, 12u, m[0], m[1]);
    g(1u, 5u, 9u, 13u, m[2], m[3]);
    g(2u, 6u, 10u, 14u, m[4], m[5]);
    g(3u, 7u, 11u, 15u, m[6], m[7]);
    g(0u, 5u, 10u, 15u, m[8], m[9]);
    g(1u, 6u, 11u, 12u, m[10], m[11]);
    g(2u, 7u, 8u, 13u, m[12], m[13]);
    g(3u, 4u, 9u, 14u, m[14], m[15]);
}

// The message word schedule between rounds.
fn permute_msg() {
    let o = m;
    m[0] = o[2];
    m[1] = o[6];
    m[2] = o[3];
    m[3] = o[10];
    m[4] = o[7];
    m[5] = o[0];
    m[6] = o[4];
    m[7] = o[13];
    m[8] = o[1];
    m[9] = o[11];
    m[10] = o[12];
    m[11] = o[5];
    m[12] = o[9];
    m[13] = o[14];
    m[14] = o[15];
    m[15] = o[8];
}

fn cv_reset() {
    cv[0] = IV0;
    cv[1] = IV1;
    cv[2] = IV2;
    cv[3] = IV3;
    cv[4] = IV4;
    cv[5] = IV5;
    cv[6] = IV6;
    cv[7] = IV7;
}

// Compresses the block `m` into the chaining value `cv` (the first 8 output words).
// `m` is consumed (permuted).
fn compress(counter_lo: u32, counter_hi: u32, block_len: u32, flags: u32) {
    for (var i = 0u; i < 8u; i++) {
        v[i] = cv[i];
    }
    v[8] = IV0;
    v[9] = IV1;
    v[10] = IV2;
    v[11] = IV3;
    v[12] = counter_lo;
    v[13] = counter_hi;
    v[14] = block_len;
    v[15] = flags;
    for (var r = 0u; r < 7u; r++) {
        round_fn();
        if r < 6u {
            permute_msg();
        }
    }
    for (var i = 0u; i < 8u; i++) {
        cv[i] = v[i] ^ v[i + 8u];
    }
}
