"""Vector comparisons that numba cannot express: eight or sixteen float32 lanes compared at once, as a bit mask.

The slate selection (:func:`sim.kernels.lanes.select_slates8`) needs, for each
candidate, which of the eight users of a lane group rank it at or above their
k-th score, and, for each slate item, how many of its user's top scores are
above it. Written as scalar Python, each of those is eight or sixteen compares
and branches; numba has no vector type, and LLVM turns such scalar code into a
vector compare only now and then. These intrinsics emit the LLVM IR directly:
one vector load, one ``fcmp``, and a ``bitcast`` of the ``<8 x i1>`` result to an
integer, which x86 lowers to ``vcmpps`` + ``vmovmskps`` (and other targets to
their own equivalents, so the code stays portable). They are exact (a compare
has no rounding), so the kernels that use them stay bitwise equal to their
NumPy twins.

Public objects
--------------
ge_mask8
    Bit ``l`` set where ``arr[row, l] >= thr[l]``, for the eight lanes of a row.
count_gt_eq16
    How many of sixteen values are greater than, and equal to, a scalar.
transpose8x8
    Transpose an 8 x 8 bit matrix held in a uint64 (row ``r`` is byte ``r``).
merge_top10_block8
    Merge eight candidates into eight lanes' sorted ten largest scores (a sorting network and a bitonic merge).

numba caches a kernel by the modification time of its own file: after editing
this module, clear the cache (``find . -name '*.nbi' -delete``), or cached kernels
keep the old code.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["count_gt_eq16", "ge_mask8", "merge_top10_block8", "transpose8x8"]

_I64 = ir.IntType(64)


def _require(arr_type, ndim: int, name: str) -> None:
    if not (isinstance(arr_type, types.Array) and arr_type.dtype == types.float32 and arr_type.ndim == ndim):
        raise nb.errors.TypingError(f"{name} needs a float32 array of {ndim} dimension(s), got {arr_type}")
    if arr_type.layout != "C":
        raise nb.errors.TypingError(f"{name} needs a C-contiguous array, got layout {arr_type.layout!r}")


@intrinsic
def ge_mask8(typingctx, arr, row, thr):
    """Bit ``l`` (``l < 8``) set where ``arr[row, l] >= thr[l]``: a uint64 in ``[0, 255]``.

    Parameters
    ----------
    arr : float32 (n_rows, 8), C-contiguous
        One row per candidate, one column per lane (the layout of the lane kernels' score buffer).
        Eight floats are read from the row's start whatever the array's width: callers check it.
    row : int
        The row to compare; not bounds-checked (``0 <= row < n_rows``).
    thr : float32 (8,), C-contiguous
        Each lane's threshold.

    Returns
    -------
    uint64
        The mask; NaN compares false (an ordered compare).
    """
    _require(arr, 2, "ge_mask8's arr")
    _require(thr, 1, "ge_mask8's thr")
    sig = types.uint64(arr, row, thr)

    def codegen(context, builder, signature, args):
        a_arr, a_row, a_thr = args
        data = context.make_array(signature.args[0])(context, builder, a_arr).data
        thr_data = context.make_array(signature.args[2])(context, builder, a_thr).data
        v8 = ir.VectorType(ir.FloatType(), 8)
        row64 = context.cast(builder, a_row, signature.args[1], types.int64)
        first = builder.gep(data, [builder.mul(row64, ir.Constant(_I64, 8))])
        x = builder.load(builder.bitcast(first, v8.as_pointer()), align=4)
        t = builder.load(builder.bitcast(thr_data, v8.as_pointer()), align=4)
        mask = builder.bitcast(builder.fcmp_ordered(">=", x, t), ir.IntType(8))
        return builder.zext(mask, _I64)

    return sig, codegen


@intrinsic
def count_gt_eq16(typingctx, arr, v):
    """``n_gt + 256 * n_eq``: how many of ``arr[0:16]`` are ``> v`` and how many ``== v``.

    Parameters
    ----------
    arr : float32 (m,), C-contiguous, ``m >= 16``
        Only the first sixteen values are read (pad unused ones with ``-inf``).
    v : float32
        The value compared (NaN counts nothing).

    Returns
    -------
    int64
        ``n_gt + 256 * n_eq`` (both at most 16).
    """
    _require(arr, 1, "count_gt_eq16's arr")
    if v != types.float32:  # a float64 would be rounded before the compare, unlike numba's own ``arr > v``
        raise nb.errors.TypingError(f"count_gt_eq16's v must be float32, got {v}")
    sig = types.int64(arr, v)

    def codegen(context, builder, signature, args):
        a_arr, a_v = args
        data = context.make_array(signature.args[0])(context, builder, a_arr).data
        v16 = ir.VectorType(ir.FloatType(), 16)
        x = builder.load(builder.bitcast(data, v16.as_pointer()), align=4)
        vf = context.cast(builder, a_v, signature.args[1], types.float32)
        undef = ir.Constant(v16, ir.Undefined)
        b = builder.insert_element(undef, vf, ir.Constant(ir.IntType(32), 0))
        b = builder.shuffle_vector(b, undef, ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16))
        i16 = ir.IntType(16)
        ctpop = builder.module.declare_intrinsic("llvm.ctpop", [i16])
        n_gt = builder.zext(builder.call(ctpop, [builder.bitcast(builder.fcmp_ordered(">", x, b), i16)]), _I64)
        n_eq = builder.zext(builder.call(ctpop, [builder.bitcast(builder.fcmp_ordered("==", x, b), i16)]), _I64)
        return builder.add(n_gt, builder.shl(n_eq, ir.Constant(_I64, 8)))

    return sig, codegen


@nb.njit(inline="always", cache=True)
def transpose8x8(x):
    """Transpose the 8 x 8 bit matrix ``x`` (uint64): bit ``c`` of byte ``r`` moves to bit ``r`` of byte ``c``.

    Three rounds of swaps of 1 x 1, 2 x 2 and 4 x 4 blocks (the delta swaps of
    Warren, *Hacker's Delight*, 2nd ed., 2013, section 7-3).
    """
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


# Knuth's 19-comparator network for eight inputs (The Art of Computer Programming, vol. 3, 2nd ed., 1998,
# section 5.3.4, fig. 49): each pair (i, k), i < k, puts the larger value at i.
_SORT8 = (
    (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3), (4, 5), (6, 7),
    (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6),
)  # fmt: skip


@intrinsic
def merge_top10_block8(typingctx, buf, j, tops):
    """Merge eight candidates' scores ``buf[j : j + 8]`` into each lane's sorted ten largest ``tops``, in place.

    Parameters
    ----------
    buf : float32 (n_cand, 8), C-contiguous
        Scores, one row per candidate, one column per lane; rows ``j .. j + 7`` are
        read without bounds checks (``j + 8 <= n_cand``: callers check it).
    j : int
        The block's first row.
    tops : float32 (10, 8), C-contiguous
        Each lane's ten largest scores so far, largest first (``-inf`` where fewer);
        updated to those of the scores so far and the block's.

    Method, in vector lanes (a compare and two selects per compare-exchange, as
    :func:`sim.kernels.lanes.top_values8`'s systolic insertion): the block is sorted,
    largest first, by Knuth's 19-comparator network; the ten largest of the two
    sorted lists are ``max(tops[i], block[9 - i])`` (the half-cleaner of Batcher's
    bitonic merger, Batcher 1968, with ``block[8] = block[9] = -inf``), a sequence
    that falls then rises; it is sorted by the rest of a bitonic merger on sixteen
    values padded with six ``+inf`` at the end, whose comparators against the pads
    are moves and are left out (15 compare-exchanges). 19 + 8 + 15 operations for
    eight candidates instead of 80 for eight insertions: 44 -> 26 ns per user for
    100 candidates (one thread). Exact: the values are those of the insertion
    (tested) for scores without NaN, which both callers guarantee (:func:`sim.kernels.lanes.load_lanes` turns
    NaN into ``-inf``; the fused kernel's scores hold none); with a NaN the two place it differently.
    """
    for arg, ndim, name in ((buf, 2, "buf"), (tops, 2, "tops")):
        _require(arg, ndim, f"merge_top10_block8's {name}")
    sig = types.void(buf, j, tops)

    def codegen(context, builder, signature, args):
        a_buf, a_j, a_tops = args
        data = context.make_array(signature.args[0])(context, builder, a_buf).data
        top_data = context.make_array(signature.args[2])(context, builder, a_tops).data
        v8 = ir.VectorType(ir.FloatType(), 8)
        j64 = context.cast(builder, a_j, signature.args[1], types.int64)

        def row(base, r):
            return builder.bitcast(builder.gep(base, [builder.mul(r, ir.Constant(_I64, 8))]), v8.as_pointer())

        def cx(a, b):  # (max, min), lane by lane
            g = builder.fcmp_ordered(">=", a, b)
            return builder.select(g, a, b), builder.select(g, b, a)

        def mx(a, b):
            return builder.select(builder.fcmp_ordered(">=", a, b), a, b)

        c = [builder.load(row(data, builder.add(j64, ir.Constant(_I64, k))), align=4) for k in range(8)]
        t = [builder.load(row(top_data, ir.Constant(_I64, k)), align=4) for k in range(10)]
        for i, k in _SORT8:
            c[i], c[k] = cx(c[i], c[k])
        y = [None] * 8  # the merger's lower half: positions 8 .. 15 of sixteen
        for i in range(2, 8):
            y[i] = mx(t[i], c[9 - i])
        a0, y[0] = cx(t[0], mx(t[8], c[1]))
        a1, y[1] = cx(t[1], mx(t[9], c[0]))
        out = list(cx(a0, a1))  # the upper half: two values beside six +inf
        for d in (4, 2):
            for i in range(8):
                if (i // d) % 2 == 0:
                    y[i], y[i + d] = cx(y[i], y[i + d])
        for i in range(0, 8, 2):
            out.extend(cx(y[i], y[i + 1]))
        for k in range(10):
            builder.store(out[k], row(top_data, ir.Constant(_I64, k)), align=4)
        return context.get_dummy_value()

    return sig, codegen
