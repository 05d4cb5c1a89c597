// Keccak-f[1600] and the three FIPS 203 sponges of ML-KEM-768 decapsulation, on 64-bit lanes
// (`SHADER_INT64`): G = SHA3-512 of 64 bytes, PRF = SHAKE-256(r || N) squeezed to 128 bytes
// (CBD with eta = 2), J = SHAKE-256(z || c) of the 1120-byte string, squeezed to 32 bytes.
// Byte strings are little-endian `u32` words; lane `k` is words `2k` (low) and `2k + 1` (high).
// Each sponge runs in one invocation on its private 200-byte state; no memory traffic of its
// own beyond what the includer's `j_word` reads (J: the 1120 input bytes once, 9 permutations).
// The including module provides `fn j_word(k: u32) -> u32`, word `k` of J's input `z || c`.

const KECCAK_RC = array<u64, 24>(
    0x0000000000000001lu, 0x0000000000008082lu, 0x800000000000808alu, 0x8000000080008000lu,
    0x000000000000808blu, 0x0000000080000001lu, 0x8000000080008081lu, 0x8000000000008009lu,
    0x000000000000008alu, 0x0000000000000088lu, 0x0000000080008009lu, 0x000000008000000alu,
    0x000000008000808blu, 0x800000000000008blu, 0x8000000000008089lu, 0x8000000000008003lu,
    0x8000000000008002lu, 0x8000000000000080lu, 0x000000000000800alu, 0x800000008000000alu,
    0x8000000080008081lu, 0x8000000000008080lu, 0x0000000080000001lu, 0x8000000080008008lu,
);

// The sponge state of this invocation: lane x + 5y.
var<private> ks: array<u64, 25>;

fn rotl64(x: u64, n: u32) -> u64 {
    // n = 0 gives (x << 0) | (x >> 0) = x: the shift amount is taken modulo 64.
    return (x << n) | (x >> ((64u - n) & 63u));
}

fn keccak_clear() {
    for (var i = 0u; i < 25u; i++) {
        ks[i] = 0lu;
    }
}

// Keccak-f[1600]: 24 rounds of theta, rho, pi, chi, iota, written out lane by lane so that
// the state stays in registers (no dynamically indexed private array inside the rounds).
fn keccak_f() {
    var a0 = ks[0];
    var a1 = ks[1];
    var a2 = ks[2];
    var a3 = ks[3];
    var a4 = ks[4];
    var a5 = ks[5];
    var a6 = ks[6];
    var a7 = ks[7];
    var a8 = ks[8];
    var a9 = ks[9];
    var a10 = ks[10];
    var a11 = ks[11];
    var a12 = ks[12];
    var a13 = ks[13];
    var a14 = ks[14];
    var a15 = ks[15];
    var a16 = ks[16];
    var a17 = ks[17];
    var a18 = ks[18];
    var a19 = ks[19];
    var a20 = ks[20];
    var a21 = ks[21];
    var a22 = ks[22];
    var a23 = ks[23];
    var a24 = ks[24];
    var rc = KECCAK_RC;
    for (var round = 0u; round < 24u; round++) {
        let c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20;
        let c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21;
        let c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22;
        let c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23;
        let c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24;
        let d0 = c4 ^ rotl64(c1, 1u);
        let d1 = c0 ^ rotl64(c2, 1u);
        let d2 = c1 ^ rotl64(c3, 1u);
        let d3 = c2 ^ rotl64(c4, 1u);
        let d4 = c3 ^ rotl64(c0, 1u);
        let b0 = (a0 ^ d0);
        let b1 = rotl64(a6 ^ d1, 44u);
        let b2 = rotl64(a12 ^ d2, 43u);
        let b3 = rotl64(a18 ^ d3, 21u);
        let b4 = rotl64(a24 ^ d4, 14u);
        let b5 = rotl64(a3 ^ d3, 28u);
        let b6 = rotl64(a9 ^ d4, 20u);
        let b7 = rotl64(a10 ^ d0, 3u);
        let b8 = rotl64(a16 ^ d1, 45u);
        let b9 = rotl64(a22 ^ d2, 61u);
        let b10 = rotl64(a1 ^ d1, 1u);
        let b11 = rotl64(a7 ^ d2, 6u);
        let b12 = rotl64(a13 ^ d3, 25u);
        let b13 = rotl64(a19 ^ d4, 8u);
        let b14 = rotl64(a20 ^ d0, 18u);
        let b15 = rotl64(a4 ^ d4, 27u);
        let b16 = rotl64(a5 ^ d0, 36u);
        let b17 = rotl64(a11 ^ d1, 10u);
        let b18 = rotl64(a17 ^ d2, 15u);
        let b19 = rotl64(a23 ^ d3, 56u);
        let b20 = rotl64(a2 ^ d2, 62u);
        let b21 = rotl64(a8 ^ d3, 55u);
        let b22 = rotl64(a14 ^ d4, 39u);
        let b23 = rotl64(a15 ^ d0, 41u);
        let b24 = rotl64(a21 ^ d1, 2u);
        a0 = b0 ^ (~b1 & b2);
        a1 = b1 ^ (~b2 & b3);
        a2 = b2 ^ (~b3 & b4);
        a3 = b3 ^ (~b4 & b0);
        a4 = b4 ^ (~b0 & b1);
        a5 = b5 ^ (~b6 & b7);
        a6 = b6 ^ (~b7 & b8);
        a7 = b7 ^ (~b8 & b9);
        a8 = b8 ^ (~b9 & b5);
        a9 = b9 ^ (~b5 & b6);
        a10 = b10 ^ (~b11 & b12);
        a11 = b11 ^ (~b12 & b13);
        a12 = b12 ^ (~b13 & b14);
        a13 = b13 ^ (~b14 & b10);
        a14 = b14 ^ (~b10 & b11);
        a15 = b15 ^ (~b16 & b17);
        a16 = b16 ^ (~b17 & b18);
        a17 = b17 ^ (~b18 & b19);
        a18 = b18 ^ (~b19 & b15);
        a19 = b19 ^ (~b15 & b16);
        a20 = b20 ^ (~b21 & b22);
        a21 = b21 ^ (~b22 & b23);
        a22 = b22 ^ (~b23 & b24);
        a23 = b23 ^ (~b24 & b20);
        a24 = b24 ^ (~b20 & b21);
        a0 ^= rc[round];
    }
    ks[0] = a0;
    ks[1] = a1;
    ks[2] = a2;
    ks[3] = a3;
    ks[4] = a4;
    ks[5] = a5;
    ks[6] = a6;
    ks[7] = a7;
    ks[8] = a8;
    ks[9] = a9;
    ks[10] = a10;
    ks[11] = a11;
    ks[12] = a12;
    ks[13] = a13;
    ks[14] = a14;
    ks[15] = a15;
    ks[16] = a16;
    ks[17] = a17;
    ks[18] = a18;
    ks[19] = a19;
    ks[20] = a20;
    ks[21] = a21;
    ks[22] = a22;
    ks[23] = a23;
    ks[24] = a24;
}

