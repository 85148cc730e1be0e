"""Compiled loops of the fused particle step (numba; see :mod:`pde_popdyn.particles.fused`).

* :func:`advance` — the mutation and OU sub-steps of one time step in one pass over the agents,
  block by block: the block's normals are drawn from the counter-based generator of
  :mod:`pde_popdyn.particles.counter` into buffers that stay in the L1 cache, then the block's
  agents are updated in place. No array of size N is allocated.
* :func:`joint` — the same Strang pass with two normals per agent instead of three, when the
  OU centre is affine in h (θ ∈ R, constant coefficients).
* :func:`log_weights` — w_i = e^{κτ(F_i − max F)} in place, and Σ w.
* :func:`systematic_counts_into` and :func:`fill_in_place` — systematic resampling in place,
  O(N) without sorting: agent i gets c_i = ⌊o + g C_i⌋ − ⌊o + g C_{i−1}⌋ copies (C_i the
  cumulative weights); agents with c_i ≥ 1 keep their slot, and the extra copies fill the slots
  of the agents with c_i = 0 (and, when the number of agents grows, the new slots);
  :func:`resample_scaled` does both in one pass (a shard's resampling).
* :func:`moments` — weighted sums for the moments of (θ, h) and ⟨F⟩ in one pass.
* :func:`bin2d` — a weighted histogram on uniform edges, O(N).

Each loop is written once in Python; ``HAVE_NUMBA`` tells whether it is compiled. The
uncompiled versions are the reference the tests run on a few agents.
"""

from __future__ import annotations

import math

import numpy as np

from .counter import HAVE_NUMBA, ZIG_F, ZIG_K, ZIG_R, ZIG_X, normals_into

if HAVE_NUMBA:
    import numba

#: agents per block of the fused pass (even): the block's normals stay in the cache
BLOCK = 1024
STREAM_H1, STREAM_THETA, STREAM_H2 = 0, 1, 2
#: boundary rules for h, as the kernels number them
BOUNDARY_CODES = {None: 0, "reflecting": 1, "periodic": 2, "clip": 3}


def _fold_py(x, lo, hi, kind):
    """Map one value into [lo, hi] as :func:`pde_popdyn.slow.agents.apply_boundary` does,
    with the same arithmetic (numpy's floating modulo: fmod, then the divisor's sign)."""
    length = hi - lo
    if kind == 1:
        p = 2.0 * length
        y = np.fmod(x - lo, p)
        if y != 0.0 and y < 0.0:
            y += p
        return lo + length - abs(length - y)
    if kind == 2:
        y = np.fmod(x - lo, length)
        if y != 0.0 and y < 0.0:
            y += length
        return lo + y
    return min(max(x, lo), hi)


def _fix_block_py(hb, m, lo, hi, kind):
    """Apply the boundary rule to hb[:m] where a value left the box. (The kernels pass
    views of a block and index them from 0, so that the compiled loops need no negative-
    index checks and vectorise.)"""
    out = False
    for k in range(m):                      # a vectorised test first: leaving is rare
        out |= (hb[k] < lo) | (hb[k] > hi)
    if not out:
        return
    for k in range(m):
        x = hb[k]
        if x < lo or x > hi:
            hb[k] = fold(x, lo, hi, kind)


def _ou_block_py(tb, d, m, z, db, sb, cb, crow, ccol):
    """θ ← c + (θ − c)·dec + sd·ξ for the m agents of a block: tb their θ (flattened, m·d
    values), db/sb the decay and noise scale (one value, or one per agent of the block), cb
    the centre (one value, one per agent (crow), one per component (ccol), or both); the
    branches are hoisted out of the loops, so that the common cases (d = 1) vectorise."""
    per = db.shape[0] > 1
    if d == 1 and not per and not crow:
        c, dk, sk = cb[0], db[0], sb[0]
        for k in range(m):
            tb[k] = c + (tb[k] - c) * dk + sk * z[k]
    elif d == 1 and not per:
        dk, sk = db[0], sb[0]
        for k in range(m):
            c = cb[k]
            tb[k] = c + (tb[k] - c) * dk + sk * z[k]
    elif d == 1:
        for k in range(m):
            c = cb[k] if crow else cb[0]
            tb[k] = c + (tb[k] - c) * db[k] + sb[k] * z[k]
    else:
        for k in range(m):
            dk = db[k] if per else db[0]
            sk = sb[k] if per else sb[0]
            base = (k if crow else 0) * (d if ccol else 1)
            for j in range(d):
                c = cb[base + j] if ccol else cb[base]
                tb[k * d + j] = c + (tb[k * d + j] - c) * dk + sk * z[k * d + j]


