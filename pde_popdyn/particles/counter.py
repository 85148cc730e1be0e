"""Counter-based standard normals for the compiled particle step: Philox4x32-10 and a ziggurat.

Every normal is a pure function of a 96-bit step nonce, a stream number and the index of the
element (agent i, or θ-component i·d + j) in that stream:

    word(e) = 64 bits of Philox4x32-10( counter = (⌊e/2⌋ mod 2³², ⌊e/2⌋ / 2³², stream, n₂),
                                        key = (n₀, n₁) ),   half e mod 2 of its 128 bits;
    ξ(e)    = ziggurat(word(e)),

so the normals do not depend on how the agents are split into blocks, threads or shards of
one population, and one step's normals are drawn in whatever order is fastest (in blocks that
stay in the L1 cache). The simulator draws the nonce (n₀, n₁, n₂) for each step from its numpy
``Generator``, whose state therefore remains the whole state of a run (it is what snapshot
files store).

Philox4x32-10 is the counter-based generator of Salmon, Moraes, Dror and Shaw (SC'11): ten
rounds of two 32×32→64-bit multiplications with key bumps by the Weyl constants; the tests
check it against the published known-answer vectors.

The ziggurat (Marsaglia and Tsang, 2000) covers the half-normal density f(x) = e^{−x²/2} by
1024 layers of equal area v: layer i spans [0, x_i] in x, with x_0 = v/f(r) for the base strip
(which also carries the tail beyond r = x_1 ≈ 4.17) and x_1024 = 0. A word gives the layer
(its low 10 bits), the sign (bit 10) and a 52-bit uniform u (its top bits); z = u·x_i is
returned at once when z < x_{i+1}, which happens for 99.6 % of the words, and is a vectorised
table look-up (the tables, 16 kB, stay in the L1 cache). Otherwise (the wedge of a layer, or the tail of the base strip) the exact
rejection test runs with further Philox words whose counters carry an attempt number, still a
pure function of (nonce, stream, e).
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None
    HAVE_NUMBA = False

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S12 = np.uint64(12)
_S11 = np.uint64(11)
_S8 = np.uint64(8)                          # the attempt number's place in the counter
_S10 = np.uint64(10)                        # the sign bit of a word
_ONE = np.uint64(1)
_LAYER = np.uint64(0x3FF)
_EXP_ONE = np.uint64(0x3FF0000000000000)    # the bits of 1.0: (mantissa | these) is 1 + u
_TWO_M53 = 2.0 ** -53


def _tables(layers: int = 1024) -> tuple[np.ndarray, np.ndarray, float]:
    """The layer edges x_0 … x_layers and f(x_i) of the ziggurat, built by bisection on r so
    that the top layer closes at f = 1 (r ≈ 3.6541528853610088 for 256 layers)."""
    def f(x):
        return math.exp(-0.5 * x * x)

    def build(r):
        v = r * f(r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
        x = [v / f(r), r]
        for _ in range(2, layers):
            y = f(x[-1]) + v / x[-1]
            if y >= 1.0:
                return None, 1.0
            x.append(math.sqrt(-2.0 * math.log(y)))
        return x, f(x[-1]) + v / x[-1] - 1.0

    lo, hi = 2.5, 5.0                      # build(lo) overshoots the top, build(hi) falls short
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        x, miss = build(mid)
        if x is None or miss > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-15:
            break
    x, _ = build(hi)
    edges = np.array(x + [0.0])
    return edges, np.exp(-0.5 * edges ** 2), float(edges[1])


ZIG_X, ZIG_F, ZIG_R = _tables()
#: the fast test u·x_i < x_{i+1} as an integer test on the 52-bit mantissa: j < ⌈2⁵² x_{i+1}/x_i⌉
ZIG_K = np.minimum(np.ceil(2.0 ** 52 * ZIG_X[1:] / ZIG_X[:-1]), 2.0 ** 52).astype(np.uint64)


def _philox_py(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 words holding 32-bit values (scalars or arrays alike)."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = ((p1 >> _S32) ^ c1 ^ k0) & _MASK, p1 & _MASK, \
            ((p0 >> _S32) ^ c3 ^ k1) & _MASK, p0 & _MASK
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


def _slow_py(word, e, stream, n0, n1, n2, X, F, r):
    """The exact ziggurat rejection steps for a word that missed the fast test."""
    attempt = np.uint64(0)
    elo, ehi = e & _MASK, e >> _S32
    while True:
        i = word & _LAYER
        u = np.float64(word >> _S12) * 2.0 ** -52
        z = u * X[i]
        neg = (word >> _S10) & _ONE
        if z < X[i + _ONE]:
            return -z if neg else z
        if i == 0:                          # the tail beyond r, by Marsaglia's exact method
            while True:
                attempt += _ONE
                a, b, c, d = philox(elo, ehi, stream | (attempt << _S8), n2, n0, n1)
                v = np.float64(((a << _S32) | b) >> _S11) * _TWO_M53
                v2 = np.float64(((c << _S32) | d) >> _S11) * _TWO_M53
                t = -math.log1p(-v) / r
                if -2.0 * math.log1p(-v2) > t * t:
                    return -(r + t) if neg else r + t
        attempt += _ONE                     # the wedge between x_{i+1} and x_i
        a, b, c, d = philox(elo, ehi, stream | (attempt << _S8), n2, n0, n1)
        v = np.float64(((a << _S32) | b) >> _S11) * _TWO_M53
        if F[i] + v * (F[i + _ONE] - F[i]) < math.exp(-0.5 * z * z):
            return -z if neg else z
        word = (c << _S32) | d              # rejected: start again from a fresh word


def _words_py(n0, n1, n2, stream, e0, m, words):
    """words[j] = word(e0 + j) for j < m (e0, m even)."""
    q0 = e0 >> _ONE
    for q in range(m >> 1):
        e = q0 + np.uint64(q)
        a, b, c, d = philox(e & _MASK, e >> _S32, stream, n2, n0, n1)
        j = np.uint64(q) << _ONE             # unsigned: no negative-index check
        words[j] = (a << _S32) | b
        words[j + _ONE] = (c << _S32) | d


def _normals_py(n0, n1, n2, stream, e0, m, out, words, bits, idx, X, F, r, KT):
    """out[j] = ξ(e0 + j) of ``stream`` for j < m (e0 and m even; ``words`` and ``bits``
    uint64 and ``idx`` int64 scratch arrays of at least m; whole arrays, not slices, so that
    the compiled loops see contiguous memory). The fast path runs in loops that vectorise;
    the indices of the words that miss it are gathered branch-free, then those few go
    through the exact rejection steps."""
    words_into(n0, n1, n2, stream, e0, m, words)
    fb = bits.view(np.float64)
    for j in range(m):                      # 1 + u exactly, by writing the exponent bits
        bits[j] = (words[j] >> _S12) | _EXP_ONE
    for j in range(m):
        w = words[j]
        out[j] = (fb[j] - 1.0) * X[w & _LAYER] * (1.0 - 2.0 * np.float64((w >> _S10) & _ONE))
    nb = 0
    for c0 in range(0, m, 64):              # a vectorised test per 64 words: misses are rare
        c1 = min(c0 + 64, m)
        miss = 0
        for j in range(c0, c1):
            w = words[j]
            miss += (w >> _S12) >= KT[w & _LAYER]
        if miss:
            for j in range(c0, c1):
                w = words[j]
                idx[nb] = j
                nb += (w >> _S12) >= KT[w & _LAYER]
    for q in range(nb):
        j = idx[q]
        out[j] = slow(words[j], e0 + np.uint64(j), stream, n0, n1, n2, X, F, r)


if HAVE_NUMBA:
    philox = numba.njit(inline="always", cache=True)(_philox_py)
    slow = numba.njit(cache=True)(_slow_py)
    words_into = numba.njit(cache=True)(_words_py)
    normals_into = numba.njit(cache=True)(_normals_py)
else:  # pragma: no cover - exercised only without numba
    philox, slow, words_into, normals_into = _philox_py, _slow_py, _words_py, _normals_py


def nonce_from(rng: np.random.Generator) -> tuple[np.uint64, np.uint64, np.uint64]:
    """Draw one step's 96-bit nonce (n₀, n₁, n₂) from the run's generator."""
    v = rng.integers(0, 2 ** 32, size=3, dtype=np.uint64)
    return np.uint64(v[0]), np.uint64(v[1]), np.uint64(v[2])


def normals(nonce, stream: int, e0: int, m: int) -> np.ndarray:
    """The normals ξ(e0), …, ξ(e0 + m − 1) of ``stream`` under ``nonce`` (for tests and
    small draws; the compiled step draws them in blocks inside its loop)."""
    if e0 % 2 or m % 2:
        raise ValueError(f"e0={e0} and m={m} must be even (one Philox call gives two words)")
    out = np.empty(m)
    normals_into(nonce[0], nonce[1], nonce[2], np.uint64(stream), np.uint64(e0), m, out,
                 np.empty(m, np.uint64), np.empty(m, np.uint64), np.empty(m, np.int64),
                 ZIG_X, ZIG_F, ZIG_R, ZIG_K)
    return out


def philox4x32(counter, key) -> tuple[int, int, int, int]:
    """Philox4x32-10 of one 128-bit counter (four 32-bit words) and 64-bit key (two words)."""
    c = [np.uint64(v) for v in counter]
    k = [np.uint64(v) for v in key]
    return tuple(int(v) for v in philox(c[0], c[1], c[2], c[3], k[0], k[1]))


__all__ = ["normals", "normals_into", "nonce_from", "philox4x32", "philox", "ZIG_X", "ZIG_F",
           "ZIG_R", "ZIG_K", "HAVE_NUMBA"]
