"""Struct-of-arrays state of the consumer market: shoppers and products.

The shoppers are the feed's users (same indices); this module adds their
money and shopping traits. Ground truth the platform cannot see is named
``true_*``; what the platform records itself (purchases, spend on the
platform, the declared device) is plain.

Public objects
--------------
Shoppers
    Per-user shopping traits and counters.
Products
    The product catalogue (fixed for a run).
make_shoppers, make_products
    Generators driven by a :class:`numpy.random.Generator`.
DAYS_PER_MONTH
    Length of a budgeting month (days).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.scenario import COHORTS, MarketSettings, Scenario
from sim.state import _unit_rows

__all__ = ["DAYS_PER_MONTH", "Products", "Shoppers", "make_products", "make_shoppers", "payment_caps"]

DAYS_PER_MONTH = 30  # budgets and minors' monthly payment caps run over 30-day months


@dataclass
class Shoppers:
    """Money and shopping traits of every user.

    Attributes (n = n_users)
    ------------------------
    true_income_month : float32 (n,)
        Monthly disposable income (yuan).
    true_budget_month : float32 (n,)
        What the user means to spend a month (yuan); spending past it is
        "beyond budget" (Art. 8 excessive consumption).
    true_income_factor : float32 (n,)
        Multiplier of willingness to pay from income, ``(income / adult median income) ** elasticity``
        (the same reference for every cohort, so poorer cohorts value goods less in yuan).
    true_price_sensitivity : float32 (n,)
        Slope of the purchase logit per unit of price relative to the list price.
    true_search_base : float32 (n,)
        Probability of comparing prices elsewhere at zero loyalty.
    true_fraud_susceptibility : float32 (n,)
        In [0, 1]; inflates the perceived value of fraudulent offers.
    device : int8 (n,)
        0 Android, 1 iOS: a trait that carries no cost difference.
    promo_opt_in_mask : bool (n,)
        Has opted in to disclosed promotions.
    purchases_stock : float32 (n,)
        Platform purchases, exponentially decayed (half-life ``loyalty_half_life_days``):
        the loyalty that lowers comparison shopping; the platform sees it.
    lifetime_purchases : int32 (n,)
        Purchases on the platform ever (including before the run); 0 = new customer.
    spend_month : float32 (n,)
        Spend this month, on the platform and elsewhere (yuan).
    platform_spend_month : float32 (n,)
        Spend this month on the platform (what payment caps apply to).
    payment_cap, monthly_cap : float32 (n,)
        Payment limits the platform enforces (inf: none).
    """

    true_income_month: np.ndarray
    true_budget_month: np.ndarray
    true_income_factor: np.ndarray
    true_price_sensitivity: np.ndarray
    true_search_base: np.ndarray
    true_fraud_susceptibility: np.ndarray
    device: np.ndarray
    promo_opt_in_mask: np.ndarray
    purchases_stock: np.ndarray
    lifetime_purchases: np.ndarray
    spend_month: np.ndarray
    platform_spend_month: np.ndarray
    payment_cap: np.ndarray
    monthly_cap: np.ndarray


@dataclass
class Products:
    """The product catalogue.

    Attributes (P = n_products, D = interest_dim)
    ---------------------------------------------
    embedding : float32 (P, D)
        Unit taste vector (in the users' interest space).
    category : int32 (P,)
    cost : float32 (P,)
        Unit cost (yuan): what the seller pays to deliver one.
    list_price : float32 (P,)
        The market's reference price (yuan), ``cost * (1 + list_markup)``; also what
        the user pays elsewhere (times ``1 + outside_markup``).
    commission : float32 (P,)
        The platform's share of the price.
    true_fraud_mask : bool (P,)
        Takes the money and delivers nothing (Art. 19 scam).
    fraud_hat_mask : bool (P,)
        Flagged by the platform's fraud detection (recall ``fraud_filter_recall``).
    in_app_mask : bool (P,)
        Virtual goods and tips (the minors' in-app purchases).
    """

    embedding: np.ndarray
    category: np.ndarray
    cost: np.ndarray
    list_price: np.ndarray
    commission: np.ndarray
    true_fraud_mask: np.ndarray
    fraud_hat_mask: np.ndarray
    in_app_mask: np.ndarray

    @property
    def n_products(self) -> int:
        """Number of products."""
        return self.cost.shape[0]


def _beta(rng: np.random.Generator, mean: np.ndarray, kappa: float = 6.0) -> np.ndarray:
    return rng.beta(mean * kappa, (1.0 - mean) * kappa)


def payment_caps(sc: Scenario, cohort: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-payment and monthly payment limits (yuan), inf where none applies.

    Minors get the minors' mode limits when ``recommender.minors_mode`` is set
    (NPPA 2019: under 16 at most 50 a payment and 200 a month; 16-17 100 and 400).
    """
    n = cohort.shape[0]
    pay = np.full(n, np.inf, dtype=np.float32)
    month = np.full(n, np.inf, dtype=np.float32)
    mm = sc.recommender.minors_mode
    if mm is not None:
        under16 = (cohort == 1) & (age < 16)
        under18 = (cohort == 1) & (age >= 16)
        pay[under16], month[under16] = mm.payment_cap_under_16, mm.monthly_cap_under_16
        pay[under18], month[under18] = mm.payment_cap_under_18, mm.monthly_cap_under_18
    return pay, month


def make_shoppers(sc: Scenario, cohort: np.ndarray, age: np.ndarray, rng: np.random.Generator) -> Shoppers:
    """Draw the shopping traits of the users of ``sc`` (cohorts as in the feed)."""
    mk: MarketSettings = sc.market
    n = cohort.shape[0]
    groups = [getattr(mk, c) for c in COHORTS]

    def by_cohort(attr):
        return np.array([getattr(g, attr) for g in groups], dtype=np.float64)[cohort]

    # one stream per trait: changing one trait's distribution (a sweep axis) leaves the others' draws
    # unchanged, so experiments that differ in one setting still share their populations
    names = ("income", "sensitivity", "search", "fraud", "device", "promo", "prior", "new", "stock")
    g = dict(zip(names, (np.random.default_rng(c) for c in rng.bit_generator.seed_seq.spawn(len(names))), strict=True))
    median_income = by_cohort("income_month")
    income = median_income * g["income"].lognormal(0.0, mk.income_sigma, n)
    budget = income * by_cohort("budget_share")
    # willingness to pay rises with income, against one reference (the adult median) for every cohort
    factor = (income / mk.adult.income_month) ** mk.income_elasticity
    sens = by_cohort("price_sensitivity") * g["sensitivity"].lognormal(0.0, 0.3, n)
    search = _beta(g["search"], by_cohort("search_mean"))
    fraud = _beta(g["fraud"], by_cohort("fraud_susceptibility_mean"))
    device = (g["device"].random(n) < mk.ios_share).astype(np.int8)
    promo = g["promo"].random(n) < mk.promo_opt_in_share
    # purchase history before the run: new customers have none, the rest a Poisson count
    prior = g["prior"].poisson(mk.prior_purchases_mean, n) + 1
    prior[g["new"].random(n) < mk.new_customer_share] = 0
    # the decayed stock of that history: spread uniformly over the last half-life
    stock = prior * 0.5 ** g["stock"].random(n)
    pay, month = payment_caps(sc, cohort, age)
    return Shoppers(
        true_income_month=income.astype(np.float32),
        true_budget_month=budget.astype(np.float32),
        true_income_factor=factor.astype(np.float32),
        true_price_sensitivity=sens.astype(np.float32),
        true_search_base=search.astype(np.float32),
        true_fraud_susceptibility=fraud.astype(np.float32),
        device=device,
        promo_opt_in_mask=promo,
        purchases_stock=stock.astype(np.float32),
        lifetime_purchases=prior.astype(np.int32),
        spend_month=np.zeros(n, dtype=np.float32),
        platform_spend_month=np.zeros(n, dtype=np.float32),
        payment_cap=pay,
        monthly_cap=month,
    )


def make_products(sc: Scenario, centroids: np.ndarray, rng: np.random.Generator) -> Products:
    """Draw the product catalogue: costs log-normal, taste vectors near category centroids."""
    mk: MarketSettings = sc.market
    p = mk.n_products
    n_cat, dim = centroids.shape
    category = rng.integers(0, n_cat, size=p).astype(np.int32)
    emb = _unit_rows(centroids[category] + sc.catalogue.category_spread * rng.standard_normal((p, dim)) / np.sqrt(dim))
    cost = mk.cost_median * rng.lognormal(0.0, mk.cost_sigma, p)
    fraud = rng.random(p) < mk.fraud_share
    detected = fraud & (rng.random(p) < mk.fraud_filter_recall)
    in_app = (rng.random(p) < mk.in_app_share) & ~fraud
    commission = np.where(fraud, mk.fraud_commission, mk.commission)
    return Products(
        embedding=emb,
        category=category,
        cost=cost.astype(np.float32),
        list_price=(cost * (1.0 + mk.list_markup)).astype(np.float32),
        commission=commission.astype(np.float32),
        true_fraud_mask=fraud,
        fraud_hat_mask=detected,
        in_app_mask=in_app,
    )
