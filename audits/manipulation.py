"""Art. 14 (manipulation): how far fake engagement moves the recommender, the hot list and exposure.

Art. 14 of the Provisions forbids fake accounts and fake engagement, "over-recommendation" (过度推荐) and
manipulating rankings, hot lists and search results; the CAC's Qinglang 2024 campaign (item 2) asks for
published hot-list principles, hot-list logs that make results verifiable, and detection of paid "water army"
engagement (regulation-map.md §1, Art 14). The metrics are that row's (a), (b), (c) and (d).

Every Art. 14 finding compares the audited run (the scenario's ``[bots]`` campaign) with its *paired bot-free
counterfactual*: the same scenario with ``bots.n_bots = 0`` (:func:`sim.bots.bot_free_scenario`), same seed and
replication, so the same users, items, random numbers and campaign targets; until the campaign starts the two
runs are identical. Definitions (``t``: with bots, ``f``: bot-free; sums over real users from the campaign's
start):

- ``over_recommendation_index`` (row 14 (d)): the targets' exposure share with the bots over their organic
  exposure share, ``(sum tgt_imp_t / sum imp_t) / (sum tgt_imp_f / sum imp_f)``, with ``tgt_imp`` a user's
  slate impressions of targets and ``imp`` of all items. 1 means the bots bought no exposure; exactly 1 for a
  campaign of zero accounts.
- ``exposure_demand_ratio`` (row 14 (d), demand read from watching): the targets' exposure share with the
  bots over their share of real users' watch minutes without the bots (organic demand).
- ``rank_displacement`` (row 14 (a)): candidate-set positions the targets gained in the recommender's ranking,
  ``(sum rank_f - sum rank_t) / (number of probed sets)``, from the rank probes of :mod:`sim.bots` (the same
  users and candidate sets in both runs; a rank is the target's position among ``n_candidates``, 0 first).
- ``rank_displacement_per_1k_fake_views`` (row 14 (a), the robustness curve's slope): the mean over the probes
  after the first accepted fake view of each probe's displacement, over the mean cumulative accepted fake views
  per target by then, times 1,000.
- ``time_to_hotlist_minutes`` (row 14 (b)): minutes from the campaign's start to the end of the first tick
  whose hot list holds a target (the list is published at the end of a tick); undefined if none ever does.
- ``hotlist_target_share`` and ``hotlist_share_increase``: the share of the hot list's slot-ticks (``size``
  slots x ticks from the start) that targets held, and that share with bots minus without.
- ``bot_detection_recall`` (row 14 (c)): fake views the platform's filter caught over fake views made.

Per-user statistics (the exposure and rank lines) are bootstrapped over users with one replication and get a
t-interval over replications with several, like every other finding; run-level statistics (time to the hot
list, hot-list shares, detection recall, the per-view slope) get their interval from replications only.

Public objects
--------------
manipulation_estimators, robustness_curve, hotlist_rank_series, MANIPULATION_METRICS
"""

from __future__ import annotations

import numpy as np

from audits.statistics import ratio_of_sums
from sim.record import RunRecord

__all__ = ["MANIPULATION_METRICS", "hotlist_rank_series", "manipulation_estimators", "robustness_curve"]

MANIPULATION_METRICS = (
    "over_recommendation_index",
    "exposure_demand_ratio",
    "rank_displacement",
    "rank_displacement_per_1k_fake_views",
    "time_to_hotlist_minutes",
    "hotlist_target_share",
    "hotlist_share_increase",
    "bot_detection_recall",
)
_NO_BOTS = "the scenario has no bot campaign ([bots] table)"
_NO_HOT = "the platform runs no hot list ([recommender.hot_list] table)"


def _quotient(a: float, b: float) -> float:
    """Return ``a / b``: +inf for a positive ``a`` over 0, NaN for 0 over 0 (a resample without organic exposure)."""
    if b != 0:
        return a / b
    return float("inf") if a > 0 else float("nan")


