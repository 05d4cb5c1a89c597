// First step of the coset LDE: for every column `c` of a column group and coset `t`, the column's coefficients in
// bit-reversed order times the coset shift powers `(offset * g^t)^rev(p)`, the input of a DIT.
// Memory traffic: per output word one coefficient read (scattered, cached across the `blowup`
// cosets), one shift-power read and one write: 24 B per LDE element.

struct Params {
    n: u32,        // trace length (coefficients per column)
    bits: u32,     // log2(n)
    big: u32,      // n * blowup
    total: u32,    // words in the output: columns of this group * big
    col0: u32,     // first column of this group in `coeffs`
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> coeffs: array<u64>;
@group(0) @binding(1) var<storage, read> powers: array<u64>;
@group(0) @binding(2) var<storage, read_write> out: array<u64>;
@group(0) @binding(3) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn lde_prep(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= prm.total {
        return;
    }
    let c = idx / prm.big;
    let rem = idx % prm.big;
    let p = rem % prm.n;
    out[idx] = f_mul(coeffs[(prm.col0 + c) * prm.n + rev_bits(p, prm.bits)], powers[rem]);
}
