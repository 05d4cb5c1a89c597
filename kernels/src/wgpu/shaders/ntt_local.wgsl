// The small-stride radix-2 stages of an NTT in workgroup memory: every stage whose butterflies
// stay inside an aligned block of `2 * prm.h` words (at most 2048 words, 16 KiB) runs in one
// dispatch, one workgroup of 256 invocations per block (the host sizes the grid in units of 64
// invocations, so it asks for 64 per block).
// Memory traffic per dispatch: every word of `x` read once and written once (16 B per element)
// for up to 11 stages, against 16 B per element per stage for `ntt_stage.wgsl`; one twiddle
// read (8 B) per butterfly per stage (a 16 KiB slice of the table, cached).

struct Params {
    n: u32,        // segment (column) length
    h: u32,        // half-size of the largest stage done here (blocks of 2h words)
    blocks: u32,   // blocks in the dispatch: segments * n / (2h)
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<u64>;
@group(0) @binding(1) var<storage, read> tw: array<u64>;
@group(0) @binding(2) var<uniform> prm: Params;

// Words as two 32-bit halves (workgroup memory holds 32-bit lanes on every backend).
var<workgroup> blk: array<vec2<u32>, 2048>;

fn to_pair(v: u64) -> vec2<u32> {
    return vec2<u32>(u32(v & LO32), u32(v >> 32u));
}

fn from_pair(p: vec2<u32>) -> u64 {
    return u64(p.x) | (u64(p.y) << 32u);
}

fn load_block(base: u32, size: u32, lid: u32) {
    for (var j = lid; j < size; j += 256u) {
        blk[j] = to_pair(x[base + j]);
    }
}

fn store_block(base: u32, size: u32, lid: u32) {
    for (var j = lid; j < size; j += 256u) {
        x[base + j] = from_pair(blk[j]);
    }
}

// Decimation in frequency, stages h = prm.h, prm.h / 2, ..., 1 (the last stages of a DIF).
// The twiddle of butterfly `k` of stage `h` is `tw[h + k % h]`, as in `ntt_stage.wgsl`
// (blocks start at multiples of 2h, so the index within the block gives the same residue).
@compute @workgroup_size(256)
fn dif_local(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let block = wid.y * nwg.x + wid.x;
    if block >= prm.blocks {
        return;
    }
    let size = 2u * prm.h;
    let base = block * size;
    load_block(base, size, lid);
    workgroupBarrier();
    var h = prm.h;
    loop {
        if h == 0u {
            break;
        }
        for (var k = lid; k < prm.h; k += 256u) {
            let i = (k / h) * 2u * h + (k % h);
            let w = tw[h + k % h];
            let a = from_pair(blk[i]);
            let b = from_pair(blk[i + h]);
            blk[i] = to_pair(f_add(a, b));
            blk[i + h] = to_pair(f_mul(f_sub(a, b), w));
        }
        workgroupBarrier();
        h = h / 2u;
    }
    store_block(base, size, lid);
}

// Decimation in time, stages h = 1, 2, ..., prm.h (the first stages of a DIT).
@compute @workgroup_size(256)
fn dit_local(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let block = wid.y * nwg.x + wid.x;
    if block >= prm.blocks {
        return;
    }
    let size = 2u * prm.h;
    let base = block * size;
    load_block(base, size, lid);
    workgroupBarrier();
    var h = 1u;
    loop {
        if h > prm.h {
            break;
        }
        for (var k = lid; k < prm.h; k += 256u) {
            let i = (k / h) * 2u * h + (k % h);
            let w = tw[h + k % h];
            let a = from_pair(blk[i]);
            let t = f_mul(from_pair(blk[i + h]), w);
            blk[i] = to_pair(f_add(a, t));
            blk[i + h] = to_pair(f_sub(a, t));
        }
        workgroupBarrier();
        h = h * 2u;
    }
    store_block(base, size, lid);
}