def _advance_py(tf, d, h, n0, n1, n2, base, a1, a2, do_o, dec, sd, cf, crow, ccol, lo, hi,
                kind, tlo, thi, twrap):
    """One pass of M(a1) O M(a2) over agents base … base + N − 1 of the population, in place.

    tf: their θ flattened, of length N·d (agent i's components at i·d … i·d + d − 1); h: (N,);
    ``base`` (uint64, even): the global number of the first, which indexes the normals.
    M(a): h ← h + a ξ then the boundary rule ``kind`` on [lo, hi] (skipped when a == 0).
    O (if ``do_o``): θ ← c + (θ − c)·dec + sd·ξ per component, with dec, sd of length 1 or N
    and the centre cf flattened: one value (crow and ccol False), one per agent (crow), one
    per component (ccol) or one per agent and component (both); θ wraps periodically into
    [tlo, thi] when ``twrap`` (d = 1). Normals: stream 0 (first M, element i), 1 (θ, element
    i·d + j), 2 (second M, element i).
    """
    n = h.shape[0]
    B = BLOCK
    z = np.empty(B * d + 2)
    w1 = np.empty(B * d + 2, np.uint64)
    w2 = np.empty(B * d + 2, np.uint64)
    ix = np.empty(B * d + 2, np.int64)
    per = dec.shape[0] > 1
    cw = d if ccol else 1
    for b0 in range(0, n, B):
        m = min(B, n - b0)
        me = m + (m & 1)
        md = m * d
        mde = md + (md & 1)
        hb = h[b0:b0 + m]
        # each sub-step draws its block of normals (one counter stream each) and applies
        # them at once, so that one buffer of normals suffices and stays in the L1 cache
        if a1 != 0.0:
            normals_into(n0, n1, n2, np.uint64(STREAM_H1), base + np.uint64(b0), me, z, w1, w2,
                         ix, ZIG_X, ZIG_F, ZIG_R, ZIG_K)
            for k in range(m):
                hb[k] += a1 * z[k]
            if kind != 0:
                fix_block(hb, m, lo, hi, kind)
        if do_o:
            normals_into(n0, n1, n2, np.uint64(STREAM_THETA),
                         (base + np.uint64(b0)) * np.uint64(d), mde, z,
                         w1, w2, ix, ZIG_X, ZIG_F, ZIG_R, ZIG_K)
            tb = tf[b0 * d:(b0 + m) * d]
            db = dec[b0:b0 + m] if per else dec
            sb = sd[b0:b0 + m] if per else sd
            cb = cf[b0 * cw:(b0 + m) * cw] if crow else cf
            ou_block(tb, d, m, z, db, sb, cb, crow, ccol)
            if twrap:
                fix_block(tb, m, tlo, thi, 2)
        if a2 != 0.0:
            normals_into(n0, n1, n2, np.uint64(STREAM_H2), base + np.uint64(b0), me, z, w1, w2,
                         ix, ZIG_X, ZIG_F, ZIG_R, ZIG_K)
            for k in range(m):
                hb[k] += a2 * z[k]
            if kind != 0:
                fix_block(hb, m, lo, hi, kind)


#: agents closer than this many mutation standard deviations to the box take the exact
#: three-normal composition in :func:`joint` (beyond it the Gaussian tail is < 10⁻²²)
JOINT_MARGIN = 10.0


