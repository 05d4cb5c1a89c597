// Last step of the coset LDE: the cosets of a column group (column-major, `blowup` segments of
// `n` per column) into one row range of the row-major LDE matrix, row `t + blowup * i` holding
// point `i` of coset `t`; columns `col0 .. col0 + group` of rows `row0 .. row0 + total / group`.
// Memory traffic: one read (strided) and one write (coalesced within a group) per element: 16 B.

struct Params {
    n: u32,        // points per coset
    blowup: u32,
    cols: u32,     // elements per row of the whole matrix
    total: u32,    // words written: rows of this range * group
    col0: u32,     // first column of the group
    group: u32,    // columns in the group
    row0: u32,     // first row of the range
    pad: u32,
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
    let local = idx / prm.group;
    let c = idx % prm.group;
    let row = prm.row0 + local;
    let t = row % prm.blowup;
    let i = row / prm.blowup;
    dst[local * prm.cols + prm.col0 + c] = src[c * prm.n * prm.blowup + t * prm.n + i];
}
