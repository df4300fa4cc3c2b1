"""Built-in pricers: from uniform cost-plus to big-data price discrimination.

Every pricer follows the protocol of :mod:`sim.market.view`:
``quote(user_idx, product_idx, view)`` returns prices in yuan (float, one per
pair), optionally with a mask of prices that carry a disclosed, opt-in
promotion; ``fit(view, log)`` learns from a tick of quotes.

Public objects
--------------
UniformPricer
    One price per product for everyone: cost plus a markup (the compliant baseline).
PersonalisedPricer
    Prices from the platform's willingness-to-pay estimates: per user (first
    degree) or per segment (third degree, the textbook monopoly price per segment).
LoyaltyPricer
    Raises prices for habitual customers, who compare less ("大数据杀熟").
DevicePricer
    Charges iOS users more (Fudan 2021 ride-hailing survey pattern).
NewCustomerDiscount
    Undisclosed discounts for customers with no purchase yet.
CompliantPricer
    Uniform prices; the only differences are disclosed promotions for users who opted in.
BASE_PRICERS
    Name -> class.
"""

from __future__ import annotations

import numpy as np

from sim.market.view import BasePricer, MarketView, QuoteLog

__all__ = [
    "BASE_PRICERS",
    "CompliantPricer",
    "DevicePricer",
    "LoyaltyPricer",
    "NewCustomerDiscount",
    "PersonalisedPricer",
    "UniformPricer",
]


class UniformPricer(BasePricer):
    """Price = cost x (1 + markup), the same for every customer.

    Parameters
    ----------
    markup : float or None
        Markup over unit cost; None charges the list price.
    """

    def __init__(self, markup: float | None = None):
        self.markup = markup

    def quote(self, user_idx, product_idx, view: MarketView):
        """One price per product, whoever asks."""
        if self.markup is None:
            return view.product_list_price[product_idx].astype(np.float32)
        return (view.product_cost[product_idx] * np.float32(1.0 + self.markup)).astype(np.float32)


class PersonalisedPricer(BasePricer):
    """Prices from the platform's willingness-to-pay estimate ``view.quote_wtp_hat``.

    Parameters
    ----------
    segment_by : {"user", "none", "cohort", "device", "loyalty"}
        ``"user"``: first-degree pricing, ``max(cost, capture * wtp_hat)``. Otherwise
        third-degree pricing: each segment pays ``list * m_s``, where ``m_s``
        maximises the expected margin ``(m - cost/list) * share(wtp_hat/list >= m)``
        over the segment's past estimates (the monopoly price of the segment's
        demand curve); ``"none"`` is one segment (uniform monopoly pricing). The
        multipliers searched are :attr:`GRID` (0.02 to 6 times the list price, step 0.01).
    capture : float
        Share of the estimated willingness to pay charged under ``"user"``.
    memory : int
        Past estimates kept per segment.
    """

    SEGMENTS = ("user", "none", "cohort", "device", "loyalty")
    GRID = np.linspace(0.02, 6.0, 600)  # candidate price multipliers of the list price

    def __init__(self, segment_by: str = "user", capture: float = 0.9, memory: int = 50_000):
        if segment_by not in self.SEGMENTS:
            raise ValueError(f"segment_by must be one of {', '.join(self.SEGMENTS)}, not {segment_by!r}")
        self.segment_by = segment_by
        self.capture = capture
        self.memory = memory
        self._ratios: dict[int, np.ndarray] = {}

    def _segment(self, user_idx, view: MarketView) -> np.ndarray:
        if self.segment_by == "cohort":
            return view.user_cohort[user_idx].astype(np.int64)
        if self.segment_by == "device":
            return view.user_device[user_idx].astype(np.int64)
        if self.segment_by == "loyalty":
            return (view.user_lifetime_purchases[user_idx] > 0).astype(np.int64)
        return np.zeros(len(user_idx), dtype=np.int64)

    def _remember(self, seg, ratios):
        for s in np.unique(seg):
            old = self._ratios.get(int(s), np.zeros(0))
            self._ratios[int(s)] = np.concatenate([old, ratios[seg == s]])[
                max(0, old.size + int((seg == s).sum()) - self.memory) :
            ]

    def segment_multiplier(self, ratios: np.ndarray, cost_ratio: float) -> float:
        """Return the margin-maximising multiplier of the list price for one segment's estimates.

        Parameters
        ----------
        ratios : float (n_samples,)
            Past estimates of willingness to pay over list price in the segment.
        cost_ratio : float
            The product's unit cost over its list price.
        """
        return float(self.segment_multipliers(ratios, np.array([cost_ratio]))[0])

    def segment_multipliers(self, ratios: np.ndarray, cost_ratios: np.ndarray) -> np.ndarray:
        """Vector form of :meth:`segment_multiplier`: one multiplier per cost ratio, shape (n_batch,)."""
        srt = np.sort(ratios)
        share = 1.0 - np.searchsorted(srt, self.GRID, side="left") / max(srt.size, 1)
        uniq, inverse = np.unique(np.asarray(cost_ratios, dtype=np.float64), return_inverse=True)
        best = np.argmax((self.GRID[None, :] - uniq[:, None]) * share[None, :], axis=1)
        return self.GRID[best][inverse]

    def quote(self, user_idx, product_idx, view: MarketView):
        """Charge each user (or segment) what the platform estimates it will bear."""
        lp = view.product_list_price[product_idx].astype(np.float64)
        cost = view.product_cost[product_idx].astype(np.float64)
        wtp = np.asarray(view.quote_wtp_hat, dtype=np.float64)
        if self.segment_by == "user":
            return np.maximum(cost, self.capture * wtp).astype(np.float32)
        seg = self._segment(user_idx, view)
        price = np.empty(len(user_idx))
        for s in np.unique(seg):
            pool = self._ratios.get(int(s))
            here = seg == s
            if pool is None or pool.size < 100:  # too little history: learn from this batch
                pool = np.concatenate([pool if pool is not None else np.zeros(0), wtp[here] / lp[here]])
            price[here] = lp[here] * self.segment_multipliers(pool, cost[here] / lp[here])
        return np.maximum(price, cost).astype(np.float32)

    def fit(self, view: MarketView, log: QuoteLog):
        """Remember the tick's willingness-to-pay estimates per segment."""
        if self.segment_by != "user" and log.user_idx.size:
            lp = view.product_list_price[log.product_idx].astype(np.float64)
            self._remember(self._segment(log.user_idx, view), log.wtp_hat / lp)
        return self


