"""A software prefetch for numba kernels: ask the CPU to start loading a row now, use it later.

At realistic activity only a few percent of users are in a session at any sub-step, so
the view kernels touch each active user's rows (profile, interest, counters, sketch:
about a dozen separate arrays, struct-of-arrays) at scattered addresses. Each touch is a
cache miss to main memory (~80 ns), and the kernel waits for them one after another. The
hardware prefetcher only follows sequential streams; it cannot know which users come
next, but the kernel does (``active_idx``). Prefetching the next lane group's rows while
the current group is processed lets those misses overlap with work. A prefetch has no
effect on results (it only warms the cache).

Public objects
--------------
prefetch_row
    ``prefetch_row(arr, i)``: prefetch ``arr[i]`` for reading (the row's first cache line and, for a 2-D C-ordered
    array, the line of its last byte: a row of 40-64 bytes often straddles two lines).
"""

from __future__ import annotations

from llvmlite import binding as llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["prefetch_row"]

_I32 = ir.IntType(32)
# The intrinsic's name carries the pointer type: "p0" where LLVM has only opaque pointers (LLVM 17 on: numba >= 0.62),
# "p0i8" with the typed pointers of older LLVM (numba 0.60-0.61).
_PREFETCH = "llvm.prefetch.p0" if llvm.llvm_version_info[0] >= 17 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch_row(typingctx, arr, idx):
    """Prefetch ``arr[idx]`` (any ndim, ``idx`` non-negative) into all cache levels.

    The row's first cache line, and for a 2-D C-ordered array also the line
    of the row's last byte (rows longer than two lines keep their middle
    lines unprefetched: the kernels' rows are at most 64 bytes).

    Emits LLVM's ``llvm.prefetch`` (read, locality 3, data cache): on x86 a
    ``prefetcht0``. It never faults, so an index past the array is harmless,
    but the kernels only pass valid ones.
    """
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        shapes = cgutils.unpack_tuple(builder, ary.shape, aryty.ndim)
        strides = cgutils.unpack_tuple(builder, ary.strides, aryty.ndim)
        zero = context.get_constant(types.intp, 0)
        inds = [context.cast(builder, args[1], idxty, types.intp)] + [zero] * (aryty.ndim - 1)
        ptr = cgutils.get_item_pointer2(
            context, builder, data=ary.data, shape=shapes, strides=strides, layout=aryty.layout, inds=inds,
            wraparound=False,
        )  # fmt: skip
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, _I32, _I32, _I32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFETCH)
        rw, locality, cache = ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)
        first = builder.bitcast(ptr, cgutils.voidptr_t)
        builder.call(fn, [first, rw, locality, cache])
        if aryty.ndim == 2 and aryty.layout == "C":  # the row's last byte: a short row may straddle two lines
            one = context.get_constant(types.intp, 1)
            n_cols = builder.select(builder.icmp_signed(">", shapes[1], zero), shapes[1], one)  # an empty row: byte 0
            last_byte = builder.sub(builder.mul(n_cols, strides[1]), one)  # C layout: strides[1] is the item size
            builder.call(fn, [builder.gep(first, [last_byte]), rw, locality, cache])
        return context.get_dummy_value()

    return sig, codegen
