// The Rescue-Prime `Rp64_256` permutation (12 words of state, 7 rounds), step for step as
// winter-crypto computes it on Montgomery words. The inverse S-box x^(1/7) is winter-crypto's
// exponentiation chain. Constants live in `rc`: the MDS row (12 small integers), then ARK1 and
// ARK2 (7 x 12 raw words each). No memory traffic of its own beyond the 180 constant words
// (cached).

var<private> st: array<u64, 12>;

fn exp_acc(base: u64, tail: u64, m: u32) -> u64 {
    var r = base;
    for (var i = 0u; i < m; i++) {
        r = f_square(r);
    }
    return f_mul(r, tail);
}

fn inv_sbox1(x: u64) -> u64 {
    let t1 = f_square(x);
    let t2 = f_square(t1);
    let t3 = exp_acc(t2, t2, 3u);
    let t4 = exp_acc(t3, t3, 6u);
    let t5 = exp_acc(t4, t4, 12u);
    let t6 = exp_acc(t5, t3, 6u);
    let t7 = exp_acc(t6, t6, 31u);
    let a = f_square(f_square(f_mul(f_square(t7), t6)));
    let b = f_mul(f_mul(t1, t2), x);
    return f_mul(a, b);
}

fn sbox1(x: u64) -> u64 {
    let x2 = f_square(x);
    let x4 = f_square(x2);
    let x3 = f_mul(x2, x);
    return f_mul(x3, x4);
}

// winter-crypto's MDS multiplication: 32-bit halves times small integers, summed in 64 bits,
// folded with the special form of p.
fn mds_reduce(l: u64, h: u64) -> u64 {
    let s_lo = l + (h << 32u);
    let s_hi = (h >> 32u) + select(0lu, 1lu, s_lo < l);
    let z = (s_hi << 32u) - s_hi;
    let res = s_lo + z;
    return res + adj(res < s_lo);
}

fn apply_mds() {
    var lo: array<u64, 12>;
    var hi: array<u64, 12>;
    for (var i = 0u; i < 12u; i++) {
        lo[i] = st[i] & LO32;
        hi[i] = st[i] >> 32u;
    }
    for (var r = 0u; r < 12u; r++) {
        var acc_l = 0lu;
        var acc_h = 0lu;
        for (var c = 0u; c < 12u; c++) {
            let m = rc[(c + 12u - r) % 12u];
            acc_l = acc_l + lo[c] * m;
            acc_h = acc_h + hi[c] * m;
        }
        st[r] = mds_reduce(acc_l, acc_h);
    }
}

fn permute() {
    for (var round = 0u; round < 7u; round++) {
        for (var i = 0u; i < 12u; i++) {
            st[i] = sbox1(st[i]);
        }
        apply_mds();
        for (var i = 0u; i < 12u; i++) {
            st[i] = f_add(st[i], rc[12u + round * 12u + i]);
        }
        for (var i = 0u; i < 12u; i++) {
            st[i] = inv_sbox1(st[i]);
        }
        apply_mds();
        for (var i = 0u; i < 12u; i++) {
            st[i] = f_add(st[i], rc[96u + round * 12u + i]);
        }
    }
}
