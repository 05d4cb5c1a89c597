// One radix-2 stage over every column (segment of `n` words) of the buffer.
// Memory traffic per dispatch: every word of `x` read once and written once (16 B per element),
// plus one twiddle read (8 B) per butterfly; log2(n) dispatches per transform.

struct Params {
    n: u32,        // segment (column) length
    h: u32,        // half-size of this stage's butterflies
    total: u32,    // butterflies in the dispatch: segments * n / 2
    pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<u64>;
@group(0) @binding(1) var<storage, read> tw: array<u64>;
@group(0) @binding(2) var<uniform> prm: Params;

fn butterfly_index(k: u32) -> u32 {
    let half = prm.n / 2u;
    let seg = k / half;
    let r = k % half;
    return seg * prm.n + (r / prm.h) * 2u * prm.h + (r % prm.h);
}

// Decimation in frequency: `a' = a + b`, `b' = (a - b) * w`.
@compute @workgroup_size(64)
fn dif(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if k >= prm.total {
        return;
    }
    let i = butterfly_index(k);
    let w = tw[prm.h + (k % (prm.n / 2u)) % prm.h];
    let a = x[i];
    let b = x[i + prm.h];
    x[i] = f_add(a, b);
    x[i + prm.h] = f_mul(f_sub(a, b), w);
}

// Decimation in time: `t = b * w`, `a' = a + t`, `b' = a - t`.
@compute @workgroup_size(64)
fn dit(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if k >= prm.total {
        return;
    }
    let i = butterfly_index(k);
    let w = tw[prm.h + (k % (prm.n / 2u)) % prm.h];
    let a = x[i];
    let t = f_mul(x[i + prm.h], w);
    x[i] = f_add(a, t);
    x[i + prm.h] = f_sub(a, t);
}
