"""Audit metrics: per-user quantities from run records, and the statistics over them.

A metric is a per-user vector (or a pair of them, audited and counterfactual)
and a statistic over a set of user indices. The same statistic is evaluated
on all users of the scope (the estimate), on bootstrap resamples of them (one
replication), or once per replication (several replications), so every
finding's interval comes from one code path. Records are paired: the audited
run and its counterfactual share the population and the random numbers.

Public objects
--------------
Estimator
    Scope mask + statistic for one (metric, cohort).
build_estimators
    All estimators of a pair of records, keyed by (metric, cohort).
cohort_masks
    Boolean user masks of the audit cohorts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from audits.catalogue import Catalogue
from audits.fleet_metrics import fleet_estimators
from audits.inequality import gini
from audits.market_metrics import market_estimators
from audits.statistics import mean_of, ratio_of_sums
from sim.record import RunRecord
from sim.state import stances

__all__ = ["Estimator", "build_estimators", "cohort_masks"]


@dataclass(frozen=True)
class Estimator:
    """A statistic over users in scope.

    Attributes
    ----------
    mask : bool (n_users,)
        Users in scope.
    stat : callable
        ``stat(idx) -> float`` for an int array of user indices (a subset of
        the scope, possibly with repeats).
    """

    mask: np.ndarray
    stat: Callable[[np.ndarray], float]
    undefined_reason: str = ""
    note: str = ""

    def value(self) -> float:
        """Return the statistic over the whole scope."""
        return float(self.stat(np.flatnonzero(self.mask)))


def cohort_masks(rec: RunRecord) -> dict[str, np.ndarray]:
    """Masks for 'all', 'adult', 'minor', 'elderly', the minors' age bands and 'opted_out'."""
    c, age = rec.cohort, rec.age
    minor = c == 1
    return {
        "all": np.ones(rec.n_users, dtype=bool),
        "adult": c == 0,
        "minor": minor,
        "elderly": c == 2,
        "minor_under_8": minor & (age < 8),
        "minor_8_15": minor & (age >= 8) & (age < 16),
        "minor_16_17": minor & (age >= 16),
        "opted_out": rec.opt_out_mask.copy(),
    }


def _per_day(rec: RunRecord, column: str) -> np.ndarray:
    return rec.day_column(column).mean(axis=0, dtype=np.float64)


def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """Return a random permutation with no fixed point (a cyclic shift of a shuffle)."""
    order = rng.permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.roll(order, 1)
    return out


def _minhash_jaccard(sketch: np.ndarray, partner: np.ndarray) -> np.ndarray:
    return (sketch == sketch[partner]).mean(axis=1)


