"""Per-user sums over the quote log, folded tick by tick (the market's online aggregate).

A market run makes ~2 quotes per user-day, and a logged quote holds 90 B
(:data:`sim.memory.QUOTE_BYTES`): a million users for a month would hold ~6 GB
of log. The Art. 8/18/19/21 metrics need far less: each is a ratio of sums, a
mean of per-user sums, or a regression whose normal equations are sums, taken
over a set of users (the bootstrap resamples users). :class:`QuoteSummary`
keeps exactly those per-user sums, plus a few small tables for the report's
figures, and is updated from each tick's quotes as they happen. The per-quote
log is kept only when the scenario asks for it (``[market] quote_log = true``,
which also writes ``quotes.parquet``) or while the decision log (Art. 28) has
not yet written the day's quotes.

The per-user sums are accumulated with :func:`numpy.add.at` in log order, the
same additions in the same order as :func:`numpy.bincount` over the whole log,
so those of a summary folded online equal, bit for bit, those of one built from
the joined log (:meth:`QuoteSummary.from_log`; tested). The figure tables are
sums of per-tick bincounts (equal to rounding).

Two of the auditor's definitions are needed while folding: who is a loyal
customer and which prices count as equal. The audit passes the catalogue's
values (``audits/thresholds.toml`` ``[definitions]``); a plain ``recaudit run``
uses the defaults below, which a test keeps equal to the catalogue's.

Public objects
--------------
QuoteSummary
    The per-user sums and the figure tables.
LOYAL_MIN_PURCHASES_DEFAULT, PRICE_TOLERANCE_DEFAULT
    The catalogue's definitions, for runs without an audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["LOYAL_MIN_PURCHASES_DEFAULT", "PRICE_TOLERANCE_DEFAULT", "QuoteSummary"]

# Loyal customer: at least 3 recent purchases (purchase stock, decayed); recaudit definition, the audit reads
# its value from audits/thresholds.toml [definitions] loyal_min_purchases.
LOYAL_MIN_PURCHASES_DEFAULT = 3.0
# Equal price: within 0.5% of the uniform price (rounding); recaudit definition, audits/thresholds.toml
# [definitions] price_tolerance.
PRICE_TOLERANCE_DEFAULT = 0.005

OUTCOME_PLATFORM = 1  # sim.kernels.market.OUTCOME_PLATFORM (not imported: this module stays kernel-free)

SEGMENTS = ("new customer", "occasional", "loyal")  # segment codes 0, 1, 2 of the figure tables

# per-user sums: name -> (dtype, what is summed over which quotes); "plain" = no disclosed promotion,
# "rel" = price / shadow price (the reference pricer's quote for the same product, user and time)
USER_SUMS = {
    "n_quotes": (np.int32, "quotes (offers) made to the user"),
    "n_fraud": (np.int32, "quotes of fraudulent products"),
    "surplus": (np.float64, "consumer surplus over all quotes (yuan; 0 where nothing was bought)"),
    "n_plain": (np.int32, "plain quotes"),
    "rel_plain": (np.float64, "rel over plain quotes"),
    "n_loyal": (np.int32, "plain quotes while loyal (purchase stock >= loyal_min, bought before)"),
    "rel_loyal": (np.float64, "rel over those"),
    "n_new": (np.int32, "plain quotes while a new customer (never bought)"),
    "rel_new": (np.float64, "rel over those"),
    "n_bought": (np.int32, "platform purchases"),
    "rel_bought": (np.float64, "rel over platform purchases"),
    "overcharge": (np.float64, "price - shadow price over platform purchases (yuan)"),
    "fraud_loss": (np.float64, "price of fraudulent platform purchases (yuan)"),
    "n_differs": (np.int32, "plain platform purchases whose |rel - 1| > price_tolerance"),
    # the regression of log(rel) on traits (audits.market_metrics): sums over plain quotes of the two traits
    # that change from quote to quote, L = min(stock, 2 loyal_min) / loyal_min and N = [never bought]
    "loyalty": (np.float64, "L"),
    "loyalty_sq": (np.float64, "L * L"),
    "loyalty_new": (np.float64, "L * N"),
    "log_rel": (np.float64, "log(rel)"),
    "loyalty_log_rel": (np.float64, "L * log(rel)"),
    "new_log_rel": (np.float64, "N * log(rel)"),
}

# the columns of a tick's quotes the fold reads
FOLD_COLUMNS = ("tick", "user_idx", "cohort", "device", "purchases_stock", "lifetime_purchases", "fraud", "price",
                "disclosed", "shadow_price", "outcome", "surplus")  # fmt: skip


def _add(acc: np.ndarray, idx: np.ndarray, values) -> None:
    """``acc[idx[i]] += values[i]`` in order (the additions of ``np.bincount`` over the same rows)."""
    if idx.size:
        np.add.at(acc, idx, values)


@dataclass
class QuoteSummary:
    """What the audit and the report need from a run's quotes, per user and in small tables.

    Parameters
    ----------
    n_users, n_days, ticks_per_day : int
    loyal_min_purchases : float
        Purchase stock from which a customer counts as loyal.
    price_tolerance : float
        Relative difference from the uniform price under which two prices count as equal.

    Attributes
    ----------
    sums : dict of str -> array (n_users,)
        The per-user sums of :data:`USER_SUMS` (int32 counts, float64 sums).
    segment_quoted_rel, segment_quoted_n : float64, int64 (2, 3)
        Sum of rel and count of plain quotes by device (0 Android, 1 iOS) and segment (:data:`SEGMENTS`).
    segment_paid_rel, segment_paid_n : float64, int64 (2, 3)
        The same over plain platform purchases.
    offers_by_day, fraud_by_day : int64 (3, n_days)
        Quotes and fraudulent quotes per cohort (adult, minor, elderly) and day.
    minor_payments : dict of str -> array (m,)
        Every platform purchase by a minor (``user_idx`` int64, ``price`` float32, ``tick`` int32): the
        Art. 18 per-payment caps are checked against them. Minors' purchases are few.
    n_total : int
        Quotes folded.
    """

    n_users: int
    n_days: int
    ticks_per_day: int
    loyal_min_purchases: float = LOYAL_MIN_PURCHASES_DEFAULT
    price_tolerance: float = PRICE_TOLERANCE_DEFAULT
    sums: dict = field(init=False)
    segment_quoted_rel: np.ndarray = field(init=False)
    segment_quoted_n: np.ndarray = field(init=False)
    segment_paid_rel: np.ndarray = field(init=False)
    segment_paid_n: np.ndarray = field(init=False)
    offers_by_day: np.ndarray = field(init=False)
    fraud_by_day: np.ndarray = field(init=False)
    minor_payments: dict = field(init=False)
    n_total: int = field(init=False, default=0)

    def __post_init__(self):
        if not self.loyal_min_purchases > 0:
            raise ValueError(f"loyal_min_purchases must be > 0, got {self.loyal_min_purchases}")
        if not self.price_tolerance >= 0:
            raise ValueError(f"price_tolerance must be >= 0, got {self.price_tolerance}")
        self.sums = {name: np.zeros(self.n_users, dtype=dt) for name, (dt, _) in USER_SUMS.items()}
        self.segment_quoted_rel = np.zeros((2, 3))
        self.segment_quoted_n = np.zeros((2, 3), dtype=np.int64)
        self.segment_paid_rel = np.zeros((2, 3))
        self.segment_paid_n = np.zeros((2, 3), dtype=np.int64)
        self.offers_by_day = np.zeros((3, self.n_days), dtype=np.int64)
        self.fraud_by_day = np.zeros((3, self.n_days), dtype=np.int64)
        self._minor_chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.minor_payments = {}

    @property
    def definitions(self) -> dict:
        """The auditor's definitions this summary was folded with (``QuoteSummary(**definitions)`` keywords)."""
        return {"loyal_min_purchases": self.loyal_min_purchases, "price_tolerance": self.price_tolerance}

    @staticmethod
    def bytes_per_user() -> int:
        """Memory of the per-user sums (bytes per user)."""
        return sum(np.dtype(dt).itemsize for dt, _ in USER_SUMS.values())

    # -- folding ----------------------------------------------------------------------
    def fold(self, q: dict) -> None:
        """Add one batch of quotes (a tick's, or a whole log), in log order.

        Parameters
        ----------
        q : dict of str -> array (b,)
            At least the columns :data:`FOLD_COLUMNS` of :data:`sim.market.world.QUOTE_COLUMNS`.
        """
        s, lm = self.sums, self.loyal_min_purchases
        u = np.asarray(q["user_idx"], dtype=np.int64)
        if u.size == 0:
            return
        self.n_total += int(u.size)
        price = np.asarray(q["price"]).astype(np.float64)
        shadow = np.asarray(q["shadow_price"]).astype(np.float64)
        rel = price / shadow
        stock = np.asarray(q["purchases_stock"])
        lifetime = np.asarray(q["lifetime_purchases"])
        plain_mask = ~np.asarray(q["disclosed"]).astype(bool)
        bought_mask = np.asarray(q["outcome"]) == OUTCOME_PLATFORM
        fraud_mask = np.asarray(q["fraud"]).astype(bool)
        cohort = np.asarray(q["cohort"]).astype(np.int64)
        device = np.asarray(q["device"]).astype(np.int64)
        new_mask = lifetime == 0
        loyal_mask = (stock >= lm) & ~new_mask

        _add(s["n_quotes"], u, 1)
        _add(s["n_fraud"], u[fraud_mask], 1)
        _add(s["surplus"], u, np.asarray(q["surplus"], dtype=np.float64))
        up = u[plain_mask]
        _add(s["n_plain"], up, 1)
        _add(s["rel_plain"], up, rel[plain_mask])
        for name, sel_mask in (("loyal", plain_mask & loyal_mask), ("new", plain_mask & new_mask)):
            _add(s[f"n_{name}"], u[sel_mask], 1)
            _add(s[f"rel_{name}"], u[sel_mask], rel[sel_mask])
        ub = u[bought_mask]
        _add(s["n_bought"], ub, 1)
        _add(s["rel_bought"], ub, rel[bought_mask])
        _add(s["overcharge"], ub, (price - shadow)[bought_mask])
        _add(s["fraud_loss"], u[bought_mask & fraud_mask], price[bought_mask & fraud_mask])
        _add(s["n_differs"], u[bought_mask & plain_mask & (np.abs(rel - 1.0) > self.price_tolerance)], 1)

        big_l = np.minimum(stock[plain_mask].astype(np.float64), 2.0 * lm) / lm
        big_n = new_mask[plain_mask].astype(np.float64)
        y = np.log(rel[plain_mask])
        for name, v in (("loyalty", big_l), ("loyalty_sq", big_l * big_l), ("loyalty_new", big_l * big_n),
                        ("log_rel", y), ("loyalty_log_rel", big_l * y), ("new_log_rel", big_n * y)):  # fmt: skip
            _add(s[name], up, v)

        segment = np.where(new_mask, 0, np.where(loyal_mask, 2, 1))
        tables = ((self.segment_quoted_rel, self.segment_quoted_n, plain_mask),
                  (self.segment_paid_rel, self.segment_paid_n, plain_mask & bought_mask))  # fmt: skip
        for rel_acc, n_acc, sel_mask in tables:
            cell = device[sel_mask] * 3 + segment[sel_mask]
            rel_acc += np.bincount(cell, weights=rel[sel_mask], minlength=6).reshape(2, 3)
            n_acc += np.bincount(cell, minlength=6).reshape(2, 3)

        day = np.asarray(q["tick"]).astype(np.int64) // self.ticks_per_day
        cell = cohort * self.n_days + day
        self.offers_by_day += np.bincount(cell, minlength=3 * self.n_days).reshape(3, self.n_days)
        self.fraud_by_day += np.bincount(cell[fraud_mask], minlength=3 * self.n_days).reshape(3, self.n_days)

        minor_buy_mask = bought_mask & (cohort == 1)
        if minor_buy_mask.any():
            self._minor_chunks.append(
                (u[minor_buy_mask], np.asarray(q["price"])[minor_buy_mask].astype(np.float32),
                 np.asarray(q["tick"])[minor_buy_mask].astype(np.int32))
            )  # fmt: skip

    def finish(self) -> QuoteSummary:
        """Join the minors' payments (call once the run is over); return self."""
        chunks = self._minor_chunks
        self.minor_payments = {
            "user_idx": np.concatenate([c[0] for c in chunks]) if chunks else np.zeros(0, dtype=np.int64),
            "price": np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, dtype=np.float32),
            "tick": np.concatenate([c[2] for c in chunks]) if chunks else np.zeros(0, dtype=np.int32),
        }
        self._minor_chunks = [tuple(self.minor_payments.values())] if chunks else []
        return self

    def snapshot(self) -> QuoteSummary:
        """Return a finished copy, independent of this summary (a record taken while the run goes on)."""
        import copy

        return copy.deepcopy(self).finish()

    @classmethod
    def from_log(cls, quotes: dict, n_users: int, n_days: int, ticks_per_day: int, **definitions) -> QuoteSummary:
        """Build the summary of a whole quote log in one fold (e.g. a kept or a replayed log)."""
        out = cls(n_users, n_days, ticks_per_day, **definitions)
        out.fold(quotes)
        return out.finish()

    # -- reading ------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        """Return the per-user sum ``name`` (see :data:`USER_SUMS`), shape (n_users,)."""
        return self.sums[name]

    def normal_equations(self, idx: np.ndarray, device: np.ndarray, cohort: np.ndarray, z_income: np.ndarray):
        """Return the normal equations of log(rel) on the traits, over the plain quotes of users ``idx``.

        The design row of a quote is ``[1, L, N, iOS, minor, elderly, z]`` (intercept, loyalty, new customer,
        device, cohort dummies, standardised log income). Device, cohort and income are the user's own and
        fixed, so every entry of ``X'X`` and ``X'y`` is a sum over users of a per-user sum times user
        constants: the per-quote rows need not be kept.

        Parameters
        ----------
        idx : int (k,)
            Users, possibly repeated (a bootstrap resample).
        device, cohort : int (n_users,)
        z_income : float64 (n_users,)

        Returns
        -------
        xtx : float64 (7, 7)
        xty : float64 (7,)
        """
        s = self.sums
        n = s["n_plain"][idx].astype(np.float64)
        g = np.column_stack([np.ones(idx.size), (device[idx] == 1).astype(np.float64),
                             (cohort[idx] == 1).astype(np.float64), (cohort[idx] == 2).astype(np.float64),
                             z_income[idx]])  # fmt: skip
        h = np.column_stack([s["loyalty"][idx], s["n_new"][idx].astype(np.float64)])  # sums of L and N
        hy = np.array([s["loyalty_log_rel"][idx].sum(), s["new_log_rel"][idx].sum()])
        sll, sln, snn = s["loyalty_sq"][idx].sum(), s["loyalty_new"][idx].sum(), h[:, 1].sum()
        gi = [0, 3, 4, 5, 6]  # columns of the user constants; 1 and 2 are L and N
        xtx = np.zeros((7, 7))
        xtx[np.ix_(gi, gi)] = g.T @ (g * n[:, None])
        gh = g.T @ h
        xtx[np.ix_(gi, [1, 2])] = gh
        xtx[np.ix_([1, 2], gi)] = gh.T
        xtx[1:3, 1:3] = [[sll, sln], [sln, snn]]
        xty = np.zeros(7)
        xty[gi] = g.T @ s["log_rel"][idx]
        xty[1:3] = hy
        return xtx, xty
