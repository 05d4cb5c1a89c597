// `Rp64_256::hash_elements` of every row of a row-major matrix, one invocation per row.
// Memory traffic: each row read once (8 B per element, strided by the row width across
// invocations) and 32 B of digest written per row.

struct Params {
    width: u32,     // elements per row
    total: u32,     // rows in this dispatch (one row range)
    len_lo: u32,    // raw word of BaseElement::new(width), low half
    len_hi: u32,
    row0: u32,      // digest index of this dispatch's first row
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> rows: array<u64>;
@group(0) @binding(1) var<storage, read> rc: array<u64>;
@group(0) @binding(2) var<storage, read_write> digests: array<u64>;
@group(0) @binding(3) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn hash_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if row >= prm.total {
        return;
    }
    for (var i = 0u; i < 12u; i++) {
        st[i] = 0lu;
    }
    st[0] = (u64(prm.len_hi) << 32u) | u64(prm.len_lo);
    var k = 0u;
    let base = row * prm.width;
    for (var c = 0u; c < prm.width; c++) {
        st[4u + k] = f_add(st[4u + k], rows[base + c]);
        k++;
        if k == 8u {
            permute();
            k = 0u;
        }
    }
    if k > 0u {
        permute();
    }
    for (var i = 0u; i < 4u; i++) {
        digests[(prm.row0 + row) * 4u + i] = st[4u + i];
    }
}
