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

// rho rotation of lane x + 5y.
const KECCAK_ROT = array<u32, 25>(
    0u, 1u, 62u, 28u, 27u,
    36u, 44u, 6u, 55u, 20u,
    3u, 10u, 43u, 25u, 39u,
    41u, 45u, 15u, 21u, 8u,
    18u, 2u, 61u, 56u, 14u,
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

// Keccak-f[1600]: 24 rounds of theta, rho, pi, chi, iota.
fn keccak_f() {
    var rc = KECCAK_RC;
    var rot = KECCAK_ROT;
    var c: array<u64, 5>;
    var b: array<u64, 25>;
    for (var round = 0u; round < 24u; round++) {
        for (var x = 0u; x < 5u; x++) {
            c[x] = ks[x] ^ ks[x + 5u] ^ ks[x + 10u] ^ ks[x + 15u] ^ ks[x + 20u];
        }
        for (var x = 0u; x < 5u; x++) {
            let d = c[(x + 4u) % 5u] ^ rotl64(c[(x + 1u) % 5u], 1u);
            for (var y = 0u; y < 25u; y += 5u) {
                ks[x + y] ^= d;
            }
        }
        // rho and pi: B[y, 2x + 3y] = rot(A[x, y], r[x, y]).
        for (var x = 0u; x < 5u; x++) {
            for (var y = 0u; y < 5u; y++) {
                let i = x + 5u * y;
                b[y + 5u * ((2u * x + 3u * y) % 5u)] = rotl64(ks[i], rot[i]);
            }
        }
        for (var y = 0u; y < 25u; y += 5u) {
            for (var x = 0u; x < 5u; x++) {
                ks[x + y] = b[x + y] ^ (~b[(x + 1u) % 5u + y] & b[(x + 2u) % 5u + y]);
            }
        }
        ks[0] ^= rc[round];
    }
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
