"""The record of a run: what audits read, and its tables.

Audits never touch the engine: they read a :class:`RunRecord`, which holds
per-user-day counters, per-user traits (including ground truth, for the
auditor's eyes only) and run-level aggregates.

Public objects
--------------
RunRecord
    Immutable result of one run.
MarketRecord
    The market part of a run (quotes, money, shoppers' traits), when the scenario has one.
FleetRecord
    The fleet part of a run (every order, every courier-day), when the scenario has one.
COMPULSIVE_RATIO_DEFAULT
    Default definition of a compulsive day (see ``audits/thresholds.toml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim.kernels import layout as L
from sim.market.summary import QuoteSummary
from sim.scenario import COHORTS, Scenario

__all__ = ["COMPULSIVE_RATIO_DEFAULT", "FleetRecord", "MarketRecord", "RunRecord"]

# A compulsive day: use above 1.5x the user's own intended use. Proposed line
# (no published threshold; regulation-map §1, Art 8 (b)); the audit reads its
# value from audits/thresholds.toml.
COMPULSIVE_RATIO_DEFAULT = 1.5


@dataclass(frozen=True)
class MarketRecord:
    """The market part of a run.

    Attributes (n = n_users, M = months touched by the run)
    -------------------------------------------------------
    pricer, reference_pricer : str
        Labels of the audited pricer and the reference (shadow) pricer.
    pricer_params : dict
    summary : sim.market.summary.QuoteSummary
        Per-user sums of the quotes and the report's small tables (what the audit reads).
    quotes : dict of str -> array (q,), or None
        The quote log, columns :data:`sim.market.world.QUOTE_COLUMNS` (every quote
        with the inputs that produced it and what came of it; ``value``,
        ``value_mean``, ``surplus`` and ``fraud`` are ground truth, for the auditor);
        None unless the scenario keeps it (``[market] quote_log = true``).
    income_month, budget_month, fraud_susceptibility : float32 (n,)
        Ground truth per user.
    device : int8 (n,)
    promo_opt_in_mask : bool (n,)
    payment_cap, monthly_cap : float32 (n,)
        Payment limits in force (inf: none).
    month_spend, month_platform_spend : float32 (M, n)
        Spend per 30-day month, everywhere and on the platform (yuan).
    money : dict
        Run totals (yuan): user_paid_platform, platform_revenue, seller_revenue,
        seller_cost, outside_spend.
    """

    pricer: str
    reference_pricer: str
    pricer_params: dict
    summary: QuoteSummary
    quotes: dict | None
    income_month: np.ndarray
    budget_month: np.ndarray
    fraud_susceptibility: np.ndarray
    device: np.ndarray
    promo_opt_in_mask: np.ndarray
    payment_cap: np.ndarray
    monthly_cap: np.ndarray
    month_spend: np.ndarray
    month_platform_spend: np.ndarray
    money: dict

    @classmethod
    def from_market(cls, market, copy: bool = True) -> MarketRecord:
        """Snapshot a :class:`sim.market.world.Market`; ``copy=False`` takes its quote summary itself (run over)."""
        s = market.shoppers
        pr = market.pricer
        return cls(
            pricer=market.pricer_label,
            reference_pricer=market.reference_label,
            pricer_params=pr.get_params() if hasattr(pr, "get_params") else {},
            summary=market.summary.snapshot() if copy else market.summary.finish(),
            quotes=market.quote_log(),
            income_month=s.true_income_month.copy(),
            budget_month=s.true_budget_month.copy(),
            fraud_susceptibility=s.true_fraud_susceptibility.copy(),
            device=s.device.copy(),
            promo_opt_in_mask=s.promo_opt_in_mask.copy(),
            payment_cap=s.payment_cap.copy(),
            monthly_cap=s.monthly_cap.copy(),
            month_spend=market.month_spend.copy(),
            month_platform_spend=market.month_platform_spend.copy(),
            money=dict(market.money),
        )

    def quotes_frame(self, rows: slice | None = None) -> pd.DataFrame:
        """Return the quote log as a table (the ``quotes.parquet`` table); ``rows`` selects a slice of quotes.

        Raises
        ------
        ValueError
            If the run did not keep its quote log.
        """
        if self.quotes is None:
            raise ValueError("this run kept no quote log; fix: set [market] quote_log = true in the scenario")
        rows = rows if rows is not None else slice(None)
        df = pd.DataFrame({name: col[rows] for name, col in self.quotes.items()})
        if len(df):
            df["cohort"] = pd.Categorical.from_codes(df["cohort"].astype(np.int64), COHORTS)
            df["outcome"] = pd.Categorical.from_codes(df["outcome"].astype(np.int64), ["none", "platform", "outside"])
        return df


@dataclass(frozen=True)
class FleetRecord:
    """The fleet part of a run.

    Attributes (w = n_workers, T = days, S = fleet steps)
    ------------------------------------------------------
    dispatcher : str
    dispatcher_params : dict
    orders : dict of str -> array (o,)
        Every order with its inputs and outcome (columns of :data:`sim.fleet.state._ORDER_FIELDS`;
        ``ready`` and ``uncontrollable_minutes`` are ground truth, for the auditor).
    worker_days : float32 (T, w, N_WD)
        Each courier-day's counters (:data:`sim.fleet.state.WD_COLUMNS`).
    rest_planned : bool (T, w)
        The courier meant to rest that day.
    true_target_earnings, true_speed_kmh : float32 (w,)
    series : float32 (S, 4)
        Orders in the system, open orders, couriers online and idle at the end of every step.
    weather : float32 (S,)
        Speed factor of every step.
    step_minutes : float
    n_offers : int
    """

    dispatcher: str
    dispatcher_params: dict
    orders: dict
    worker_days: np.ndarray
    rest_planned: np.ndarray
    true_target_earnings: np.ndarray
    true_speed_kmh: np.ndarray
    series: np.ndarray
    weather: np.ndarray
    step_minutes: float
    n_offers: int

    @classmethod
    def from_fleet(cls, fleet) -> FleetRecord:
        """Snapshot a :class:`sim.fleet.world.Fleet`."""
        d = fleet.dispatcher
        w = fleet.workers
        return cls(
            dispatcher=fleet.label,
            dispatcher_params=d.get_params() if hasattr(d, "get_params") else {},
            orders=fleet.deliveries(),
            worker_days=fleet.worker_days,
            rest_planned=fleet.rest_planned,
            true_target_earnings=w.true_target_earnings.copy(),
            true_speed_kmh=w.true_speed_kmh.copy(),
            series=fleet.series,
            weather=fleet.weather,
            step_minutes=fleet.dt,
            n_offers=fleet.n_offers,
        )

    @property
    def n_workers(self) -> int:
        """Number of couriers."""
        return int(self.worker_days.shape[1])

    def day_column(self, name: str) -> np.ndarray:
        """One counter for every courier-day, float32 (T, w)."""
        from sim.fleet.state import WD

        return self.worker_days[:, :, WD[name]]

    def orders_frame(self) -> pd.DataFrame:
        """Every order (the ``deliveries.parquet`` table)."""
        from sim.fleet.state import ORDER_STATUSES

        df = pd.DataFrame(self.orders)
        df.insert(0, "order_idx", np.arange(len(df), dtype=np.int64))
        if len(df):
            df["status"] = pd.Categorical.from_codes(df["status"].astype(np.int64), ORDER_STATUSES)
        return df

    def worker_days_frame(self) -> pd.DataFrame:
        """One row per courier-day (the ``worker_days.parquet`` table)."""
        from sim.fleet.state import WD_COLUMNS

        t, w, _ = self.worker_days.shape
        df = pd.DataFrame(self.worker_days.reshape(t * w, -1), columns=list(WD_COLUMNS))
        df.insert(0, "worker_idx", np.tile(np.arange(w, dtype=np.int64), t))
        df.insert(0, "day", np.repeat(np.arange(t, dtype=np.int64), w))
        df["rest_planned"] = self.rest_planned.reshape(-1)
        return df


@dataclass(frozen=True)
class RunRecord:
    """Immutable result of one run.

    Attributes (n = n_users, T = days, D = interest_dim)
    ----------------------------------------------------
    scenario : Scenario
    replication : int
    recommender : str
        Label of the base recommender (or the class name of an instance).
    recommender_params : dict
    cohort : int8 (n,)
    age : int16 (n,)
    opt_out_mask : bool (n,)
    true_intended_minutes : float32 (n,)
    user_days : float32 (T, n, N_DAY)
        Each day's counters per user; columns in :data:`sim.kernels.layout.DAY_COLUMNS`.
    feed_days : float32 (T, n, 2)
        Each day's feed category entropy (nats) and top-category share (NaN: no impressions).
    hourly_minutes : float64 (3, 24)
        Minutes watched by cohort and hour of day over the run.
    true_interest0 : float32 (n, D)
        Interests at the start (exogenous profile, for the Art. 17 test).
    true_interest : float32 (n, D)
        Interests at the end.
    imp_emb_sum : float32 (n, D)
        Sum of the embeddings of all items shown to the user.
    minhash : uint32 (n, K)
        MinHash sketch of the items each user watched.
    wall_seconds : float
    agent_steps : int
        Number of (user, slate) views computed.
    market : MarketRecord or None
        The market part, when the scenario has a ``market`` table.
    fleet : FleetRecord or None
        The fleet part, when the scenario has a ``fleet`` table.
    creator_minutes : float64 (n_creators,)
        Minutes watched of each creator's items over the run (attention by creator).
    manipulation : sim.bots.ManipulationRecord or None
        Bot campaign, targets' exposure and rank probes, and the hot-list log (Art. 14), when the scenario
        has ``[bots]`` or ``[recommender.hot_list]``.
    tags : sim.tags.TagEvidence or None
        Tag deletions, the attribution of slate items to tags and the profile census (Art. 10/17), when the
        platform keeps tags (``[recommender.tags]``).
    """

    scenario: Scenario
    replication: int
    recommender: str
    recommender_params: dict
    cohort: np.ndarray
    age: np.ndarray
    opt_out_mask: np.ndarray
    true_intended_minutes: np.ndarray
    user_days: np.ndarray
    feed_days: np.ndarray
    hourly_minutes: np.ndarray
    true_interest0: np.ndarray
    true_interest: np.ndarray
    imp_emb_sum: np.ndarray
    minhash: np.ndarray
    wall_seconds: float = 0.0
    agent_steps: int = 0
    market: MarketRecord | None = None
    fleet: FleetRecord | None = None
    creator_minutes: np.ndarray | None = None
    extra: dict = field(default_factory=dict)
    manipulation: object | None = None
    tags: object | None = None

    @classmethod
    def from_world(cls, world, wall_seconds: float = 0.0, copy: bool = True) -> RunRecord:
        """Snapshot a finished :class:`sim.engine.FeedWorld`.

        With ``copy=False`` the record shares the world's final per-user arrays (no
        second copy at the end of a large run); the world must not be stepped again.
        """
        u = world.users
        keep = np.copy if copy else (lambda a: a)
        rec = world.recommender
        params = rec.get_params() if hasattr(rec, "get_params") else {}
        return cls(
            scenario=world.scenario,
            replication=world.replication,
            recommender=world.recommender_label,
            recommender_params=params,
            cohort=keep(u.cohort),
            age=keep(u.age),
            opt_out_mask=keep(u.opt_out_mask),
            true_intended_minutes=np.ascontiguousarray(u.true_intended_minutes),  # a column of the session block
            user_days=world.user_days,
            feed_days=world.feed_days,
            hourly_minutes=world.hourly_minutes.copy(),
            true_interest0=u.true_interest0,
            true_interest=keep(u.true_interest),
            imp_emb_sum=keep(world.imp_emb_sum),
            minhash=keep(world.minhash),
            wall_seconds=wall_seconds,
            agent_steps=world.agent_steps,
            market=MarketRecord.from_market(world.market, copy=copy) if world.market is not None else None,
            fleet=FleetRecord.from_fleet(world.fleet) if world.fleet is not None else None,
            creator_minutes=world.creator_minutes.copy(),
            manipulation=m.record() if (m := getattr(world, "manipulation", None)) is not None else None,
            tags=t.evidence() if (t := getattr(world, "tags", None)) is not None else None,
        )

    @property
    def n_users(self) -> int:
        """Number of users."""
        return int(self.cohort.shape[0])

    @property
    def n_days(self) -> int:
        """Number of simulated days."""
        return int(self.user_days.shape[0])

    def day_column(self, name: str) -> np.ndarray:
        """Return one counter for every user-day, float32 (T, n)."""
        return self.user_days[:, :, L.DAY_COLUMNS.index(name)]

    def daily(self, compulsive_ratio: float = COMPULSIVE_RATIO_DEFAULT) -> pd.DataFrame:
        """One row per day and cohort (the ``metrics.parquet`` table).

        Columns: day, cohort, n_users, minutes_mean, minutes_p90, night_minutes_mean,
        regret_minutes_mean, compulsive_share, sessions_mean, views_mean,
        harmful_impression_share, feed_entropy_mean, top1_share_mean.
        """
        rows = []
        minutes = self.day_column("minutes")
        comp = minutes > compulsive_ratio * self.true_intended_minutes[None, :]
        for day in range(self.n_days):
            for c, name in enumerate(COHORTS):
                m = self.cohort == c
                n = int(m.sum())
                if n == 0:
                    continue
                d = self.user_days[day][m]
                imp = d[:, L.IMPRESSIONS].sum()
                fd = self.feed_days[day][m]
                rows.append(
                    dict(
                        day=day,
                        cohort=name,
                        n_users=n,
                        minutes_mean=float(d[:, L.MINUTES].mean()),
                        minutes_p90=float(np.percentile(d[:, L.MINUTES], 90)),
                        night_minutes_mean=float(d[:, L.NIGHT_MINUTES].mean()),
                        regret_minutes_mean=float(d[:, L.REGRET_MINUTES].mean()),
                        compulsive_share=float(comp[day][m].mean()),
                        sessions_mean=float(d[:, L.SESSIONS].mean()),
                        views_mean=float(d[:, L.VIEWS].mean()),
                        harmful_impression_share=float(d[:, L.HARMFUL_IMPRESSIONS].sum() / imp) if imp else 0.0,
                        feed_entropy_mean=float(np.nanmean(fd[:, 0])) if np.isfinite(fd[:, 0]).any() else np.nan,
                        top1_share_mean=float(np.nanmean(fd[:, 1])) if np.isfinite(fd[:, 1]).any() else np.nan,
                    )
                )
        return pd.DataFrame(rows)

    def users_frame(self, rows: slice | None = None) -> pd.DataFrame:
        """One row per user with run totals and means (the ``users.parquet`` table).

        ``rows`` selects a slice of users (the CLI writes large populations in slices). With a market,
        the user's quote sums over the run follow (:class:`sim.market.summary.QuoteSummary`): offers,
        platform purchases, spend (yuan, everywhere), overcharge (price minus the reference price over
        purchases), consumer surplus, scam offers and the money lost to scams.
        """
        rows = rows if rows is not None else slice(0, self.n_users)
        ud = self.user_days[:, rows]
        tot = ud.sum(axis=0)
        lo, hi, _ = rows.indices(self.n_users)
        df = pd.DataFrame(
            {
                "user_idx": np.arange(lo, hi, dtype=np.int64),
                "cohort": pd.Categorical.from_codes(self.cohort[rows].astype(np.int64), COHORTS),
                "age": self.age[rows],
                "opt_out": self.opt_out_mask[rows],
                "intended_minutes": self.true_intended_minutes[rows],
                "minutes_per_day": tot[:, L.MINUTES] / self.n_days,
                "max_day_minutes": ud[:, :, L.MINUTES].max(axis=0),
                "night_minutes_per_day": tot[:, L.NIGHT_MINUTES] / self.n_days,
                "regret_minutes_per_day": tot[:, L.REGRET_MINUTES] / self.n_days,
            }
        )
        for name in ("views", "sessions", "harmful_views", "impressions", "harmful_impressions",
                     "prompts", "unprompted_streaks", "blocked"):  # fmt: skip
            df[name] = tot[:, L.DAY_COLUMNS.index(name)].astype(np.int64)
        with np.errstate(invalid="ignore"):
            df["feed_entropy_first_day"] = self.feed_days[0, rows, 0]
            df["feed_entropy_last_day"] = self.feed_days[-1, rows, 0]
        if self.market is not None:
            qs = self.market.summary
            df["offers"] = qs["n_quotes"][rows]
            df["purchases"] = qs["n_bought"][rows]
            df["spend"] = self.market.month_spend[:, rows].sum(axis=0, dtype=np.float64)
            for name in ("overcharge", "surplus", "fraud_loss"):
                df[name] = qs[name][rows]
            df["fraud_offers"] = qs["n_fraud"][rows]
        return df

    def hourly(self) -> pd.DataFrame:
        """Minutes per user-day by cohort and hour of day (long format)."""
        counts = np.bincount(self.cohort, minlength=3).astype(np.float64)
        rows = []
        for c, name in enumerate(COHORTS):
            if counts[c] == 0:
                continue
            for h in range(24):
                rows.append(
                    dict(
                        cohort=name, hour=h, minutes_per_user_day=self.hourly_minutes[c, h] / (counts[c] * self.n_days)
                    )
                )
        return pd.DataFrame(rows)
