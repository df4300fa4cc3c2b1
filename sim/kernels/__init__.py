"""Numba kernels: pure functions over struct-of-arrays state, no classes, no globals.

Modules
-------
feed
    The per-tick opening kernel and the per-view session kernel of the feed world.
scoring
    Scoring kernels of the built-in recommenders.
reference
    Plain NumPy/Python twins of the feed kernels, used by the tests.
"""