def robustness_curve(t: RunRecord, f: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the rank-displacement robustness curve of one replication.

    Returns
    -------
    minutes : float64 (P,)
        Probe times, minutes from the campaign's start.
    fake_views : float64 (P,)
        Cumulative accepted fake views per target (mean over targets) by each probe.
    displacement : float64 (P,)
        Mean over targets of (rank without bots - rank with bots) at each probe, in candidate-set positions.
    """
    mt, mf = t.manipulation, f.manipulation
    ticks = mt.probe_ticks
    cum = np.cumsum(mt.fake_accepted, axis=0)  # (S, T)
    fake = cum[ticks].mean(axis=1) if cum.shape[1] else np.zeros(ticks.size)
    with np.errstate(invalid="ignore"):
        disp = np.nanmean(mf.probe_rank - mt.probe_rank, axis=1) if ticks.size else np.zeros(0)
    minutes = ((ticks - mt.start_tick) * mt.tick_minutes).astype(np.float64)
    return minutes, fake.astype(np.float64), disp


def hotlist_rank_series(rec: RunRecord) -> np.ndarray:
    """Best hot-list rank of a campaign target at every tick, float64 (S,) (1 = top; NaN: none listed)."""
    m = rec.manipulation
    ranks = np.where(m.hot_target_mask, np.arange(1, m.hot_items.shape[1] + 1)[None, :], np.inf).min(axis=1)
    return np.where(np.isfinite(ranks), ranks, np.nan)


def _first_listed_minutes(m) -> float:
    """Minutes from the campaign's start to the end of the first tick whose hot list holds a target; NaN: never."""
    hit = np.flatnonzero(m.hot_target_mask[m.start_tick :].any(axis=1))
    return float((hit[0] + 1) * m.tick_minutes) if hit.size else float("nan")


def _hot_share(m) -> float:
    return float(m.hot_target_mask[m.start_tick :].mean())


def manipulation_estimators(t: RunRecord, f: RunRecord | None, estimator) -> dict:
    """Estimators of the Art. 14 lines for one replication, keyed by (metric, cohort).

    Parameters
    ----------
    t : RunRecord
        The audited run (with the scenario's ``[bots]``).
    f : RunRecord or None
        Its bot-free counterfactual (:func:`sim.bots.bot_free_scenario`, same seed and replication); None when
        the scenario has no bots (every line is then out of scope: no users in it).
    estimator : type
        :class:`audits.metrics.Estimator`.
    """
    n = t.n_users
    nobody = np.zeros(n, dtype=bool)
    mt = t.manipulation
    if f is None or mt is None or not mt.has_bots:
        return {(name, "all"): estimator(nobody, lambda idx: float("nan"), undefined_reason=_NO_BOTS)
                for name in MANIPULATION_METRICS}  # fmt: skip
    mf = f.manipulation
    if not np.array_equal(mt.targets, mf.targets) or not np.array_equal(t.cohort, f.cohort):
        raise ValueError("the audited run and its bot-free counterfactual are not paired (different targets or users)")
    est = {}
    # (d) exposure: users shown anything from the campaign's start in both runs
    seen = (mt.user_impressions > 0) & (mf.user_impressions > 0)
    organic_imp = mf.user_target_impressions[seen].sum()
    organic_min = mf.user_target_minutes[seen].sum()
    no_organic = (
        "" if organic_imp > 0 else "the targets were never shown to users without the bots (the index is infinite)"
    )
    no_demand = "" if organic_min > 0 else "users never watched the targets without the bots (the ratio is infinite)"

    exposure_t = ratio_of_sums(mt.user_target_impressions, mt.user_impressions)  # targets' share of impressions
    exposure_f = ratio_of_sums(mf.user_target_impressions, mf.user_impressions)
    demand_f = ratio_of_sums(mf.user_target_minutes, mf.user_minutes)  # targets' share of minutes, without bots

    def index(idx):
        return _quotient(exposure_t(idx), exposure_f(idx))

    def demand(idx):
        return _quotient(exposure_t(idx), demand_f(idx))

    everyone_seen = np.flatnonzero(seen)
    shares = (f"targets' exposure share {exposure_t(everyone_seen):.3g} "
              f"with bots, {exposure_f(everyone_seen):.3g} without")  # fmt: skip
    est[("over_recommendation_index", "all")] = estimator(seen, index, undefined_reason=no_organic, note=shares)
    est[("exposure_demand_ratio", "all")] = estimator(seen, demand, undefined_reason=no_demand)

    # (a) rank displacement: the probed users (the same panels in both runs)
    probed = mt.user_rank_count > 0
    gain = mf.user_rank_sum - mt.user_rank_sum
    est[("rank_displacement", "all")] = estimator(
        probed, ratio_of_sums(gain, mt.user_rank_count),
        undefined_reason="" if probed.any() else "no rank probe (the targets were gone)",
        note=f"positions among {mt.n_candidates} candidates gained by the targets (0 = first)",
    )  # fmt: skip
    minutes, fake, disp = robustness_curve(t, f)
    after = (fake > 0) & np.isfinite(disp)
    slope = float(disp[after].mean() / fake[after].mean() * 1000.0) if after.any() else float("nan")
    run_level = np.ones(n, dtype=bool)
    est[("rank_displacement_per_1k_fake_views", "all")] = estimator(
        run_level, lambda idx: slope,
        undefined_reason="" if after.any() else "no fake view reached the platform (none made, or all caught)",
    )  # fmt: skip

    # (c) detection
    made = int(mt.fake_made.sum())
    recall = float(mt.fake_caught.sum()) / made if made else float("nan")
    est[("bot_detection_recall", "all")] = estimator(
        run_level, lambda idx: recall, undefined_reason="" if made else "the bots made no fake view",
        note=f"{made:,} fake views made, {int(mt.fake_caught.sum()):,} caught",
    )  # fmt: skip

    # (b) the hot list
    if not mt.has_hot_list:
        for name in ("time_to_hotlist_minutes", "hotlist_target_share", "hotlist_share_increase"):
            est[(name, "all")] = estimator(run_level, lambda idx: float("nan"), undefined_reason=_NO_HOT)
        return est
    first_t, first_f = _first_listed_minutes(mt), _first_listed_minutes(mf)
    free_note = "never without the bots" if not np.isfinite(first_f) else f"{first_f:g} min without the bots"
    est[("time_to_hotlist_minutes", "all")] = estimator(
        run_level, lambda idx: first_t,
        undefined_reason="" if np.isfinite(first_t) else "no target reached the hot list in the run",
        note=free_note,
    )  # fmt: skip
    share_t, share_f = _hot_share(mt), _hot_share(mf)
    est[("hotlist_target_share", "all")] = estimator(run_level, lambda idx: share_t,
                                                     note=f"{share_f:.3g} without the bots")  # fmt: skip
    est[("hotlist_share_increase", "all")] = estimator(run_level, lambda idx: share_t - share_f)
    return est
