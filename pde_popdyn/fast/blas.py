"""One BLAS thread inside the package's own small dense kernels.

The dense kernels here (squaring per-column propagators of a few hundred θ-cells, the
spectral scheme's per-column matrix exponentials) multiply many small matrices. A
multi-threaded BLAS gains nothing on matrices this small and, when the machine is loaded,
its threads spin against other processes: a 66 × (96 × 96) batched product measured here took
2.6 s with two OpenBLAS threads under load against 0.015 s with one. So these kernels run
with one BLAS thread (threadpoolctl), whatever the caller's setting, and the set-up cost no
longer depends on the machine's load.
"""

from __future__ import annotations

from contextlib import nullcontext

try:
    from threadpoolctl import ThreadpoolController
except ImportError:  # pragma: no cover - threadpoolctl is a dependency
    ThreadpoolController = None

_controller = None


def one_blas_thread():
    """A context manager limiting BLAS to one thread (a no-op without threadpoolctl).

    One controller is made once and reused: entering its limit costs ~0.1 ms, against ~3 ms
    for a fresh ``threadpool_limits``, which matters for kernels called every step."""
    global _controller
    if ThreadpoolController is None:
        return nullcontext()
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


__all__ = ["one_blas_thread"]
