"""The eight-lane slate selection against a plain top-k, its vector compares, and the SLP compilation switch."""

import re
from pathlib import Path

import numba as nb
import numpy as np
import pytest
from numba.core import config as nb_config

from sim.kernels.lanes import (
    LANES,
    NET_MAX_SLATE,
    lane_dots2,
    load_lanes,
    njit_slp,
    select_slate,
    select_slates8,
    slate_scratch,
    top_values8,
)
from sim.kernels.simd import count_gt_eq16, ge_mask8, transpose8x8


@nb.njit(cache=False)
def _slates_per_lane(scores, k):
    """:func:`select_slate`'s slates for every row of ``scores`` (n_rows, n_cand); -1 padded."""
    n, c = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    buf = np.empty((c, LANES), dtype=np.float32)
    tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
    gt_j = np.empty(c, dtype=np.int64)
    gt_s = np.empty(c, dtype=np.float32)
    top_s = np.empty(k, dtype=np.float32)
    top_j = np.empty(k, dtype=np.int64)
    for r0 in range(0, n, LANES):
        n_lanes = min(LANES, n - r0)
        load_lanes(scores, r0, n_lanes, buf)
        if k <= NET_MAX_SLATE:
            top_values8(buf, c, tops)
        for lane in range(n_lanes):
            n_top = select_slate(buf, lane, tops, k, gt_j, gt_s, top_s, top_j)
            for q in range(n_top):
                out[r0 + lane, q] = top_j[q]
    return out


@nb.njit(cache=False)
def _slates_by_group(scores, k):
    """:func:`select_slates8`'s slates (the kernels' path) for every row of ``scores``; -1 padded."""
    n, c = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    buf = np.empty((c, LANES), dtype=np.float32)
    tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
    scratch = slate_scratch(c, k)
    top_j8 = np.empty((LANES, k), dtype=np.int64)
    n_top8 = np.empty(LANES, dtype=np.int64)
    for r0 in range(0, n, LANES):
        n_lanes = min(LANES, n - r0)
        load_lanes(scores, r0, n_lanes, buf)
        select_slates8(buf, n_lanes, k, tops, scratch, top_j8, n_top8)
        for lane in range(n_lanes):
            for q in range(n_top8[lane]):
                out[r0 + lane, q] = top_j8[lane, q]
    return out


