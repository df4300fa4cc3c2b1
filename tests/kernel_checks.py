"""Helpers shared by the kernel-twin tests: bitwise comparison and a numba thread-count context."""

import contextlib

import numba as nb
import numpy as np


def assert_bitwise(got: np.ndarray, want: np.ndarray, name: str) -> None:
    """Fail unless ``got`` and ``want`` have the same dtype, shape and bytes."""
    assert got.dtype == want.dtype and got.shape == want.shape, name
    if got.tobytes() != want.tobytes():
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: not bitwise equal")
        raise AssertionError(f"{name}: equal values but different bits (signed zeros or NaN payloads)")


@contextlib.contextmanager
def threads(n: int):
    """Run the enclosed kernels on ``n`` numba threads."""
    before = nb.get_num_threads()
    nb.set_num_threads(n)
    try:
        yield
    finally:
        nb.set_num_threads(before)
