// One level of a BLAKE3-256 Merkle tree in winter-crypto's layout: parent `j` of the level is
// `Blake3_256::merge` (BLAKE3 of the 64 bytes of children `2j` and `2j + 1`, one block, one
// chunk, the root), read from the leaves (first level) or from the node array itself (upper
// levels). One invocation per parent.
// Memory traffic: 64 B read and 32 B written per parent; log2(leaves) dispatches per tree.

struct Params {
    from_leaves: u32,   // 1: children are leaves[src + ..], 0: nodes[src + ..]
    src: u32,           // first child (digest index)
    dst: u32,           // first parent (digest index) in `nodes`
    total: u32,         // parents in this level
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<storage, read> leaves: array<u32>;
@group(0) @binding(1) var<storage, read_write> nodes: array<u32>;
@group(0) @binding(2) var<uniform> prm: Params;

@compute @workgroup_size(64)
fn blake3_merge(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    if j >= prm.total {
        return;
    }
    let first = (prm.src + 2u * j) * 8u;
    for (var w = 0u; w < 16u; w++) {
        if prm.from_leaves == 1u {
            m[w] = leaves[first + w];
        } else {
            m[w] = nodes[first + w];
        }
    }
    cv_reset();
    compress(0u, 0u, 64u, CHUNK_START | CHUNK_END | ROOT);
    for (var i = 0u; i < 8u; i++) {
        nodes[(prm.dst + j) * 8u + i] = cv[i];
    }
}