fn lane(lo: u32, hi: u32) -> u64 {
    return u64(lo) | (u64(hi) << 32u);
}

// G: SHA3-512 of a 64-byte message (16 words); 64 bytes out. Rate 72 bytes: one block.
fn sha3_512_64(m: array<u32, 16>) -> array<u32, 16> {
    keccak_clear();
    for (var k = 0u; k < 8u; k++) {
        ks[k] = lane(m[2u * k], m[2u * k + 1u]);
    }
    // SHA-3 padding: 0x06 after the message, 0x80 in the last byte of the block.
    ks[8] = 0x8000000000000006lu;
    keccak_f();
    var out: array<u32, 16>;
    for (var k = 0u; k < 8u; k++) {
        out[2u * k] = u32(ks[k] & 0xfffffffflu);
        out[2u * k + 1u] = u32(ks[k] >> 32u);
    }
    return out;
}

// PRF_2(r, n): SHAKE-256 of the 33 bytes r || n, 128 bytes out (one squeeze of rate 136).
fn shake256_prf(r: array<u32, 8>, n: u32) -> array<u32, 32> {
    keccak_clear();
    for (var k = 0u; k < 4u; k++) {
        ks[k] = lane(r[2u * k], r[2u * k + 1u]);
    }
    // Byte 32 is n, then the SHAKE domain/padding byte 0x1f; 0x80 ends the 136-byte block.
    ks[4] = u64(n & 0xffu) | (0x1flu << 8u);
    ks[16] = 0x8000000000000000lu;
    keccak_f();
    var out: array<u32, 32>;
    for (var k = 0u; k < 16u; k++) {
        out[2u * k] = u32(ks[k] & 0xfffffffflu);
        out[2u * k + 1u] = u32(ks[k] >> 32u);
    }
    return out;
}

// J(z || c): SHAKE-256 of the 1120-byte string given word by word by `j_word`, 32 bytes out.
// 140 lanes at 17 lanes a block: 8 full blocks, then 4 lanes and the padding.
fn shake256_j() -> array<u32, 8> {
    keccak_clear();
    var at = 0u;
    for (var k = 0u; k < 140u; k++) {
        ks[at] ^= lane(j_word(2u * k), j_word(2u * k + 1u));
        at += 1u;
        if at == 17u {
            keccak_f();
            at = 0u;
        }
    }
    ks[at] ^= 0x1flu;
    ks[16] ^= 0x8000000000000000lu;
    keccak_f();
    var out: array<u32, 8>;
    for (var k = 0u; k < 4u; k++) {
        out[2u * k] = u32(ks[k] & 0xfffffffflu);
        out[2u * k + 1u] = u32(ks[k] >> 32u);
    }
    return out;
}