class LoyaltyPricer(BasePricer):
    """List price x (1 + uplift x min(1, purchases_stock / full_loyalty)).

    Habitual customers compare prices less, so they can be charged more: the
    pattern consumers report as "big-data price discrimination against
    regulars" (Beijing Consumers Association 2022: 14 of 32 new-vs-old account
    tests differed). ``uplift`` 0.15 sits in the 10-30% cross-user spreads
    Mikians et al. (2013) measured.
    """

    def __init__(self, uplift: float = 0.15, full_loyalty: float = 5.0):
        self.uplift = uplift
        self.full_loyalty = full_loyalty

    def quote(self, user_idx, product_idx, view: MarketView):
        """Charge regulars more."""
        lp = view.product_list_price[product_idx].astype(np.float64)
        loyal = np.minimum(1.0, view.user_purchases_stock[user_idx] / self.full_loyalty)
        return (lp * (1.0 + self.uplift * loyal)).astype(np.float32)


class DevicePricer(BasePricer):
    """List price x (1 + ios_uplift) for iOS users.

    The Fudan University 2021 ride-hailing survey (821 rides) found iPhone users
    about 3x as likely to get pricier options and half the discount; the 2026
    Internet Platform Price Behaviour Rules name device type as a banned basis.
    """

    def __init__(self, ios_uplift: float = 0.10):
        self.ios_uplift = ios_uplift

    def quote(self, user_idx, product_idx, view: MarketView):
        """Charge iOS users more."""
        lp = view.product_list_price[product_idx].astype(np.float64)
        return (lp * (1.0 + self.ios_uplift * view.user_device[user_idx])).astype(np.float32)


class NewCustomerDiscount(BasePricer):
    """List price, less ``discount`` for customers with no purchase yet.

    Parameters
    ----------
    discount : float
    disclosed : bool
        Whether the discount is a disclosed offer (then it is reported as a
        promotion); by default it is not, as in the new-vs-old account tests.
    """

    def __init__(self, discount: float = 0.15, disclosed: bool = False):
        self.discount = discount
        self.disclosed = disclosed

    def quote(self, user_idx, product_idx, view: MarketView):
        """Discount new customers."""
        lp = view.product_list_price[product_idx].astype(np.float64)
        new = view.user_lifetime_purchases[user_idx] == 0
        price = np.where(new, lp * (1.0 - self.discount), lp).astype(np.float32)
        return price, (new & self.disclosed)


class CompliantPricer(BasePricer):
    """List price for everyone; users who opted in to promotions get a disclosed discount."""

    def __init__(self, promo_discount: float = 0.10):
        self.promo_discount = promo_discount

    def quote(self, user_idx, product_idx, view: MarketView):
        """Uniform prices plus disclosed, opt-in promotions."""
        lp = view.product_list_price[product_idx].astype(np.float64)
        promo = view.user_promo_opt_in_mask[user_idx].copy()
        return np.where(promo, lp * (1.0 - self.promo_discount), lp).astype(np.float32), promo


BASE_PRICERS = {
    "uniform": UniformPricer,
    "personalised": PersonalisedPricer,
    "loyalty": LoyaltyPricer,
    "device": DevicePricer,
    "new_customer": NewCustomerDiscount,
    "compliant": CompliantPricer,
}