def _joint_py(tf, h, n0, n1, n2, base, s, beta, gamma, dec, slope, offset, a1, a2, sd, lo, hi,
              kind, tlo, thi, twrap):
    """One Strang pass M(a1) O M(a2) over agents base … base + N − 1 (θ ∈ R, constant OU
    coefficients, centre c(h) = slope·h + offset) as the Gaussian move of (θ, h) it is:
    h ← h + s ζ₁, θ ← c(h) + (θ − c(h))·dec + β ζ₁ + γ ζ₂ (ζ₁ from stream 0, ζ₂ from stream 1:
    two normals per agent; :class:`pde_popdyn.AffineCenter` has the coefficients).

    With a box (``kind`` ≠ 0), an agent within ``JOINT_MARGIN``·s of its ends takes the three
    sub-steps one by one, with the boundary rule after each mutation: ξ₁ = ζ₁, ξ₂ = ζ₂ and ξ₃
    from stream 2, so that the law is the composition's wherever the box can act."""
    n = h.shape[0]
    B = BLOCK
    z1 = np.empty(B + 2)
    z2 = np.empty(B + 2)
    z3 = np.empty(2)
    w1 = np.empty(B + 2, np.uint64)
    w2 = np.empty(B + 2, np.uint64)
    ix = np.empty(B + 2, np.int64)
    lo_in, hi_in = lo + JOINT_MARGIN * s, hi - JOINT_MARGIN * s
    for b0 in range(0, n, B):
        m = min(B, n - b0)
        me = m + (m & 1)
        e0 = base + np.uint64(b0)
        normals_into(n0, n1, n2, np.uint64(STREAM_H1), e0, me, z1, w1, w2, ix, ZIG_X, ZIG_F,
                     ZIG_R, ZIG_K)
        normals_into(n0, n1, n2, np.uint64(STREAM_THETA), e0, me, z2, w1, w2, ix, ZIG_X,
                     ZIG_F, ZIG_R, ZIG_K)
        hb = h[b0:b0 + m]
        tb = tf[b0:b0 + m]
        near = False
        if kind != 0:
            for k in range(m):              # a vectorised test first: the box is usually far
                near |= (hb[k] < lo_in) | (hb[k] > hi_in)
        if not near:
            for k in range(m):
                c = slope * hb[k] + offset
                tb[k] = c + (tb[k] - c) * dec + beta * z1[k] + gamma * z2[k]
                hb[k] += s * z1[k]
        else:
            for k in range(m):
                x = hb[k]
                if lo_in <= x <= hi_in:
                    c = slope * x + offset
                    tb[k] = c + (tb[k] - c) * dec + beta * z1[k] + gamma * z2[k]
                    hb[k] = x + s * z1[k]
                    continue
                x = x + a1 * z1[k]
                if x < lo or x > hi:
                    x = fold(x, lo, hi, kind)
                c = slope * x + offset
                tb[k] = c + (tb[k] - c) * dec + sd * z2[k]
                e = e0 + np.uint64(k)
                normals_into(n0, n1, n2, np.uint64(STREAM_H2), e - (e & np.uint64(1)), 2, z3,
                             w1, w2, ix, ZIG_X, ZIG_F, ZIG_R, ZIG_K)
                hb[k] = x + a2 * z3[e & np.uint64(1)]
        if kind != 0:
            fix_block(hb, m, lo, hi, kind)
        if twrap:
            fix_block(tb, m, tlo, thi, 2)


_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125                 # ln 2 split so that k·_LN2_HI is exact
_LN2_LO = 1.4286068203094172e-06
_MAGIC = 6755399441055744.0                 # 2⁵² + 2⁵¹: adding it leaves k in the low bits
_EXP_FLOOR = -708.0                         # below, e^x is subnormal: taken as 0
_I1023 = np.int64(1023)
_S52 = np.int64(52)
# Taylor coefficients 1/k! of e^r (|r| ≤ ln2/2: the truncation after r¹³ is < 5·10⁻¹⁸)
_E3, _E4, _E5, _E6, _E7, _E8, _E9, _E10, _E11, _E12, _E13 = (
    1.0 / math.factorial(k) for k in range(3, 14))


