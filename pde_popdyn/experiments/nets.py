"""Multilayer perceptrons batched over a population of agents, and Adam with stacked state.

Every agent ``i`` owns its own network. The parameters of all agents live in one C-contiguous
array ``theta`` of shape ``(N, P)`` (one flattened parameter vector per row), and each layer's
weights and biases are *views* into it:

    W_l = theta[:, s_l : s_l + n_in·n_out].reshape(N, n_in, n_out),   b_l = theta[:, ...].

So a population forward pass is one batched matrix product per layer,

    z_l = a_{l−1} W_l + b_l,   a_l = relu(z_l)  (no activation after the last layer),

with ``a_0`` of shape ``(N, B, n_in)``: B inputs per agent, each agent through its own
weights. Copying an agent (PBT's exploit), recording θ, or an Adam step are row operations on
``theta``. Initialisation is the usual default of deep-learning libraries for a linear layer:
W and b uniform on [−1/√n_in, 1/√n_in].

Adam (Kingma & Ba, with the bias corrections; PyTorch's defaults β₁ = 0.9, β₂ = 0.999,
ε = 1e−8, no weight decay) keeps its moments m, v of shape ``(N, P)`` and a step count per
agent, and takes a per-agent learning rate η_i:

    m ← β₁ m + (1−β₁) g,   v ← β₂ v + (1−β₂) g²,
    θ ← θ − η_i · (m / (1−β₁^{t_i})) / (sqrt(v / (1−β₂^{t_i})) + ε).

Agents flagged inactive in a step keep θ, m, v and t_i unchanged (as if the step had not
happened for them), without leaving the vectorised path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class MLPLayout:
    """Where each layer's W and b sit in a flattened parameter vector.

    Parameters
    ----------
    sizes:
        Layer widths ``(n_in, hidden…, n_out)``, e.g. ``(4, 64, 64, 2)`` for the CartPole
        Q-network (two hidden layers of 64 ReLU units).
    """

    sizes: tuple[int, ...]
    slices: tuple[tuple[slice, slice], ...] = field(init=False, repr=False)

    def __post_init__(self):
        sizes = tuple(self.sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, (int, np.integer))
                                 or s < 1 for s in sizes):
            raise ValueError(f"sizes={self.sizes!r} must be at least two positive integers "
                             f"(n_in, ..., n_out), e.g. (4, 64, 64, 2)")
        sl, start = [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            w = slice(start, start + n_in * n_out)
            start += n_in * n_out
            b = slice(start, start + n_out)
            start += n_out
            sl.append((w, b))
        object.__setattr__(self, "sizes", tuple(int(s) for s in sizes))
        object.__setattr__(self, "slices", tuple(sl))

    @property
    def n_params(self) -> int:
        """P, the length of one agent's parameter vector."""
        return self.slices[-1][1].stop

    @property
    def n_layers(self) -> int:
        return len(self.slices)

    def views(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``[(W_l, b_l), ...]`` with W_l of shape (N, n_in, n_out) and b_l (N, n_out), views
        into ``theta`` of shape (N, P): writing them writes ``theta``."""
        if theta.ndim != 2 or theta.shape[1] != self.n_params:
            raise ValueError(f"theta has shape {theta.shape}; this network needs (N, "
                             f"{self.n_params})")
        n = theta.shape[0]
        out = []
        for (w, b), n_in, n_out in zip(self.slices, self.sizes[:-1], self.sizes[1:]):
            out.append((theta[:, w].reshape(n, n_in, n_out), theta[:, b]))
        return out

    def init(self, n: int, rng: np.random.Generator, dtype=np.float32) -> np.ndarray:
        """Parameters of ``n`` fresh networks: W, b ~ U[−1/√n_in, 1/√n_in] per layer."""
        theta = np.empty((n, self.n_params), dtype=dtype)
        for (w, b), n_in in zip(self.slices, self.sizes[:-1]):
            bound = 1.0 / np.sqrt(n_in)
            theta[:, w] = rng.uniform(-bound, bound, (n, w.stop - w.start))
            theta[:, b] = rng.uniform(-bound, bound, (n, b.stop - b.start))
        return theta


def workspace(n: int, batch: int, widths, dtype=np.float32) -> list[np.ndarray]:
    """Flat work buffers for :func:`forward`/:func:`backward` of up to ``n`` agents and
    ``batch`` inputs each, one per layer width."""
    return [np.empty(n * batch * w, dtype=dtype) for w in widths]


def _out(buffers, l: int, n: int, B: int, w: int, dtype) -> np.ndarray | None:
    """A C-contiguous (n, B, w) view of work buffer l (None: allocate)."""
    if buffers is None:
        return None
    return buffers[l][:n * B * w].reshape(n, B, w)


def forward(layers, x: np.ndarray, cache: list | None = None,
            buffers: list | None = None) -> np.ndarray:
    """The batched forward pass: ``x`` (N, B, n_in) → outputs (N, B, n_out).

    ``layers`` is :meth:`MLPLayout.views` of the population's parameters. When ``cache`` is a
    list, the hidden activations a_1 … a_{L−1} (after ReLU) are appended to it for
    :func:`backward`. ``buffers`` (:func:`workspace`) avoids allocating on every call (the
    hot path of a training loop); the result is then a view of a buffer.
    """
    a = x
    last = len(layers) - 1
    for l, (W, b) in enumerate(layers):
        n, B = a.shape[0], a.shape[1]
        z = np.matmul(a, W, out=_out(buffers, l, n, B, W.shape[2], W.dtype))
        if l < last:
            _bias_relu(z, b)
            if cache is not None:
                cache.append(z)
        else:
            z += b[:, None, :]
        a = z
    return a


def backward(layers, x: np.ndarray, cache: list, dout: np.ndarray, grads,
             buffers: list | None = None) -> None:
    """Gradients of a scalar loss per agent with respect to every W_l, b_l.

    Given ``dout`` = ∂loss_i/∂(outputs) of shape (N, B, n_out) and the activations stored by
    :func:`forward`, backpropagate (relu′(z) = 1{a > 0}) and write ∂loss_i/∂W_l (N, n_in,
    n_out) and ∂loss_i/∂b_l (N, n_out) into ``grads`` (:meth:`MLPLayout.views` of a gradient
    array). ``dout`` is overwritten; ``buffers`` as in :func:`forward` (not those holding
    ``cache``).
    """
    d = dout
    grads[-1][1][...] = d.sum(axis=1)
    for l in range(len(layers) - 1, -1, -1):
        W, _ = layers[l]
        a_prev = x if l == 0 else cache[l - 1]
        np.matmul(a_prev.transpose(0, 2, 1), d, out=grads[l][0])
        if l == 0:
            break
        n, B = d.shape[0], d.shape[1]
        d_prev = np.matmul(d, W.transpose(0, 2, 1),
                           out=_out(buffers, l - 1, n, B, W.shape[1], W.dtype))
        # relu′: zero where the unit was off (its activation is exactly 0 there); the bias
        # gradient of the layer below is the batch sum of the masked signal
        _mask_sum(d_prev, a_prev, grads[l - 1][1])
        d = d_prev


def _bias_relu_np(z, b):
    z += b[:, None, :]
    np.maximum(z, 0, out=z)


def _mask_sum_np(d, a, gb):
    d *= a > 0
    gb[...] = d.sum(axis=1)


def _bias_relu_kernel(z, b):  # pragma: no cover - compiled
    n, B, w = z.shape
    for i in range(n):
        for j in range(B):
            for k in range(w):
                v = z[i, j, k] + b[i, k]
                z[i, j, k] = v if v > 0 else 0 * v


def _mask_sum_kernel(d, a, gb):  # pragma: no cover - compiled
    n, B, w = d.shape
    for i in range(n):
        for k in range(w):
            gb[i, k] = 0
        for j in range(B):
            for k in range(w):
                v = d[i, j, k] if a[i, j, k] > 0 else 0 * d[i, j, k]
                d[i, j, k] = v
                gb[i, k] += v


try:  # numba is a dependency of the package; the numpy versions are the fallback
    import numba as _numba

    _jit = _numba.njit(cache=True, nogil=True, fastmath=True)
    _bias_relu_c, _mask_sum_c = _jit(_bias_relu_kernel), _jit(_mask_sum_kernel)

    def _bias_relu(z, b):
        if z.flags.c_contiguous:
            _bias_relu_c(z, np.ascontiguousarray(b))
        else:
            _bias_relu_np(z, b)

    def _mask_sum(d, a, gb):
        if d.flags.c_contiguous and a.flags.c_contiguous:
            g = np.empty(gb.shape, gb.dtype)
            _mask_sum_c(d, a, g)
            gb[...] = g
        else:
            _mask_sum_np(d, a, gb)
except ImportError:  # pragma: no cover
    _bias_relu, _mask_sum = _bias_relu_np, _mask_sum_np


class Adam:
    """Adam over a population: moments of shape (N, P), per-agent step count and learning
    rate (module docstring for the update).

    Parameters
    ----------
    n, n_params:
        Population size N and parameter-vector length P.
    betas, eps:
        As in PyTorch's ``torch.optim.Adam`` (defaults 0.9, 0.999 and 1e−8).
    dtype:
        Floating type of the moments (that of the parameters).
    """

    def __init__(self, n: int, n_params: int, betas=(0.9, 0.999), eps: float = 1e-8,
                 dtype=np.float32):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas={betas!r} must both lie in [0, 1)")
        if not eps > 0:
            raise ValueError(f"eps={eps!r} must be > 0")
        self.beta1, self.beta2, self.eps = b1, b2, float(eps)
        self.m = np.zeros((n, n_params), dtype=dtype)
        self.v = np.zeros((n, n_params), dtype=dtype)
        self.t = np.zeros(n, dtype=np.int64)

    def reset(self, idx) -> None:
        """Forget the moments and step counts of agents ``idx`` (a fresh optimiser)."""
        self.m[idx] = 0
        self.v[idx] = 0
        self.t[idx] = 0

    def copy(self, dst, src) -> None:
        """Agents ``dst`` take the optimiser state of agents ``src``."""
        self.m[dst] = self.m[src]
        self.v[dst] = self.v[src]
        self.t[dst] = self.t[src]

    def step(self, theta: np.ndarray, grad: np.ndarray, lr: np.ndarray, rows=slice(None),
             active: np.ndarray | None = None, scratch: np.ndarray | None = None) -> None:
        """One Adam step for the agents ``rows`` (a slice or index array) of the state.

        ``theta`` and ``grad`` are the parameters and gradients of those agents, shape
        (n, P); ``theta`` is updated in place (write it back if it is a gathered copy).
        ``lr`` (n,) are their learning rates; ``active`` (n,) bool, if given, freezes the
        inactive ones. ``scratch`` (≥ n × P) avoids a temporary.
        """
        n = theta.shape[0]
        if active is None:
            active = np.ones(n, dtype=bool)
        t = self.t[rows] + active
        tt = np.maximum(t, 1)
        # per-agent coefficients: an inactive agent has β = 1 (no decay), 1 − β = 0, step 0
        b1 = np.where(active, self.beta1, 1.0)
        b2 = np.where(active, self.beta2, 1.0)
        step = np.where(active, np.asarray(lr, float) / (1.0 - self.beta1 ** tt), 0.0)
        sq = 1.0 / np.sqrt(1.0 - self.beta2 ** tt)
        if isinstance(rows, slice) and _adam_rows is not None and theta.flags.c_contiguous \
                and grad.flags.c_contiguous:
            dt = theta.dtype
            # coefficients in the parameters' precision, so the fused loop vectorises
            _adam_rows(theta, grad, self.m[rows], self.v[rows], b1.astype(dt), b2.astype(dt),
                       step.astype(dt), sq.astype(dt), dt.type(self.eps))
        else:
            self._step_numpy(theta, grad, rows, b1, b2, step, sq, scratch)
        self.t[rows] = t

    def _step_numpy(self, theta, grad, rows, b1, b2, step, sq, scratch) -> None:
        n, dt = theta.shape[0], theta.dtype
        m = self.m[rows]
        v = self.v[rows]
        col = (lambda x: np.asarray(x, dt)[:, None])
        m *= col(b1)
        m += col(1.0 - b1) * grad
        v *= col(b2)
        tmp = scratch[:n] if scratch is not None else np.empty_like(grad)
        np.multiply(grad, grad, out=tmp)
        tmp *= col(1.0 - b2)
        v += tmp
        # θ −= η/(1−β₁ᵗ) · m / (sqrt(v)/sqrt(1−β₂ᵗ) + ε)
        np.sqrt(v, out=tmp)
        tmp *= col(sq)
        tmp += dt.type(self.eps)
        np.divide(m, tmp, out=tmp)
        tmp *= col(step)
        theta -= tmp
        if not isinstance(rows, slice):
            self.m[rows] = m
            self.v[rows] = v


def _adam_rows_py(theta, grad, m, v, b1, b2, step, sq, eps):  # pragma: no cover - compiled
    """One fused pass of the Adam update over rows (agents) of contiguous arrays."""
    n, p = theta.shape
    for i in range(n):
        if step[i] == 0:
            continue                      # inactive agent: nothing changes
        bb1, bb2 = b1[i], b2[i]
        one = bb1 / bb1
        cb1, cb2 = one - bb1, one - bb2
        st, s2 = step[i], sq[i]
        for j in range(p):
            g = grad[i, j]
            mj = bb1 * m[i, j] + cb1 * g
            vj = bb2 * v[i, j] + cb2 * g * g
            m[i, j] = mj
            v[i, j] = vj
            theta[i, j] -= st * mj / (np.sqrt(vj) * s2 + eps)


try:  # numba is a dependency of the package; the numpy path above is the fallback
    import numba as _numba

    _adam_rows = _numba.njit(cache=True, nogil=True, fastmath=True)(_adam_rows_py)
except ImportError:  # pragma: no cover
    _adam_rows = None
