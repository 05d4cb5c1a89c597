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

// Two stages per dispatch (radix 4), for the large strides: each invocation owns 4 words and
// applies two radix-2 stages to them, halving the passes over `x`.
// Memory traffic per dispatch: every word read once and written once (16 B per element) for
// two stages, plus three twiddle reads per 4 words.

// DIF stages h = prm.h then h / 2: words r, r + h/2, r + h, r + 3h/2 of each block of 2h.
@compute @workgroup_size(64)
fn dif2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if k >= prm.total {
        return;
    }
    let quarter = prm.n / 4u;
    let seg = k / quarter;
    let q = k % quarter;
    let h = prm.h;
    let hh = h / 2u;
    let r = q % hh;
    let i0 = seg * prm.n + (q / hh) * 2u * h + r;
    let a0 = x[i0];
    let a1 = x[i0 + hh];
    let a2 = x[i0 + h];
    let a3 = x[i0 + h + hh];
    // Stage h: (a0, a2) and (a1, a3).
    let b0 = f_add(a0, a2);
    let b2 = f_mul(f_sub(a0, a2), tw[h + r]);
    let b1 = f_add(a1, a3);
    let b3 = f_mul(f_sub(a1, a3), tw[h + r + hh]);
    // Stage h / 2: (b0, b1) and (b2, b3).
    let w = tw[hh + r];
    x[i0] = f_add(b0, b1);
    x[i0 + hh] = f_mul(f_sub(b0, b1), w);
    x[i0 + h] = f_add(b2, b3);
    x[i0 + h + hh] = f_mul(f_sub(b2, b3), w);
}

// DIT stages h = prm.h then 2h: words r, r + h, r + 2h, r + 3h of each block of 4h.
@compute @workgroup_size(64)
fn dit2(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = flat_index(gid, nwg);
    if k >= prm.total {
        return;
    }
    let quarter = prm.n / 4u;
    let seg = k / quarter;
    let q = k % quarter;
    let h = prm.h;
    let r = q % h;
    let i0 = seg * prm.n + (q / h) * 4u * h + r;
    let a0 = x[i0];
    let a1 = x[i0 + h];
    let a2 = x[i0 + 2u * h];
    let a3 = x[i0 + 3u * h];
    // Stage h: (a0, a1) and (a2, a3).
    let w = tw[h + r];
    let t1 = f_mul(a1, w);
    let b0 = f_add(a0, t1);
    let b1 = f_sub(a0, t1);
    let t3 = f_mul(a3, w);
    let b2 = f_add(a2, t3);
    let b3 = f_sub(a2, t3);
    // Stage 2h: (b0, b2) and (b1, b3).
    let u2 = f_mul(b2, tw[2u * h + r]);
    let u3 = f_mul(b3, tw[2u * h + r + h]);
    x[i0] = f_add(b0, u2);
    x[i0 + 2u * h] = f_sub(b0, u2);
    x[i0 + h] = f_add(b1, u3);
    x[i0 + 3u * h] = f_sub(b1, u3);
}
