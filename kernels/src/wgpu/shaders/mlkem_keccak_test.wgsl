// Test harness for the ML-KEM sponges (mlkem_keccak.wgsl) alone, one invocation per case:
// G of a 64-byte message, PRF(r, n) and J(z || c), written out for comparison with a host
// SHA-3 implementation. Memory traffic per case: 1224 bytes read, 224 bytes written.

const CASE_IN: u32 = 306u; // 16 words G input, 8 words r, 1 word n, 280 words z || c, 1 pad
const CASE_OUT: u32 = 56u; // 16 words G output, 32 words PRF output, 8 words J output

struct Params {
    count: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> cases: array<u32>;
@group(0) @binding(1) var<storage, read_write> results: array<u32>;
@group(0) @binding(2) var<uniform> prm: Params;

var<private> case_base: u32;

fn j_word(k: u32) -> u32 {
    return cases[case_base + 25u + k];
}

@compute @workgroup_size(64)
fn keccak_test(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.y * (nwg.x * 64u) + gid.x;
    if i >= prm.count {
        return;
    }
    case_base = i * CASE_IN;
    let o = i * CASE_OUT;
    var m: array<u32, 16>;
    for (var k = 0u; k < 16u; k++) {
        m[k] = cases[case_base + k];
    }
    let g = sha3_512_64(m);
    for (var k = 0u; k < 16u; k++) {
        results[o + k] = g[k];
    }
    var r: array<u32, 8>;
    for (var k = 0u; k < 8u; k++) {
        r[k] = cases[case_base + 16u + k];
    }
    let p = shake256_prf(r, cases[case_base + 24u]);
    for (var k = 0u; k < 32u; k++) {
        results[o + 16u + k] = p[k];
    }
    let j = shake256_j();
    for (var k = 0u; k < 8u; k++) {
        results[o + 48u + k] = j[k];
    }
}
