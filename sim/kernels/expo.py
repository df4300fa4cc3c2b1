"""``exp(x)`` for ``x <= 0`` in plain float64 arithmetic, so a loop of them runs in vector lanes.

The logit choice of the feed kernels exponentiates eleven utilities per view
(the slate's items and leaving, each minus the largest). ``math.exp`` compiles
to a call into the C library, one value at a time, and was ~11% of a view
(``benchmarks/README.md``, stop 14). :func:`exp_nonpos` is branch-free float64
and integer arithmetic that LLVM's loop vectoriser turns into AVX2 code, and
:func:`exp_nonpos_np` performs the same operations in NumPy, so kernel and twin
agree bit for bit (numba contracts no multiply-add into an FMA unless asked to,
and NumPy does not either).

Method (Cody and Waite range reduction, as in Cody & Waite 1980, *Software Manual
for the Elementary Functions*, ch. 6): ``x = n ln 2 + r`` with ``n = round(x /
ln 2)`` and ``|r| <= ln 2 / 2``, ``ln 2`` split into a high part with trailing
zero bits (so ``n * LN2_HI`` is exact) and a low part; ``exp(r)`` by its Taylor
polynomial of degree 13 in Horner form (truncation error below ``0.35^14 / 14!
~ 5e-18``, under the rounding of the ~14 operations); then the product with
``2^n`` built from its exponent bits. Against ``math.exp`` on 10^6
points of ``[-700, 0]``: at most 1 ulp apart, 90% equal (``tests/test_kernels.py``). Below
``EXP_MIN`` the result is 0 (the true value is under 1e-304, and ``2^n`` would
leave the normal range).
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["EXP_MIN", "exp_nonpos", "exp_nonpos_np"]

EXP_MIN = -700.0  # below: 0.0 (exp(-700) ~ 1e-304; 2**n stays a normal double down to here)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # fdlibm's split of ln 2: the high part has 32 trailing zero bits
_LN2_LO = 1.90821492927058770002e-10
_C = tuple(1.0 / float(np.prod(np.arange(1, j + 1, dtype=np.float64))) for j in range(14))  # 1/j!, j = 0..13
_C13, _C12, _C11, _C10, _C9, _C8, _C7, _C6, _C5, _C4, _C3, _C2, _C1, _C0 = _C[::-1]
_BIAS = 1023
_MANT = 52


@nb.njit(inline="always", cache=True)
def exp_nonpos(x):
    """``exp(x)`` for float64 ``x <= 0`` (within 1 ulp of ``math.exp``; 0.0 below ``EXP_MIN``). Branch-free."""
    xc = max(x, EXP_MIN)
    t = np.floor(xc * _LOG2E + 0.5)
    r = (xc - t * _LN2_HI) - t * _LN2_LO
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + _C1
    p = p * r + _C0
    scale = np.int64(np.int64(np.int64(t) + _BIAS) << np.int64(_MANT)).view(np.float64)
    return p * scale if x >= EXP_MIN else 0.0


def exp_nonpos_np(x):
    """NumPy twin of :func:`exp_nonpos`: the same operations on float64 arrays (or a scalar; returns float64)."""
    x = np.asarray(x, dtype=np.float64)
    xc = np.maximum(x, EXP_MIN)
    t = np.floor(xc * _LOG2E + 0.5)
    r = (xc - t * _LN2_HI) - t * _LN2_LO
    p = np.full_like(r, _C13)
    for c in (_C12, _C11, _C10, _C9, _C8, _C7, _C6, _C5, _C4, _C3, _C2, _C1, _C0):
        p = p * r + c
    scale = ((t.astype(np.int64) + _BIAS) << _MANT).view(np.float64)
    out = np.where(x >= EXP_MIN, p * scale, 0.0)
    return out if out.ndim else float(out)
