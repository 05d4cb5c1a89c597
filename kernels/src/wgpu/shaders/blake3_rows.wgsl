// BLAKE3-256 of every row of a row-major matrix, one invocation per row: the hash of the row's
// canonical little-endian bytes (winter-crypto's `Blake3_256::hash_elements` of Goldilocks
// elements in Montgomery form), with BLAKE3's chunk tree for rows over 1024 bytes (128
// elements). Memory traffic: each row read once (8 B per element, strided by the row width
// across invocations) and 32 B of digest written per row.

struct Params {
    width: u32,     // elements per row
    total: u32,     // rows in this dispatch
    row0: u32,      // digest index of this dispatch's first row
    pad: u32,
}

@group(0) @binding(0) var<storage, read> rows: array<u64>;
@group(0) @binding(1) var<storage, read_write> digests: array<u32>;
@group(0) @binding(2) var<uniform> prm: Params;

// Chaining values of completed subtrees (BLAKE3's CV stack): 16 levels hold 2^16 chunks,
// rows of up to 2^23 elements (the host refuses wider rows).
var<private> stack: array<u32, 128>;

// winter-math's `as_int`: the Montgomery reduction of the raw word.
fn canonical(x: u64) -> u64 {
    return mont_red(x, 0lu);
}

// Merges the top of the stack (left) with `cv` (right) into `cv`.
fn parent_into_cv(sp: u32, flags: u32) {
    for (var i = 0u; i < 8u; i++) {
        m[i] = stack[sp * 8u + i];
        m[8u + i] = cv[i];
    }
    cv_reset();
    compress(0u, 0u, 64u, PARENT | flags);
}

@compute @workgroup_size(64)
fn blake3_rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if row >= prm.total {
        return;
    }
    let base = row * prm.width;
    let num_chunks = (prm.width + 127u) / 128u;
    var sp = 0u;
    for (var ci = 0u; ci < num_chunks; ci++) {
        let start = ci * 128u;
        let end = min(prm.width, start + 128u);
        let nblocks = (end - start + 7u) / 8u;
        cv_reset();
        for (var b = 0u; b < nblocks; b++) {
            let first = start + b * 8u;
            for (var e = 0u; e < 8u; e++) {
                var w = 0lu;
                if first + e < end {
                    w = canonical(rows[base + first + e]);
                }
                m[2u * e] = u32(w & LO32);
                m[2u * e + 1u] = u32(w >> 32u);
            }
            var flags = 0u;
            if b == 0u {
                flags |= CHUNK_START;
            }
            if b + 1u == nblocks {
                flags |= CHUNK_END;
                if num_chunks == 1u {
                    flags |= ROOT;
                }
            }
            compress(ci, 0u, min(8u, end - first) * 8u, flags);
        }
        if ci + 1u < num_chunks {
            // Completed chunk with more input to come: merge finished subtrees, then push.
            var total = ci + 1u;
            while (total & 1u) == 0u {
                sp -= 1u;
                parent_into_cv(sp, 0u);
                total >>= 1u;
            }
            for (var i = 0u; i < 8u; i++) {
                stack[sp * 8u + i] = cv[i];
            }
            sp += 1u;
        }
    }
    // The last chunk's value merged down the stack; the final merge is the root.
    while sp > 0u {
        sp -= 1u;
        parent_into_cv(sp, select(0u, ROOT, sp == 0u));
    }
    let out = (prm.row0 + row) * 8u;
    for (var i = 0u; i < 8u; i++) {
        digests[out + i] = cv[i];
    }
}