def _plain_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k by score descending, ties to the earlier candidate; -inf and NaN never shown."""
    out = np.full((scores.shape[0], k), -1, dtype=np.int64)
    for r, row in enumerate(scores):
        ok = np.flatnonzero(row > -np.inf)  # False for NaN
        order = ok[np.lexsort((ok, -row[ok].astype(np.float64)))][:k]
        out[r, : order.size] = order
    return out


def _hard_scores(rng, n_rows: int, n_cand: int) -> np.ndarray:
    """Random scores with every awkward case: ties, -inf, NaN, few eligible, constant rows."""
    s = rng.standard_normal((n_rows, n_cand)).astype(np.float32)
    s[rng.random(s.shape) < 0.1] = -np.inf
    s[rng.random(s.shape) < 0.02] = np.nan
    q = n_rows // 8
    s[:q] = np.round(s[:q] * 2) / 2  # many ties, also around the k-th score
    s[q : 2 * q] = 0.25  # all equal (a new user's zero profile)
    s[2 * q : 3 * q, 3:] = -np.inf  # fewer eligible than the slate
    s[3 * q] = -np.inf  # nothing to show
    s[3 * q + 1] = np.nan
    return s


@pytest.mark.parametrize("k", [1, 3, 9, 10, 12])
@pytest.mark.parametrize("n_cand", [5, 63, 64, 65, 100, 300])
@pytest.mark.parametrize("slates", [_slates_per_lane, _slates_by_group], ids=["per_lane", "by_group"])
def test_select_slate_equals_plain_top_k(k, n_cand, slates):
    rng = np.random.default_rng(1000 * k + n_cand)
    scores = _hard_scores(rng, 8 * 40 + 3, n_cand)  # the last group has 3 lanes
    np.testing.assert_array_equal(slates(scores, k), _plain_top(scores, k))


def test_group_selection_on_distinct_scores():
    """Distinct scores (no ties, all eligible: the vector path throughout) give the plain top-k."""
    rng = np.random.default_rng(5)
    scores = rng.permutation(8 * 100 * 50).reshape(8 * 50, 100).astype(np.float32)  # distinct
    np.testing.assert_array_equal(_slates_by_group(scores, 10), _plain_top(scores, 10))


@nb.njit(cache=False)
def _masks(arr, thr, tl, values):
    m = np.empty(arr.shape[0], dtype=np.uint64)
    for j in range(arr.shape[0]):
        m[j] = ge_mask8(arr, j, thr)
    c = np.empty(values.shape[0], dtype=np.int64)
    for q in range(values.shape[0]):
        c[q] = count_gt_eq16(tl, values[q])
    return m, c


def test_vector_compares_equal_numpy():
    rng = np.random.default_rng(11)
    arr = np.round(rng.standard_normal((200, LANES)), 1).astype(np.float32)  # ties with the thresholds
    arr[rng.random(arr.shape) < 0.05] = np.nan
    arr[rng.random(arr.shape) < 0.05] = -np.inf
    thr = np.round(rng.standard_normal(LANES), 1).astype(np.float32)
    tl = np.round(rng.standard_normal(16), 1).astype(np.float32)
    tl[12:] = -np.inf
    values = np.concatenate([tl[:5], rng.standard_normal(50).astype(np.float32), [np.nan, np.inf, -np.inf]])
    m, c = _masks(arr, thr, tl, values.astype(np.float32))
    want_m = ((arr >= thr) * (1 << np.arange(LANES))).sum(axis=1)  # NaN compares false
    np.testing.assert_array_equal(m, want_m)
    v = values.astype(np.float32)[:, None]
    np.testing.assert_array_equal(c, (tl > v).sum(axis=1) + 256 * (tl == v).sum(axis=1))


def test_transpose8x8_moves_bit_c_of_byte_r_to_bit_r_of_byte_c():
    rng = np.random.default_rng(2)
    for x in [0, 0xFF, 0x0102040810204080, 0x8040201008040201, *rng.integers(0, 2**63, 20).tolist()]:
        bits = (np.uint64(x) >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
        y = int(transpose8x8(np.uint64(x)))
        want = int(sum(int(b) << (8 * (i % 8) + i // 8) for i, b in enumerate(bits)))
        assert y == want, hex(x)


def test_njit_slp_switches_the_vectoriser_on_for_its_own_compilation_only():
    before = nb_config.SLP_VECTORIZE

    @njit_slp(cache=False)
    def lane_max(a, b):
        return (
            max(a[0], b[0]), max(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]),
            max(a[4], b[4]), max(a[5], b[5]), max(a[6], b[6]), max(a[7], b[7]),
        )  # fmt: skip

    x = tuple(np.float32(v) for v in range(8))
    y = tuple(np.float32(7 - v) for v in range(8))
    assert lane_max(x, y) == tuple(max(a, b) for a, b in zip(x, y, strict=True))
    assert nb_config.SLP_VECTORIZE == before  # restored after the compilation
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and " avx2" in cpuinfo.read_text():
        asm = lane_max.inspect_asm(lane_max.signatures[0])
        assert re.search(r"v(max|min|cmp|blend)\w*ps\s+%ymm", asm), "the eight lanes were not vectorised"


def test_prefetch_row_emits_a_prefetch_and_changes_nothing():
    from sim.kernels.prefetch import prefetch_row

    @nb.njit(cache=False)
    def gathered_sum(a, b, idx):
        s = 0.0
        for r in range(idx.shape[0]):
            if r + 1 < idx.shape[0]:
                prefetch_row(a, idx[r + 1])
                prefetch_row(b, idx[r + 1])
            s += a[idx[r], 1] + b[idx[r]]
        return s

    rng = np.random.default_rng(3)
    a = rng.random((1000, 16)).astype(np.float32)
    b = rng.random(1000).astype(np.float32)
    idx = rng.choice(1000, 200, replace=False).astype(np.int64)
    want = 0.0
    for u in idx:
        want += float(a[u, 1] + b[u])  # a float32 sum, as in the kernel
    assert gathered_sum(a, b, idx) == want
    asm = next(iter(gathered_sum.inspect_asm().values()))
    assert asm.count("prefetch") >= 3  # a 2-D row: its first and its last line; a 1-D element: one


@pytest.mark.skipif(
    not (Path("/proc/cpuinfo").exists() and " avx2" in Path("/proc/cpuinfo").read_text()), reason="needs AVX2"
)
def test_the_lane_kernels_compile_to_eight_lane_vector_code():
    """Guard the loop shapes: a small change to either kernel can silently fall back to scalar code (3-30x slower)."""
    from sim.kernels.lanes import lane_dots

    rng = np.random.default_rng(0)
    buf = rng.random((100, LANES)).astype(np.float32)
    tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
    top = njit_slp(cache=False)(top_values8.py_func)
    top(buf, 100, tops)
    np.testing.assert_array_equal(tops, -np.sort(-buf, axis=0)[:NET_MAX_SLATE])
    asm = top.inspect_asm(top.signatures[0])
    assert re.search(r"v(max|min|cmp|blend)\w*ps\s+.*%ymm", asm), "top_values8 is no longer vectorised"

    emb = rng.standard_normal((500, 16)).astype(np.float32)
    cand = rng.choice(500, 100, replace=False).astype(np.int32)
    vec_t = rng.standard_normal((16, LANES)).astype(np.float32)
    out = np.empty((100, LANES), dtype=np.float32)
    dots = njit_slp(cache=False)(lane_dots.py_func)
    dots(vec_t, emb, cand, out)
    want = np.zeros((100, LANES), dtype=np.float32)
    for d in range(16):  # the kernel's order: a float32 running sum over d
        want += emb[cand, d][:, None] * vec_t[d][None, :]
    np.testing.assert_array_equal(out, want)
    asm = dots.inspect_asm(dots.signatures[0])
    assert re.search(r"v(mul|fmadd\w*)ps\s+.*%ymm", asm), "lane_dots is no longer vectorised"

    dots2 = njit_slp(cache=False)(lane_dots2.py_func)
    out_b = np.empty_like(out)
    dots2(vec_t, vec_t[::-1].copy(), emb, cand, out, out_b)
    np.testing.assert_array_equal(out, want)
    asm = dots2.inspect_asm(dots2.signatures[0])
    assert re.search(r"v(mul|fmadd\w*)ps\s+.*%ymm", asm), "lane_dots2 is no longer vectorised"


@pytest.mark.parametrize("n_cand", [1, 7, 8, 9, 10, 16, 17, 63, 100, 129])
def test_top_values8_are_each_lanes_ten_largest_with_ties_and_inf(n_cand):
    """The block merge (simd.merge_top10_block8) and the insertion tail give each lane's sorted ten largest."""
    rng = np.random.default_rng(n_cand)
    for trial in range(30):
        if trial % 3 == 0:
            buf = rng.integers(0, 4, size=(n_cand, LANES)).astype(np.float32)  # many ties
        else:
            buf = rng.standard_normal((n_cand, LANES)).astype(np.float32)
        buf[rng.random(buf.shape) < 0.15] = -np.inf
        buf[rng.random(buf.shape) < 0.02] = np.float32(-0.0)
        tops = np.empty((NET_MAX_SLATE, LANES), dtype=np.float32)
        top_values8(buf, n_cand, tops)
        want = np.full((NET_MAX_SLATE, LANES), -np.inf, dtype=np.float32)
        m = min(n_cand, NET_MAX_SLATE)
        want[:m] = -np.sort(-buf, axis=0)[:m]
        np.testing.assert_array_equal(tops, want)


@pytest.mark.parametrize("n_cand", [1, 3, 4, 99, 100])
def test_lane_dots2_equals_two_lane_dots_bit_for_bit(n_cand):
    from sim.kernels.lanes import lane_dots

    rng = np.random.default_rng(n_cand)
    emb = rng.standard_normal((300, 16)).astype(np.float32)
    cand = rng.choice(300, n_cand, replace=False).astype(np.int32)
    vec_a = rng.standard_normal((16, LANES)).astype(np.float32)
    vec_b = rng.standard_normal((16, LANES)).astype(np.float32)
    want_a, want_b, got_a, got_b = (np.empty((n_cand, LANES), dtype=np.float32) for _ in range(4))
    lane_dots(vec_a, emb, cand, want_a)
    lane_dots(vec_b, emb, cand, want_b)
    lane_dots2(vec_a, vec_b, emb, cand, got_a, got_b)
    assert got_a.tobytes() == want_a.tobytes() and got_b.tobytes() == want_b.tobytes()
