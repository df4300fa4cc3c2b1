"""The market phase of a tick: occasions, targeting, quotes, purchases, money.

:class:`Market` lives inside :class:`sim.engine.FeedWorld` (same users, same
clock, same key) and runs once per tick after the feed's sub-steps:

1. occasions (kernel ``shop_occasions``): store visits, and sponsored offers in
   proportion to the minutes the user scrolled this tick;
2. targeting: the platform picks one product among ``n_offer_candidates``
   (kernel ``offer_candidates``) by expected revenue, relevance, or at random,
   dropping products its fraud detection flagged;
3. quotes: the pricer quotes, given the platform's estimate of willingness to
   pay (kernels ``offer_values``, ``wtp_estimates``); the reference pricer
   (``audit.counterfactual_pricer``) quotes the same offer too (the shadow
   price the audit compares with: same product, same user, same time);
4. purchases (kernel ``purchase_step``) and the money: what users pay goes to
   the platform (its commission) and the sellers (the rest);
5. learning: both pricers' ``fit`` and the platform's conversion estimates.

Public objects
--------------
Market
    The market state and its phase.
PARAM_NAMES
    Order of the behaviour parameters passed to the kernels.
QUOTE_COLUMNS
    Columns of the quote log (``quotes.parquet``).
"""

from __future__ import annotations

import numpy as np

from sim.kernels import market as K
from sim.market.state import DAYS_PER_MONTH, make_products, make_shoppers
from sim.market.summary import QuoteSummary
from sim.market.view import MarketView, QuoteLog, checked_quotes
from sim.platform import PluginError, _readonly
from sim.registry import make_pricer
from sim.rng import Purpose, hash4, spawn_generators
from sim.scenario import PricerSettings, Scenario

__all__ = ["PARAM_NAMES", "QUOTE_COLUMNS", "Market", "holds_quotes"]

PARAM_NAMES = (
    "value_ratio",
    "wtp_sigma",
    "taste_weight",
    "fraud_appeal",
    "loyalty_scale",
    "over_budget_weight",
    "minor_in_app_appeal",
    "outside_markup",
)

QUOTE_COLUMNS = (
    "tick", "user_idx", "product_idx", "cohort", "device", "promo_opt_in", "purchases_stock",
    "lifetime_purchases", "cost", "list_price", "commission", "fraud", "fraud_hat", "in_app",
    "wtp_hat", "price", "disclosed", "shadow_price", "value_mean", "value", "compared", "outcome",
    "blocked", "paid", "surplus",
)  # fmt: skip

_CONV_PRIOR_OFFERS = 5.0  # pseudo-offers behind the platform's conversion estimate
_CONV_PRIOR_RATE = 0.5  # optimistic prior conversion: untried products get tried


def holds_quotes(scenario: Scenario) -> bool:
    """Whether a run keeps quote rows at all: the whole log, or a day of them for a decision log that logs quotes."""
    dl = scenario.decision_log
    return scenario.market.quote_log or bool(dl.enabled and "quote" in dl.kinds)