def _exp_block_py(x, out, kbuf, m):
    """out[j] = e^{x[j]} for x[j] ≤ 0, j < m, in loops that vectorise.

    When every x ≥ −1/16 (small selection steps), e^x is its Taylor polynomial of degree 9
    (truncation < 4·10⁻¹⁸). Otherwise e^x = 2^k e^r with k = round(x/ln 2), r = x − k ln 2
    (in two parts), e^r by its Taylor polynomial of degree 13 evaluated by Estrin's scheme,
    and 2^k written into the exponent bits. Relative error ≤ 3·10⁻¹⁶; 0 for x < −708 (where
    e^x is subnormal)."""
    low = 0.0
    for j in range(m):
        low = min(low, x[j])
    if low >= -0.0625:
        for j in range(m):
            r = x[j]
            r2 = r * r
            r4 = r2 * r2
            out[j] = ((1.0 + r) + (0.5 + _E3 * r) * r2) + \
                ((_E4 + _E5 * r) + (_E6 + _E7 * r) * r2) * r4 + (_E8 + _E9 * r) * (r4 * r4)
        return
    kb = kbuf.view(np.int64)
    for j in range(m):
        xj = max(x[j], _EXP_FLOOR)
        k = np.floor(xj * _LOG2E + 0.5)
        r = (xj - k * _LN2_HI) - k * _LN2_LO
        r2 = r * r
        r4 = r2 * r2
        b0 = (1.0 + r) + (0.5 + _E3 * r) * r2
        b1 = (_E4 + _E5 * r) + (_E6 + _E7 * r) * r2
        b2 = (_E8 + _E9 * r) + (_E10 + _E11 * r) * r2
        out[j] = (b0 + b1 * r4) + (b2 + (_E12 + _E13 * r) * r4) * (r4 * r4)
        kbuf[j] = k + _MAGIC
    for j in range(m):
        kb[j] = (kb[j] + _I1023) << _S52
    for j in range(m):
        out[j] = out[j] * kbuf[j] if x[j] >= _EXP_FLOOR else 0.0


def _log_weights_py(F, w, kt):
    """w ← e^{kt(F − max F)} (:func:`exp_block`; w may be F); returns (max F, Σ w)."""
    n = F.shape[0]
    top = -np.inf
    for i in range(n):
        top = max(top, F[i])
    B = BLOCK
    xb = np.empty(B)
    kbuf = np.empty(B)
    total = 0.0
    for b0 in range(0, n, B):
        m = min(B, n - b0)
        Fb = F[b0:b0 + m]
        wb = w[b0:b0 + m]
        for j in range(m):
            xb[j] = kt * (Fb[j] - top)
        exp_block(xb, wb, kbuf, m)
        total += block_sum(wb, m)
    return top, total


def _block_sum_py(x, m):
    """Σ x[:m] with four interleaved partial sums, which vectorise (a single running sum is
    bound by the latency of one addition per element)."""
    s0 = s1 = s2 = s3 = 0.0
    q = m >> 2
    for j in range(q):
        s0 += x[4 * j]
        s1 += x[4 * j + 1]
        s2 += x[4 * j + 2]
        s3 += x[4 * j + 3]
    for j in range(4 * q, m):
        s0 += x[j]
    return (s0 + s1) + (s2 + s3)


def _counts_py(w, m, offset, scale, k_lo, k_hi):
    """w[:m] ← offspring numbers ⌊offset + scale·C_i⌋ − ⌊offset + scale·C_{i−1}⌋ (C the running
    sum of w), the cumulative values clamped to [k_lo, k_hi] and the last one set to k_hi, so
    that the counts sum to k_hi − k_lo exactly whatever the rounding (:func:`counts_scaled`
    with unit factors: the same arithmetic)."""
    one = np.ones(1)
    counts_scaled(w, m, offset, scale, k_lo, k_hi, one, m + 1)


def _counts_scaled_py(w, m, offset, scale, k_lo, k_hi, fac, chunk):
    """:func:`systematic_counts_into` of the weights w_i·fac[i // chunk] (``chunk`` a multiple
    of :data:`BLOCK`: the weights of a sharded step come in chunks, each with its own
    scale, :meth:`pde_popdyn.particles.fused.FusedStep.__call__`); the factors are applied as
    the weights are read. Block by block (:func:`counts_block`)."""
    buf = np.empty(BLOCK + 1)
    state = np.array([0.0, np.float64(k_lo)])
    b0 = 0
    while b0 < m:
        b0 += counts_block(w, m, b0, offset, scale, np.float64(k_lo), np.float64(k_hi), fac,
                           chunk, buf, state)


