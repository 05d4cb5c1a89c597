// One level of a Merkle tree in winter-crypto's layout: parent `j` of the level is
// `Rp64_256::merge` of children `2j` and `2j + 1`, read from the leaves (first level) or from the
// node array itself (upper levels). One invocation per parent.
// Memory traffic: 64 B read and 32 B written per parent; log2(leaves) dispatches per tree.

struct Params {
    from_leaves: u32,   // 1: children are leaves[src + ..], 0: nodes[src + ..]
    src: u32,           // first child (digest index)
    dst: u32,           // first parent (digest index) in `nodes`
    total: u32,         // parents in this level
    len_lo: u32,        // raw word of BaseElement::new(8)
    len_hi: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> leaves: array<u64>;
@group(0) @binding(1) var<storage, read_write> nodes: array<u64>;
@group(0) @binding(2) var<storage, read> rc: array<u64>;
@group(0) @binding(3) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn merge(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    if j >= prm.total {
        return;
    }
    for (var i = 0u; i < 12u; i++) {
        st[i] = 0lu;
    }
    st[0] = (u64(prm.len_hi) << 32u) | u64(prm.len_lo);
    let first = (prm.src + 2u * j) * 4u;
    for (var w = 0u; w < 8u; w++) {
        if prm.from_leaves == 1u {
            st[4u + w] = leaves[first + w];
        } else {
            st[4u + w] = nodes[first + w];
        }
    }
    permute();
    for (var i = 0u; i < 4u; i++) {
        nodes[(prm.dst + j) * 4u + i] = st[4u + i];
    }
}