class Market:
    """The consumer market of a :class:`sim.engine.FeedWorld`.

    Parameters
    ----------
    scenario : Scenario
        Must have a ``market`` table.
    replication : int
    key : int
        The run's kernel key (shared with the feed: common random numbers).
    users : sim.state.Users
    centroids : float32 (n_categories, D)
    user_hat : float32 (n_users, D)
        The feed's interest profiles (the platform's, used for relevance targeting).
    pricer : object, optional
        A pricer instance to use instead of ``scenario.pricer``.
    definitions : dict, optional
        The auditor's ``loyal_min_purchases`` and ``price_tolerance`` for the quote summary
        (:class:`sim.market.summary.QuoteSummary`; default: its defaults, the catalogue's values).

    The quotes are folded into :attr:`summary` as they happen. The per-quote log is kept
    whole only with ``[market] quote_log = true``; while the decision log (Art. 28) records
    quotes, the quotes since its last write are held until it takes them (:meth:`release_quotes`).
    """

    def __init__(
        self, scenario: Scenario, replication: int, key: int, users, centroids, user_hat, pricer=None, definitions=None
    ):
        sc = self.scenario = scenario
        mk = self.settings = scenario.market
        gens = spawn_generators(sc.seed, ("shoppers", "products"), replication)
        self.key = key
        self.pricer_key = int(hash4(key, 1, 0, Purpose.RECOMMENDER_KEY) >> np.uint64(1))
        self.users = users
        # contiguous: in Users it is a column of the session block, and the market kernel is compiled for 1-D C arrays
        self._self_control = np.ascontiguousarray(users.true_self_control)
        self.shoppers = make_shoppers(sc, users.cohort, users.age, gens["shoppers"])
        self.products = make_products(sc, centroids, gens["products"])
        self.params = np.array([getattr(mk, n) for n in PARAM_NAMES], dtype=np.float64)
        self.pricer = make_pricer(sc.pricer if pricer is None else pricer)
        self.pricer_label = sc.pricer.kind if pricer is None else type(pricer).__name__
        ref_kind = sc.audit.counterfactual_pricer
        try:
            self.reference_pricer = make_pricer(PricerSettings(kind=ref_kind))
        except PluginError as exc:
            raise PluginError(f"audit.counterfactual_pricer (the reference pricer): {exc}") from None
        self.reference_label = ref_kind
        n, p = users.n_users, self.products.n_products
        self.conv_offers = np.zeros((p, 3), dtype=np.float64)
        self.conv_buys = np.zeros((p, 3), dtype=np.float64)
        n_months = -(-sc.clock.days // DAYS_PER_MONTH)
        self.month_spend = np.zeros((n_months, n), dtype=np.float32)
        self.month_platform_spend = np.zeros((n_months, n), dtype=np.float32)
        self.money = dict(user_paid_platform=0.0, platform_revenue=0.0, seller_revenue=0.0, seller_cost=0.0,
                          outside_spend=0.0)  # fmt: skip
        self.summary = QuoteSummary(n, sc.clock.days, sc.ticks_per_day, **(definitions or {}))
        self.keep_log = mk.quote_log
        self._hold = holds_quotes(sc)
        # held quotes: one growing array per column (capacity doubles; the first _log_n rows are in use), so
        # the log is contiguous from the start and never joined (per-tick chunks would be copied at the end)
        self._log: dict[str, np.ndarray] = {}
        self._log_n = 0
        self._n_quotes = 0  # quotes made so far
        self._log_start = 0  # row (in log order) of the first quote held in self._log
        s, pr = self.shoppers, self.products
        self.view = MarketView(
            tick=0, day=0, hour=0, key=self.pricer_key, n_users=n, n_products=p,
            product_cost=pr.cost, product_list_price=pr.list_price, product_commission=pr.commission,
            product_category=pr.category, product_fraud_hat_mask=pr.fraud_hat_mask,
            product_in_app_mask=pr.in_app_mask, user_age=users.age, user_cohort=users.cohort,
            user_device=s.device, user_promo_opt_in_mask=s.promo_opt_in_mask,
            user_purchases_stock=s.purchases_stock, user_lifetime_purchases=s.lifetime_purchases,
            user_platform_spend_month=s.platform_spend_month, user_hat=user_hat,
            quote_wtp_hat=np.zeros(0),
        )  # fmt: skip

    # -- targeting ----------------------------------------------------------------------
    def _target(self, occ_user: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """Pick one product per occasion from its candidates; -1 where all are filtered."""
        mk, pr = self.settings, self.products
        if mk.targeting == "revenue":
            cohort = self.users.cohort[occ_user].astype(np.int64)[:, None]
            conv = (self.conv_buys[cand, cohort] + _CONV_PRIOR_OFFERS * _CONV_PRIOR_RATE) / (
                self.conv_offers[cand, cohort] + _CONV_PRIOR_OFFERS
            )
            score = conv * pr.commission[cand] * pr.list_price[cand]
        elif mk.targeting == "relevance":
            score = np.einsum("nd,nkd->nk", self.view.user_hat[occ_user], pr.embedding[cand]).astype(np.float64)
        else:
            score = np.zeros(cand.shape)
            score[:, 0] = 1.0
        score = np.where(pr.fraud_hat_mask[cand], -np.inf, score)
        best = np.argmax(score, axis=1)
        chosen = cand[np.arange(cand.shape[0]), best]
        return np.where(np.isfinite(score.max(axis=1)), chosen, -1).astype(np.int32)

    def _quote(self, pricer, label, occ_user, product):
        try:
            out = pricer.quote(occ_user, product, self.view)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported as the plugin's
            raise PluginError(f"pricer '{label}': quote() raised {type(exc).__name__}: {exc}") from exc
        return checked_quotes(out, occ_user.shape[0], label)

    def _fit(self, pricer, label, log):
        try:
            pricer.fit(self.view, log)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's failure is reported as the plugin's
            raise PluginError(f"pricer '{label}': fit() raised {type(exc).__name__}: {exc}") from exc

    # -- the phase ----------------------------------------------------------------------
    def step(self, tick: int, ticks_per_day: int, hour: int, feed_minutes: np.ndarray, profiles: np.ndarray) -> None:
        """Run the market phase of one tick (see the module docstring)."""
        mk, u, s, pr = self.settings, self.users, self.shoppers, self.products
        day = tick // ticks_per_day
        self.view._set(tick=tick, day=day, hour=hour)
        mask = np.empty(u.n_users, dtype=np.bool_)
        K.shop_occasions(self.key, tick, hour, u.cohort, u.night_owl_mask, profiles,
                         mk.store_visits_per_day / ticks_per_day, mk.offers_per_feed_minute, feed_minutes, mask)  # fmt: skip
        occ_user = np.flatnonzero(mask).astype(np.int64)
        cand = np.empty((occ_user.size, mk.n_offer_candidates), dtype=np.int32)
        K.offer_candidates(self.key, tick, occ_user, pr.n_products, cand)
        product = self._target(occ_user, cand)
        keep = product >= 0
        occ_user, product = occ_user[keep], product[keep]
        n_occ = occ_user.size

        value_mean = np.empty(n_occ, dtype=np.float64)
        K.offer_values(occ_user, product, u.true_interest, s.true_income_factor, u.cohort, pr.embedding,
                       pr.list_price, pr.in_app_mask, self.params, value_mean)  # fmt: skip
        wtp_hat = np.empty(n_occ, dtype=np.float64)
        K.wtp_estimates(self.key, tick, occ_user, value_mean, mk.wtp_hat_error, wtp_hat)
        self.view._set(quote_wtp_hat=wtp_hat)
        user_ro, product_ro = occ_user.view(), product.view()
        user_ro.flags.writeable = False
        product_ro.flags.writeable = False
        stock_before = s.purchases_stock[occ_user].copy()
        lifetime_before = s.lifetime_purchases[occ_user].copy()
        price, disclosed = self._quote(self.pricer, self.pricer_label, user_ro, product_ro)
        shadow, _ = self._quote(self.reference_pricer, self.reference_label, user_ro, product_ro)

        outcome = np.empty(n_occ, dtype=np.int8)
        compared = np.empty(n_occ, dtype=np.bool_)
        blocked = np.empty(n_occ, dtype=np.bool_)
        paid = np.empty(n_occ, dtype=np.float32)
        value = np.empty(n_occ, dtype=np.float64)
        surplus = np.empty(n_occ, dtype=np.float64)
        progress = ((day % DAYS_PER_MONTH) + 1) / DAYS_PER_MONTH
        K.purchase_step(
            self.key, tick, occ_user, product, price, value_mean, progress, self.params,
            pr.list_price, pr.true_fraud_mask, s.true_price_sensitivity, s.true_search_base,
            s.true_fraud_susceptibility, self._self_control, s.true_budget_month, s.payment_cap, s.monthly_cap,
            s.purchases_stock, s.lifetime_purchases, s.spend_month, s.platform_spend_month,
            outcome, compared, blocked, paid, value, surplus,
        )  # fmt: skip

        # money: a platform sale splits into commission and the seller's revenue
        bought = outcome == K.OUTCOME_PLATFORM
        paid64 = paid.astype(np.float64)
        com = pr.commission[product].astype(np.float64)
        m = self.money
        m["user_paid_platform"] += float(paid64[bought].sum())
        m["platform_revenue"] += float((paid64 * com)[bought].sum())
        m["seller_revenue"] += float((paid64 * (1.0 - com))[bought].sum())
        m["seller_cost"] += float(pr.cost[product][bought & ~pr.true_fraud_mask[product]].astype(np.float64).sum())
        m["outside_spend"] += float(paid64[outcome == K.OUTCOME_OUTSIDE].sum())

        self.last_sales = (occ_user[bought], product[bought])  # the fleet delivers some of these
        cohort = u.cohort[occ_user].astype(np.int64)
        np.add.at(self.conv_offers, (product, cohort), 1.0)
        np.add.at(self.conv_buys, (product[bought], cohort[bought]), 1.0)

        cols = dict(
            tick=np.full(n_occ, tick, dtype=np.int32), user_idx=occ_user, product_idx=product,
            cohort=u.cohort[occ_user], device=s.device[occ_user], promo_opt_in=s.promo_opt_in_mask[occ_user],
            purchases_stock=stock_before, lifetime_purchases=lifetime_before, cost=pr.cost[product],
            list_price=pr.list_price[product], commission=pr.commission[product],
            fraud=pr.true_fraud_mask[product], fraud_hat=pr.fraud_hat_mask[product],
            in_app=pr.in_app_mask[product], wtp_hat=wtp_hat, price=price, disclosed=disclosed,
            shadow_price=shadow, value_mean=value_mean, value=value, compared=compared, outcome=outcome,
            blocked=blocked, paid=paid, surplus=surplus,
        )  # fmt: skip
        self.summary.fold(cols)
        self._n_quotes += n_occ
        if self._hold:
            self._append(cols)

        # copies: a pricer must not be able to rewrite the recorded log, even by re-enabling writes
        log = QuoteLog(user_idx=_readonly(occ_user.copy()), product_idx=_readonly(product.copy()),
                       price=_readonly(price.copy()), disclosed_mask=_readonly(disclosed.copy()),
                       wtp_hat=_readonly(wtp_hat.copy()), bought_mask=_readonly(bought))  # fmt: skip
        self._fit(self.pricer, self.pricer_label, log)
        self._fit(self.reference_pricer, self.reference_label, log)

    def end_of_day(self, day: int) -> None:
        """Decay loyalty and the conversion estimates; close the month on its last day."""
        s = self.shoppers
        s.purchases_stock *= np.float32(0.5 ** (1.0 / self.settings.loyalty_half_life_days))
        decay = 0.5 ** (1.0 / 7.0)  # the platform's conversion statistics: one-week half-life
        self.conv_offers *= decay
        self.conv_buys *= decay
        month = day // DAYS_PER_MONTH
        self.month_spend[month] = s.spend_month
        self.month_platform_spend[month] = s.platform_spend_month
        if (day + 1) % DAYS_PER_MONTH == 0:
            s.spend_month[:] = 0.0
            s.platform_spend_month[:] = 0.0

    def _append(self, cols: dict[str, np.ndarray]) -> None:
        n_add = next(iter(cols.values())).shape[0]
        end = self._log_n + n_add
        for name, col in cols.items():
            buf = self._log.get(name)
            if buf is None or buf.shape[0] < end:
                grown = np.empty(max(end, 2 * (0 if buf is None else buf.shape[0]), 1024), dtype=col.dtype)
                if buf is not None:
                    grown[: self._log_n] = buf[: self._log_n]
                self._log[name] = buf = grown
            buf[self._log_n : end] = col
        self._log_n = end

    @property
    def n_quotes(self) -> int:
        """Quotes made so far."""
        return self._n_quotes

    def quotes_from(self, start: int, columns=QUOTE_COLUMNS) -> dict[str, np.ndarray]:
        """Return the ``columns`` of the quotes from row ``start`` (0-based, in log order) to the last, as new arrays.

        Raises
        ------
        ValueError
            If rows from ``start`` on are no longer held (released, or never kept).
        """
        if start < self._log_start or (not self._hold and start < self._n_quotes):
            raise ValueError(
                f"quotes from row {start} are not held (held from row {self._log_start}); "
                "fix: set [market] quote_log = true to keep the whole quote log"
            )
        lo = start - self._log_start
        return {name: self._log[name][lo : self._log_n].copy() if name in self._log else np.zeros(0)
                for name in columns}  # fmt: skip

    def release_quotes(self) -> None:
        """Drop the held quotes unless the whole log is kept (the decision log calls this once it wrote them).

        The arrays stay allocated for the next day's quotes.
        """
        if not self.keep_log:
            self._log_n = 0
            self._log_start = self._n_quotes

    def quote_log(self) -> dict[str, np.ndarray] | None:
        """All quotes of the run so far, one read-only array per column of :data:`QUOTE_COLUMNS`; None unless kept.

        The arrays are views of the log itself (no copy: the log is the largest part of a market
        run's memory, ~90 B a quote); later quotes are appended past their end and never show in them.
        """
        if not self.keep_log:
            return None
        out = {}
        for name in QUOTE_COLUMNS:
            view = self._log[name][: self._log_n] if name in self._log else np.zeros(0)
            view.flags.writeable = False
            out[name] = view
        return out
