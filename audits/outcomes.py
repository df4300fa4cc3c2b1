"""Outcomes: scalar summaries of one run, by cohort, for sweeps and policy comparisons.

An outcome is a level measured in one run (not a difference from a
counterfactual: in a sweep, levers are compared with each other, paired by
common random numbers). Each outcome is a function of a :class:`RunRecord`
and a boolean user mask.

Public objects
--------------
OUTCOMES
    Name -> (function, unit, description).
outcome_value
    Evaluate one outcome for one cohort of a record.
parse_outcome
    ``"metric"`` or ``"metric:cohort"`` -> (metric, cohort), checked.
"""

from __future__ import annotations

import numpy as np

from audits.catalogue import load_catalogue
from audits.metrics import cohort_masks
from sim.market.state import DAYS_PER_MONTH
from sim.record import COMPULSIVE_RATIO_DEFAULT, RunRecord

__all__ = ["COHORT_NAMES", "OUTCOMES", "outcome_value", "parse_outcome"]

COHORT_NAMES = ("all", "adult", "minor", "elderly", "minor_under_8", "minor_8_15", "minor_16_17", "opted_out")


def _per_day(column):
    return lambda rec, m: float(rec.day_column(column)[:, m].mean()) if m.any() else float("nan")


def _compulsive(rec, m):
    minutes = rec.day_column("minutes")[:, m]
    return float((minutes > COMPULSIVE_RATIO_DEFAULT * rec.true_intended_minutes[m]).mean()) if m.any() else np.nan


def _over_cap(rec, m):
    cap = load_catalogue().cap_minutes(rec.age[m])
    return float((rec.day_column("minutes")[:, m] > cap + 1e-3).mean()) if m.any() else float("nan")


def _harmful_share(rec, m):
    imp = rec.day_column("impressions")[:, m].sum()
    return float(rec.day_column("harmful_impressions")[:, m].sum() / imp) if imp else float("nan")


def _entropy_last(rec, m):
    e = rec.feed_days[-1, m, 0]
    return float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")


def _market(fn):
    def wrapped(rec, m):
        if rec.market is None or not m.any():
            return float("nan")
        return fn(rec, m)

    return wrapped


@_market
def _spend(rec, m):
    return float(rec.market.month_spend[:, m].sum(axis=0).mean() * DAYS_PER_MONTH / rec.n_days)


@_market
def _over_budget(rec, m):
    budget = rec.market.budget_month[m].astype(np.float64) * rec.n_days / DAYS_PER_MONTH
    return float((rec.market.month_spend[:, m].sum(axis=0) > budget).mean())


@_market
def _surplus(rec, m):
    return float(rec.market.summary["surplus"][m].sum() / m.sum() * DAYS_PER_MONTH / rec.n_days)


@_market
def _fraud_share(rec, m):
    qs = rec.market.summary
    n = qs["n_quotes"][m].sum()
    return float(qs["n_fraud"][m].sum() / n) if n else float("nan")


@_market
def _price_ratio(rec, m):
    qs = rec.market.summary
    n = qs["n_bought"][m].sum()
    return float(qs["rel_bought"][m].sum() / n) if n else float("nan")


OUTCOMES = {
    "minutes_per_day": (_per_day("minutes"), "minutes per user-day", "Mean daily minutes."),
    "night_minutes_per_day": (_per_day("night_minutes"), "minutes per user-day", "Minutes 22:00-06:00."),
    "regret_minutes_per_day": (_per_day("regret_minutes"), "minutes per user-day", "Use beyond intended use."),
    "sessions_per_day": (_per_day("sessions"), "sessions per user-day", "App openings."),
    "unprompted_streaks_per_day": (_per_day("unprompted_streaks"), "events per user-day",
                                   "30-minute streaks with no rest prompt."),
    "compulsive_share": (_compulsive, "share of user-days", "Days above 1.5x intended use."),
    "days_over_cap_share": (_over_cap, "share of user-days", "Days above the minors' cap for the user's age."),
    "harmful_impression_share": (_harmful_share, "share of impressions", "Impressions of items harmful to minors."),
    "feed_entropy_last_day": (_entropy_last, "nats", "Category entropy of each feed on the last day."),
    "spend_per_user_month": (_spend, "yuan per user-month", "Spend on the platform and elsewhere."),
    "over_budget_share": (_over_budget, "share of users", "Users spending beyond their budget for the run."),
    "consumer_surplus_per_user_month": (_surplus, "yuan per user-month", "Value received minus price paid."),
    "fraud_offer_share": (_fraud_share, "share of offers", "Offers that are scams."),
    "paid_price_ratio": (_price_ratio, "price / uniform price", "Mean price paid over the uniform price."),
}  # fmt: skip


def parse_outcome(text: str) -> tuple[str, str]:
    """Split ``"metric[:cohort]"``; raise ValueError naming the choices if either is unknown."""
    metric, _, cohort = text.partition(":")
    cohort = cohort or "all"
    if metric not in OUTCOMES:
        raise ValueError(f"unknown outcome '{metric}'; choose one of {', '.join(OUTCOMES)}")
    if cohort not in COHORT_NAMES:
        raise ValueError(f"unknown cohort '{cohort}' in '{text}'; choose one of {', '.join(COHORT_NAMES)}")
    return metric, cohort


def outcome_value(rec: RunRecord, metric: str, cohort: str = "all") -> float:
    """Evaluate outcome ``metric`` over the users of ``cohort`` in ``rec`` (NaN if undefined)."""
    fn = OUTCOMES[metric][0]
    return float(fn(rec, cohort_masks(rec)[cohort]))
