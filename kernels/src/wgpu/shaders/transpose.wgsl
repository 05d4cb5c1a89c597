// Last step of the coset LDE: cosets (column-major, `blowup` segments of `n` per column) to the
// row-major LDE matrix, row `t + blowup * i` holding point `i` of coset `t`.
// Memory traffic: one read (strided) and one write (coalesced) per element: 16 B.

struct Params {
    n: u32,        // points per coset
    blowup: u32,
    cols: u32,
    total: u32,    // words: n * blowup * cols
}

@group(0) @binding(0) var<storage, read> src: array<u64>;
@group(0) @binding(1) var<storage, read_write> dst: array<u64>;
@group(0) @binding(2) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if idx >= prm.total {
        return;
    }
    let row = idx / prm.cols;
    let c = idx % prm.cols;
    let t = row % prm.blowup;
    let i = row / prm.blowup;
    dst[idx] = src[c * prm.n * prm.blowup + t * prm.n + i];
}