def _counts_block_py(w, m, b0, offset, scale, lo, hi, fac, chunk, buf, state):
    """The offspring numbers of the block of agents b0 … b0 + BLOCK − 1 (fewer at the end),
    in place in w; ``state`` = [running sum, last cumulative count] carries from block to
    block, ``buf`` (BLOCK + 1) is scratch; returns the block's length.

    The running sum of a block is taken over its four quarters at once (four independent
    chains of additions, then the quarters' offsets), and the floors and their differences
    in loops that vectorise; the integers are held exactly in float64. (The running sum so
    differs from a strictly sequential one by rounding only.)"""
    B = BLOCK
    Q = B // 4
    c = state[0]
    prev = state[1]
    mb = min(B, m - b0)
    wb = w[b0:b0 + mb]
    f = fac[b0 // chunk]
    if mb == B:
        s0 = s1 = s2 = s3 = 0.0
        for j in range(Q):
            s0 += wb[j] * f
            s1 += wb[Q + j] * f
            s2 += wb[2 * Q + j] * f
            s3 += wb[3 * Q + j] * f
            buf[j + 1] = s0
            buf[Q + j + 1] = s1
            buf[2 * Q + j + 1] = s2
            buf[3 * Q + j + 1] = s3
        o1 = c + s0
        o2 = o1 + s1
        o3 = o2 + s2
        for j in range(Q):
            buf[j + 1] += c
            buf[Q + j + 1] += o1
            buf[2 * Q + j + 1] += o2
            buf[3 * Q + j + 1] += o3
        c = o3 + s3
    else:
        for j in range(mb):
            c += wb[j] * f
            buf[j + 1] = c
    for j in range(mb):
        buf[j + 1] = min(max(np.floor(offset + scale * buf[j + 1]), lo), hi)
    if b0 + mb == m:
        buf[mb] = hi
    buf[0] = prev
    for j in range(mb):
        wb[j] = buf[j + 1] - buf[j]
    state[0] = c
    state[1] = buf[mb]
    return mb


def _resample_scaled_py(w, m, offset, scale, k_lo, k_hi, fac, chunk, tf, d, h):
    """:func:`counts_scaled` and then :func:`fill_in_place` (n_out = k_hi − k_lo) in one pass:
    the same offspring numbers, the same agents in the same slots, but each block's numbers
    are computed (in w, as there) when the fill's cursors first reach it, so that the fill
    reads them from the cache instead of a second pass over memory."""
    lo = np.float64(k_lo)
    fill_core(w, m, int(k_hi - k_lo), tf, d, h, 0, offset, scale, lo, np.float64(k_hi), fac,
              chunk, np.empty(BLOCK + 1), np.array([0.0, lo]))


def _fill_py(counts, m, n_out, tf, d, h):
    """Rearrange the agents in place so that slots 0 … n_out − 1 hold agent i counts[i] times
    (θ flattened in ``tf``, d components per agent, capacity ≥ n_out agents; and h). Agents
    with counts ≥ 1 below n_out keep their slot; their extra copies, and all copies of agents
    at or beyond n_out, fill the slots of agents with no offspring and the slots m … n_out − 1.
    A source slot is never a destination, so no value is overwritten before it is read.
    (:func:`fill_core` with every count given.)"""
    fill_core(counts, m, n_out, tf, d, h, m, 0.0, 0.0, 0.0, 0.0, np.ones(1), m + 1,
              np.empty(1), np.zeros(2))


def _fill_core_py(counts, m, n_out, tf, d, h, done, offset, scale, lo, hi, fac, chunk, buf,
                  state):
    """The fill of :func:`_fill_py`. Counts of agents ≥ ``done`` are not yet known: each block
    of them is computed by :func:`counts_block` (arguments as there) when a cursor first
    reaches it (``done = m``: all given, no block is computed). Both cursors skip runs of 16
    agents with one offspring each by a vectorised test (most agents, for small selection
    steps)."""
    keep = min(m, n_out)
    src = 0
    left = 0
    j = 0
    dst = 0
    while dst < n_out:
        if dst + 16 <= keep and dst % 16 == 0:
            while done < dst + 16:
                done += counts_block(counts, m, done, offset, scale, lo, hi, fac, chunk, buf,
                                     state)
            low = counts[dst]
            for q in range(1, 16):
                low = min(low, counts[dst + q])
            if low > 0.0:
                dst += 16
                continue
        if dst < m:
            while done <= dst:
                done += counts_block(counts, m, done, offset, scale, lo, hi, fac, chunk, buf,
                                     state)
            if counts[dst] != 0.0:
                dst += 1
                continue
        while left == 0:
            if src + 16 <= keep and src % 16 == 0:
                while done < src + 16:
                    done += counts_block(counts, m, done, offset, scale, lo, hi, fac, chunk,
                                         buf, state)
                top = counts[src]
                for q in range(1, 16):
                    top = max(top, counts[src + q])
                if top <= 1.0:
                    src += 16
                    continue
            while done <= src:
                done += counts_block(counts, m, done, offset, scale, lo, hi, fac, chunk, buf,
                                     state)
            c = counts[src]
            extra = c - 1.0 if src < keep and c >= 1.0 else (c if src >= keep else 0.0)
            j = src
            left = int(extra)
            src += 1
        for q in range(d):
            tf[dst * d + q] = tf[j * d + q]
        h[dst] = h[j]
        left -= 1
        dst += 1


def _moments_py(tf, d, h, F, w, m):
    """Weighted sums over the first m agents: (Σw, Σwθ, Σwh, Σwθ², Σwh², Σwθh, ΣwF) for the
    first θ-component (tf: θ flattened, d components per agent; w and F may be empty: unit
    weights, no fitness)."""
    s = np.zeros(7)
    use_w = w.shape[0] > 0
    use_f = F.shape[0] > 0
    for i in range(m):
        wi = w[i] if use_w else 1.0
        x = tf[i * d]
        y = h[i]
        s[0] += wi
        s[1] += wi * x
        s[2] += wi * y
        s[3] += wi * x * x
        s[4] += wi * y * y
        s[5] += wi * x * y
        if use_f:
            s[6] += wi * F[i]
    return s


def _bin2d_py(x, y, w, m, x0, x1, nx, y0, y1, ny, out):
    """out[a, b] += Σ w over the agents in cell (a, b) of nx × ny uniform cells on
    [x0, x1] × [y0, y1]; agents outside are dropped, the last edges are closed (as in
    numpy.histogram2d). An agent within rounding of an interior edge may land on either
    side of it."""
    use_w = w.shape[0] > 0
    sx, sy = nx / (x1 - x0), ny / (y1 - y0)
    for i in range(m):
        xi, yi = x[i], y[i]
        if xi < x0 or xi > x1 or yi < y0 or yi > y1:
            continue
        a = min(int((xi - x0) * sx), nx - 1)
        b = min(int((yi - y0) * sy), ny - 1)
        out[a, b] += w[i] if use_w else 1.0


if HAVE_NUMBA:
    _jit = numba.njit(cache=True)
    fold = _jit(_fold_py)
    fix_block = _jit(_fix_block_py)
    ou_block = _jit(_ou_block_py)
    exp_block = _jit(_exp_block_py)
    block_sum = _jit(_block_sum_py)
    advance = _jit(_advance_py)
    joint = _jit(_joint_py)
    log_weights = _jit(_log_weights_py)
    # inlined into its callers at numba's IR level: a call per block costs ~10 % of the pass
    counts_block = numba.njit(cache=True, inline="always")(_counts_block_py)
    fill_core = numba.njit(cache=True, inline="always")(_fill_core_py)
    counts_scaled = _jit(_counts_scaled_py)
    resample_scaled = _jit(_resample_scaled_py)
    systematic_counts_into = _jit(_counts_py)
    fill_in_place = _jit(_fill_py)
    moments = _jit(_moments_py)
    bin2d = _jit(_bin2d_py)
else:  # pragma: no cover - exercised only without numba
    fold, fix_block, advance, joint = _fold_py, _fix_block_py, _advance_py, _joint_py
    ou_block, exp_block, block_sum = _ou_block_py, _exp_block_py, _block_sum_py
    log_weights, systematic_counts_into, fill_in_place = _log_weights_py, _counts_py, _fill_py
    counts_block, counts_scaled, fill_core = _counts_block_py, _counts_scaled_py, _fill_core_py
    resample_scaled = _resample_scaled_py
    moments, bin2d = _moments_py, _bin2d_py

__all__ = ["advance", "log_weights", "systematic_counts_into", "counts_scaled",
           "resample_scaled",
           "fill_in_place", "moments",
           "bin2d", "fold", "BLOCK", "BOUNDARY_CODES", "HAVE_NUMBA"]
