// Goldilocks arithmetic on raw Montgomery words (winter-math's representation of
// `BaseElement`), integer step for integer step the same as winter-math. WGSL has no
// 64x64 -> 128-bit product, so products are assembled from four 32x32 -> 64-bit halves.
// Shared by every kernel; no memory traffic of its own.

const P: u64 = 0xffffffff00000001lu;
const LO32: u64 = 0xfffffffflu;

// Index of this invocation in a 2-D grid of 64-wide workgroups.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.y * (nwg.x * 64u) + gid.x;
}

// `0u32.wrapping_sub(flag) as u64`: 2^32 - 1 when the flag is set.
fn adj(flag: bool) -> u64 {
    return select(0lu, LO32, flag);
}

// winter-math `a + b`: `a - (p - b)`, corrected on borrow.
fn f_add(a: u64, b: u64) -> u64 {
    let pb = P - b;
    return (a - pb) - adj(a < pb);
}

// winter-math `a - b`.
fn f_sub(a: u64, b: u64) -> u64 {
    return (a - b) - adj(a < b);
}

// winter-math's Montgomery reduction of the 128-bit value `xh * 2^64 + xl`.
fn mont_red(xl: u64, xh: u64) -> u64 {
    let a = xl + (xl << 32u);
    let e = select(0lu, 1lu, a < xl);
    let b = a - (a >> 32u) - e;
    return (xh - b) - adj(xh < b);
}

// Montgomery product `a * b / 2^64 mod p`.
fn f_mul(a: u64, b: u64) -> u64 {
    let a0 = a & LO32;
    let a1 = a >> 32u;
    let b0 = b & LO32;
    let b1 = b >> 32u;
    let ll = a0 * b0;
    let lh = a0 * b1;
    let hl = a1 * b0;
    let hh = a1 * b1;
    let mid = lh + hl;
    let c1 = select(0lu, 1lu << 32u, mid < lh);
    let lo = ll + (mid << 32u);
    let c2 = select(0lu, 1lu, lo < ll);
    let hi = hh + (mid >> 32u) + c1 + c2;
    return mont_red(lo, hi);
}

fn f_square(a: u64) -> u64 {
    return f_mul(a, a);
}

// The low `bits` bits of `i`, reversed.
fn rev_bits(i: u32, bits: u32) -> u32 {
    if bits == 0u {
        return 0u;
    }
    return reverseBits(i) >> (32u - bits);
}
