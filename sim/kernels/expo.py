"""``exp(x)`` for ``x <= 0`` in plain float64 arithmetic, so a loop of them runs in vector lanes.

The logit choice of the feed kernels exponentiates eleven utilities per view
(the slate's items and leaving, each minus the largest). ``math.exp`` compiles
to a call into the C library, one value at a time, and was ~11% of a view
(``benchmarks/README.md``, stop 14). :func:`exp_nonpos` is branch-free float64
arithmetic and bit operations, which LLVM's loop vectoriser turns into four
float64 lanes per AVX2 register, and :func:`exp_nonpos_np` performs the same
operations in NumPy, so kernel and twin agree bit for bit (numba contracts no
multiply-add into an FMA unless asked to, and NumPy does not either).

Method (Cody and Waite's range reduction; Cody & Waite 1980, *Software Manual
for the Elementary Functions*, ch. 6): ``x = t ln 2 + r`` with ``t = round(x /
ln 2)`` and ``|r| <= ln 2 / 2``, ``ln 2`` split into a high part of 32
significant bits (so ``t * LN2_HI`` is exact for ``|t| <= 1010``) and a low part;
``exp(r)`` by its Taylor polynomial of degree 13 in Horner form (truncation error
below ``0.35^14 / 14! ~ 5e-18``, under the rounding of its 26 operations); then
the product with ``2^t``, whose exponent field is built without a float-to-integer
conversion (AVX2 has no packed one): adding ``1.5 * 2^52`` to ``t + 1023`` leaves
that integer in the low bits of the sum. Against ``math.exp``, on 5 * 10^5 points
of ``[-700, 0]`` and 5 * 10^5 of ``[-5, 0]``: at most 1 ulp apart, ~90% equal
(``tests/test_kernels.py``).

Domain: ``x <= 0``. Below ``EXP_MIN`` the result is 0.0 (the true value is under
1e-304, and ``2^t`` would leave the normal range); NaN gives NaN (so a NaN utility
still makes the choice's total NaN, as with ``math.exp``); for ``x > 0`` the
result is undefined.

numba caches the feed kernels by the modification time of their own file: after
editing this module, clear the cache (``find . -name '*.nbi' -delete``) or the
cached kernels keep the old code while the twin uses the new one.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["EXP_MIN", "exp_nonpos", "exp_nonpos_np"]

EXP_MIN = -700.0  # below: 0.0 (exp(-700) ~ 1e-304; 2**t stays a normal double down to here)
_LOG2E = 1.44269504088896338700e00  # fdlibm e_exp.c, invln2
_LN2_HI = 6.93147180369123816490e-01  # fdlibm e_exp.c, ln2HI[0]: 32 significant bits
_LN2_LO = 1.90821492927058770002e-10  # fdlibm e_exp.c, ln2LO[0]
_HORNER = tuple(1.0 / math.factorial(j) for j in range(13, -1, -1))  # Taylor coefficients 1/j!, j = 13 .. 0
_SHIFTER = 6755399441055744.0  # 1.5 * 2^52: integers below 2^51 added to it sit in the low mantissa bits
_BIAS = 1023.0
_EXP_SHIFT = np.uint64(52)


@nb.njit(inline="always", cache=True)
def exp_nonpos(x):
    """``exp(x)`` for ``x <= 0``, branch-free.

    Parameters
    ----------
    x : float64
        The exponent, at most 0.

    Returns
    -------
    float64
        Within 1 ulp of ``math.exp(x)``; 0.0 below ``EXP_MIN``; NaN for NaN;
        undefined for ``x > 0``.
    """
    xc = x if x >= EXP_MIN else EXP_MIN  # NaN fails the test too: no NaN reaches the bit operations
    t = np.floor(xc * _LOG2E + 0.5)
    r = (xc - t * _LN2_HI) - t * _LN2_LO
    p = _HORNER[0]
    for c in _HORNER[1:]:  # Horner, highest power first (a constant tuple: LLVM unrolls it)
        p = p * r + c
    bits = np.float64((t + _BIAS) + _SHIFTER).view(np.uint64) << _EXP_SHIFT  # the shifter's own bits shift out
    scale = np.uint64(bits).view(np.float64)
    if x >= EXP_MIN:
        return p * scale
    return 0.0 if x < EXP_MIN else x


def exp_nonpos_np(x):
    """NumPy twin of :func:`exp_nonpos`: the same operations, element by element.

    Parameters
    ----------
    x : float64 array of any shape, or a scalar
        Exponents, at most 0.

    Returns
    -------
    float64 array of the shape of ``x``, or a Python float for a scalar
        Bitwise the values :func:`exp_nonpos` computes.
    """
    x = np.asarray(x, dtype=np.float64)
    ok = x >= EXP_MIN
    xc = np.where(ok, x, EXP_MIN)
    t = np.floor(xc * _LOG2E + 0.5)
    r = (xc - t * _LN2_HI) - t * _LN2_LO
    p = np.full_like(r, _HORNER[0])
    for c in _HORNER[1:]:
        p = p * r + c
    scale = (((t + _BIAS) + _SHIFTER).view(np.uint64) << _EXP_SHIFT).view(np.float64)
    out = np.where(ok, p * scale, np.where(x < EXP_MIN, 0.0, x))
    return float(out) if out.ndim == 0 else out
