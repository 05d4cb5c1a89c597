// Bit-reversal permutation (in place, each segment of `n` words) and scaling by a constant.
// Memory traffic: bitrev reads and writes each word once (scattered, 16 B per element);
// scale reads and writes each word once (16 B per element, coalesced).

struct Params {
    n: u32,       // segment length
    bits: u32,    // log2(n)
    total: u32,   // words in the dispatch
    pad: u32,
    c_lo: u32,    // scale factor (raw word), low half
    c_hi: u32,    // scale factor, high half
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<u64>;
@group(0) @binding(1) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn bitrev(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= prm.total {
        return;
    }
    let base = (idx / prm.n) * prm.n;
    let p = idx % prm.n;
    let q = rev_bits(p, prm.bits);
    if q > p {
        let t = x[base + p];
        x[base + p] = x[base + q];
        x[base + q] = t;
    }
}

@compute @workgroup_size(64)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= prm.total {
        return;
    }
    let c = (u64(prm.c_hi) << 32u) | u64(prm.c_lo);
    x[idx] = f_mul(x[idx], c);
}