def build_estimators(
    t: RunRecord,
    c: RunRecord,
    catalogue: Catalogue,
    rng: np.random.Generator,
    pricer_counterfactual: RunRecord | None = None,
    dispatcher_counterfactual: RunRecord | None = None,
) -> dict[tuple[str, str], Estimator]:
    """Estimators for every (metric, cohort) pair of the catalogue.

    Parameters
    ----------
    t, c : RunRecord
        The audited run and its counterfactual (same seed and replication).
    catalogue : Catalogue
        Supplies the caps and the compulsive-day definition.
    rng : numpy.random.Generator
        Used only to draw the placebo and pair permutations.
    pricer_counterfactual : RunRecord, optional
        The run with only the pricer swapped for the reference pricer (market
        findings in ``PRICER_CF_METRICS``); defaults to ``c``.
    dispatcher_counterfactual : RunRecord, optional
        The run with the same orders and couriers under the counterfactual dispatcher (fleet
        findings); defaults to ``c``.
    """
    if not np.array_equal(t.cohort, c.cohort) or not np.array_equal(t.age, c.age):
        raise ValueError("audited and counterfactual records are not paired (different populations)")
    masks = cohort_masks(t)
    ratio = catalogue.definitions["compulsive_ratio"]
    m_t, m_c = _per_day(t, "minutes"), _per_day(c, "minutes")
    comp_t = (t.day_column("minutes") > ratio * t.true_intended_minutes).mean(axis=0)
    comp_c = (c.day_column("minutes") > ratio * c.true_intended_minutes).mean(axis=0)
    reg_t, reg_c = _per_day(t, "regret_minutes"), _per_day(c, "regret_minutes")
    cap = catalogue.cap_minutes(t.age)
    over_cap = (t.day_column("minutes") > cap[None, :] + 1e-3).mean(axis=0)
    night = _per_day(t, "night_minutes")
    unprompted = _per_day(t, "unprompted_streaks")
    harm_imp = t.day_column("harmful_impressions").sum(axis=0, dtype=np.float64)
    imp = t.day_column("impressions").sum(axis=0, dtype=np.float64)

    est: dict[tuple[str, str], Estimator] = {}
    for name in ("all", "adult", "minor", "elderly"):
        mk = masks[name]
        est[("minutes_per_day", name)] = Estimator(mk, mean_of(m_t))
        est[("minutes_mean_uplift", name)] = Estimator(
            mk, lambda idx: float(m_t[idx].mean() / max(m_c[idx].mean(), 1e-9) - 1.0)
        )
        est[("minutes_p90_uplift", name)] = Estimator(
            mk,
            lambda idx: float(np.percentile(m_t[idx], 90) / max(np.percentile(m_c[idx], 90), 1e-9) - 1.0),
        )
        est[("compulsive_share_increase", name)] = Estimator(mk, mean_of(comp_t - comp_c))
        est[("regret_minutes_increase", name)] = Estimator(mk, mean_of(reg_t - reg_c))
    for name in ("minor", "minor_under_8", "minor_8_15", "minor_16_17"):
        est[("days_over_cap_share", name)] = Estimator(masks[name], mean_of(over_cap))
    est[("night_minutes_per_day", "minor")] = Estimator(masks["minor"], mean_of(night))
    est[("unprompted_streaks_per_day", "minor")] = Estimator(masks["minor"], mean_of(unprompted))
    est[("harmful_impression_share", "minor")] = Estimator(masks["minor"], ratio_of_sums(harm_imp, imp, empty=0.0))

    # Art. 17: does an opted-out user's feed follow their (exogenous) interests?
    # The placebo is the mean cosine with every other opted-out user's interests:
    # f_u . (S - t_u) / (n - 1) with unit rows, S the sum of all t_v.
    opt = np.flatnonzero(masks["opted_out"] & (imp > 0))
    gap = np.zeros(t.n_users)
    if opt.size >= 2:
        feed = t.imp_emb_sum[opt] / imp[opt, None]
        feed /= np.maximum(np.linalg.norm(feed, axis=1, keepdims=True), 1e-12)
        own = t.true_interest0[opt] / np.maximum(np.linalg.norm(t.true_interest0[opt], axis=1, keepdims=True), 1e-12)
        others = (own.sum(axis=0)[None, :] - own) / (opt.size - 1)
        gap[opt] = (feed * own).sum(axis=1) - (feed * others).sum(axis=1)
    opt_mask = np.zeros(t.n_users, dtype=bool)
    opt_mask[opt] = True
    est[("optout_profile_alignment", "opted_out")] = Estimator(opt_mask, mean_of(gap))

    # Art. 12: diversity of each feed over time, and homogenisation across users.
    ent_first, ent_last = t.feed_days[0, :, 0], t.feed_days[-1, :, 0]
    ent_ok = np.isfinite(ent_first) & np.isfinite(ent_last)
    too_short = "needs at least 2 simulated days" if t.n_days < 2 else ""
    est[("feed_entropy_change", "all")] = Estimator(
        ent_ok, mean_of(np.nan_to_num(ent_last - ent_first)), undefined_reason=too_short
    )
    top1 = t.feed_days[-1, :, 1]
    est[("top1_category_share", "all")] = Estimator(np.isfinite(top1), mean_of(np.nan_to_num(top1)))
    partner = _derangement(t.n_users, rng)
    empty = np.iinfo(np.uint32).max
    watched = (t.minhash[:, 0] != empty) & (c.minhash[:, 0] != empty)
    pair_ok = watched & watched[partner]
    jac = _minhash_jaccard(t.minhash, partner) - _minhash_jaccard(c.minhash, partner)
    est[("homogenisation_increase", "all")] = Estimator(pair_ok, mean_of(jac))

    # Concentration of attention across creators (a societal measure): Gini of minutes by creator. It is a
    # statistic of the whole run, so its interval comes from replications only (one replication: none).
    gini_t, gini_c = gini(t.creator_minutes), gini(c.creator_minutes)
    watchers = t.day_column("views").sum(axis=0) > 0
    est[("creator_attention_gini", "all")] = Estimator(watchers, lambda idx: gini_t)
    est[("creator_gini_increase", "all")] = Estimator(watchers, lambda idx: gini_t - gini_c)

    # Polarisation (a societal measure): users' stances on the contested issue (their interest along the
    # stance axis) at the start and the end; the spread of stances is the polarisation (variance, as in
    # the opinion-dynamics literature, e.g. DiMaggio, Evans & Bryson, AJS 1996: dispersion).
    no_stances = "" if t.scenario.catalogue.stance_share > 0 else "no stances: catalogue.stance_share = 0"
    s0, s_t, s_c = stances(t.true_interest0), stances(t.true_interest), stances(c.true_interest)
    everyone = np.ones(t.n_users, dtype=bool)
    est[("stance_polarisation_change", "all")] = Estimator(
        everyone, lambda idx: float(np.var(s_t[idx]) - np.var(s0[idx])) if idx.size else np.nan,
        undefined_reason=no_stances,
    )  # fmt: skip
    est[("polarisation_increase", "all")] = Estimator(
        everyone, lambda idx: float(np.var(s_t[idx]) - np.var(s_c[idx])) if idx.size else np.nan,
        undefined_reason=no_stances,
    )  # fmt: skip
    # Aggregate regret (a societal measure): the counterfactual-paired regret minutes a user-day, as hours a
    # day for every million users: small per person, large in sum.
    est[("aggregate_regret_hours_increase", "all")] = Estimator(
        masks["all"], lambda idx: float(np.mean(reg_t[idx] - reg_c[idx])) * 1e6 / 60.0 if idx.size else np.nan
    )
    est.update(market_estimators(t, c, pricer_counterfactual or c, catalogue, masks, Estimator))
    est.update(fleet_estimators(t, dispatcher_counterfactual or c, Estimator))
    return est
