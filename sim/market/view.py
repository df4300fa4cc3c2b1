"""What a pricer sees, and the pricer protocol.

A pricer never receives the world. It receives a :class:`MarketView`: product
costs and list prices, what the platform records about its customers
(purchases, spend on the platform, declared age, device, promotion opt-in), the
platform's estimate of each offer's willingness to pay (``quote_wtp_hat``), and
the clock. Ground truth (``true_*``) is not in it.

Public objects
--------------
MarketView
    The read-only view passed to every pricer call.
QuoteLog
    One tick of quotes and their outcomes (what a pricer learns from in ``fit``).
Pricer
    The protocol: ``fit(view, log) -> self`` and
    ``quote(user_idx, product_idx, view) -> prices`` (float, shape (n_batch,), yuan),
    or ``-> (prices, disclosed_mask)`` where ``disclosed_mask`` (bool, (n_batch,))
    marks prices that include a disclosed, opt-in promotion.
BasePricer
    Optional mixin with ``get_params`` and a no-op ``fit``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sim.platform import PlatformView, PluginError

__all__ = ["BasePricer", "MarketView", "Pricer", "QuoteLog"]


class MarketView(PlatformView):
    """Read-only view of the platform's market data for pricers.

    Attributes (n = n_users, P = n_products)
    ----------------------------------------
    tick, day, hour : int
    key : int
        The pricer's own random key (use with :func:`sim.rng.uniform`).
    n_users, n_products : int
    product_cost, product_list_price, product_commission : float32 (P,)
        Yuan; the commission is a share of the price.
    product_category : int32 (P,)
    product_fraud_hat_mask, product_in_app_mask : bool (P,)
    user_age : int16 (n,)
    user_cohort : int8 (n,)
        0 adult, 1 minor, 2 elderly (declared age).
    user_device : int8 (n,)
        0 Android, 1 iOS.
    user_promo_opt_in_mask : bool (n,)
    user_purchases_stock : float32 (n,)
        Decayed count of the user's purchases on the platform (loyalty).
    user_lifetime_purchases : int32 (n,)
        0 for a new customer.
    user_platform_spend_month : float32 (n,)
        Yuan spent on the platform this month.
    user_hat : float32 (n, D)
        The feed's interest profile of each user.
    quote_wtp_hat : float64 (n_batch,)
        During ``quote``: the platform's estimate of the willingness to pay of
        each (user, product) being quoted (yuan), aligned with the batch.
    """

    _READERS = "pricers see only the platform's records and estimates (quote_wtp_hat, user_purchases_stock, ...)"


@dataclass(frozen=True)
class QuoteLog:
    """The quotes of one tick and what came of them (the platform's own records).

    Attributes (q = quotes in the tick)
    -----------------------------------
    user_idx : int64 (q,)
    product_idx : int32 (q,)
    price : float32 (q,)
    disclosed_mask : bool (q,)
    wtp_hat : float64 (q,)
        The estimate the quote was made with.
    bought_mask : bool (q,)
        Bought on the platform.
    """

    user_idx: np.ndarray
    product_idx: np.ndarray
    price: np.ndarray
    disclosed_mask: np.ndarray
    wtp_hat: np.ndarray
    bought_mask: np.ndarray


@runtime_checkable
class Pricer(Protocol):
    """The pricer protocol (see the module docstring)."""

    def fit(self, view: MarketView, log: QuoteLog) -> Pricer:
        """Learn from one tick of quotes; return self."""
        ...

    def quote(self, user_idx: np.ndarray, product_idx: np.ndarray, view: MarketView):
        """Prices (yuan, float (n_batch,)), optionally with a disclosed-promotion mask."""
        ...


class BasePricer:
    """Convenience base: ``get_params`` from the constructor and a no-op ``fit``."""

    def get_params(self) -> dict:
        """Return the constructor parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self" and hasattr(self, p)}

    def fit(self, view: MarketView, log: QuoteLog):
        """Learn nothing; return self."""
        return self


def checked_quotes(out, n_batch: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate what ``quote`` returned; return (float32 prices, bool disclosed mask).

    Raises
    ------
    PluginError
        Naming the pricer, what was wrong, and the fix.
    """
    disclosed = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise PluginError(
                f"pricer '{label}': quote() returned a tuple of {len(out)}; fix: return prices, "
                "or (prices, disclosed_mask)"
            )
        out, disclosed = out
    if not isinstance(out, np.ndarray):
        raise PluginError(
            f"pricer '{label}': quote() returned {type(out).__name__}, not a numpy array; "
            f"fix: return a float array of prices in yuan, shape ({n_batch},)"
        )
    if out.shape != (n_batch,):
        raise PluginError(
            f"pricer '{label}': quote() returned shape {out.shape}, expected ({n_batch},); fix: one price per (user, product) pair"
        )
    if out.dtype.kind != "f":
        raise PluginError(f"pricer '{label}': quote() returned dtype {out.dtype}; fix: return float prices")
    prices = out.astype(np.float32)
    if n_batch and not np.isfinite(prices).all():
        raise PluginError(f"pricer '{label}': quote() returned NaN or infinite prices; fix: return finite yuan amounts")
    if n_batch and (prices <= 0).any():
        raise PluginError(
            f"pricer '{label}': quote() returned a price <= 0 (min {float(prices.min()):g}); fix: prices must be positive yuan"
        )
    if disclosed is None:
        mask = np.zeros(n_batch, dtype=np.bool_)
    else:
        mask = np.asarray(disclosed)
        if mask.shape != (n_batch,) or mask.dtype != np.bool_:
            raise PluginError(
                f"pricer '{label}': quote()'s disclosed mask has shape {mask.shape} and dtype {mask.dtype}; "
                f"fix: a bool array of shape ({n_batch},)"
            )
    return np.ascontiguousarray(prices), mask.copy()  # copies: the log keeps them, the pricer may reuse its own
