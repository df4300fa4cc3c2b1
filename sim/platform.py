"""What the platform sees, and the recommender protocol.

A recommender never receives the world. It receives a :class:`PlatformView`:
content features, the platform's own logs and estimates (``*_hat``), declared
user attributes and the clock. Ground truth (``true_*``) is not in it, and
asking for it raises an error that says so.

Public objects
--------------
PlatformView
    The read-only view passed to every recommender call.
InteractionLog
    One tick of views (the data a recommender learns from in ``fit``).
Recommender
    The protocol: ``fit(view, log) -> self`` and
    ``score(user_idx, cand_idx, view) -> (n_batch, n_cand) float32``;
    optionally ``access(user_idx, view) -> (allowance, prompt_after)`` and
    ``algorithm_card(view) -> {"signals": {name: weight}, "purpose": str, "description": str}``
    (the Art. 16 card; see :class:`Recommender`).
BaseRecommender
    Optional mixin with ``get_params``, a no-op ``fit`` and an unrestricted ``access``.
PluginError
    A plugin broke the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from sim.scenario import ScenarioError

__all__ = ["BaseRecommender", "InteractionLog", "PlatformView", "PluginError", "Recommender"]


class PluginError(ScenarioError):
    """A recommender (built-in or plugin) broke the protocol."""


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class PlatformView:
    """Read-only view of the platform's data for recommenders.

    Attributes
    ----------
    tick, step, day, hour, tick_minutes : int
        Clock; ``step`` is the draw counter of the current sub-step.
    key : int
        The recommender's own random key (use with :func:`sim.rng.uniform`).
    slate_size : int
        Items per slate.
    n_users, n_items : int
    item_embedding : float32 (n_items, D)
        Content features.
    item_category, item_creator, item_birth_tick : int32 (n_items,)
    item_length_minutes : float32 (n_items,)
    item_harmful_mask : bool (n_items,)
        Moderation label: harmful to minors.
    item_views_hat, item_minutes_hat, item_impressions_hat : float32 (n_items,)
        Decayed counts from the platform's logs.
    user_hat : float32 (n_users, D)
        The platform's interest profile of each user.
    user_age : int16 (n_users,)
        Declared age (years).
    user_opt_out_mask : bool (n_users,)
        Personalisation switched off (Art. 17).
    user_minutes_today, user_streak_minutes : float32 (n_users,)
        Today's minutes and the current session's minutes (platform logs).
        ``user_minutes_today`` is a new array each day: read it from the view
        at each call rather than keeping it.
    user_time_left : float32 (n_users,)
        Minutes of the current tick the user has not used yet (the session clock):
        the user's current time is ``tick start + tick_minutes - user_time_left``.
    replaced_item_idx : int32 (n_new,)
        Item slots that received new items since the previous ``fit``.
    """

    _FORBIDDEN = "true_"
    _READERS = "recommenders see only the platform's data (content features, logs and *_hat estimates)"

    def __init__(self, **arrays):
        self._set(**arrays)

    def _set(self, **values):
        """Set attributes (engine only); arrays are stored as read-only views."""
        for name, value in values.items():
            object.__setattr__(self, name, _readonly(value) if isinstance(value, np.ndarray) else value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only (tried to set {name!r})")

    def __getattr__(self, name):
        if name.startswith(self._FORBIDDEN):
            raise AttributeError(f"{name!r} is ground truth; {self._READERS}")
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


@dataclass(frozen=True)
class InteractionLog:
    """One tick of interactions, in the order they happened.

    The per-view arrays are kept only when something reads them: a recommender
    other than the built-ins that learn from per-item totals alone
    (:func:`sim.builtin.recommenders.reads_views`), or an ``on_tick`` observer.
    Otherwise they are ``None`` and only the per-item totals are filled, which
    the engine counts as the views happen (at 10 million users a busy tick has
    ~30 million views: ~0.7 GB of per-view arrays nobody would read).

    Attributes
    ----------
    user_idx : int64 (n_views,) or None
    item_idx : int32 (n_views,) or None
    minutes : float32 (n_views,) or None
        Minutes watched.
    step : int64 (n_views,) or None
        Sub-step draw counter of each view.
    item_impressions : int32 (n_items,)
        How often each item slot was shown in a slate this tick.
    item_views : int64 (n_items,)
        Views of each item slot this tick.
    item_minutes : float64 (n_items,)
        Minutes watched of each item slot this tick, summed in log order (as
        ``np.bincount(item_idx, weights=minutes)``).

    With per-view arrays the totals are always computed from them (so a log
    edited with ``dataclasses.replace`` cannot carry stale totals); without them
    the totals must be given.
    """

    user_idx: np.ndarray | None
    item_idx: np.ndarray | None
    minutes: np.ndarray | None
    step: np.ndarray | None
    item_impressions: np.ndarray
    item_views: np.ndarray | None = None
    item_minutes: np.ndarray | None = None

    def __post_init__(self):
        n_items = self.item_impressions.shape[0]
        if self.item_idx is None:
            if self.item_views is None or self.item_minutes is None:
                raise ValueError("an InteractionLog without per-view arrays needs item_views and item_minutes")
        else:
            object.__setattr__(self, "item_views", np.bincount(self.item_idx, minlength=n_items))
            object.__setattr__(
                self, "item_minutes", np.bincount(self.item_idx, weights=self.minutes, minlength=n_items)
            )

    @property
    def n_views(self) -> int:
        """Views this tick."""
        return int(self.item_views.sum())


@runtime_checkable
class Recommender(Protocol):
    """Scores candidate items for a batch of users; never sees ground truth.

    Settings are constructor keywords; learned state has a trailing ``_``.
    """

    def fit(self, view: PlatformView, log: InteractionLog) -> Recommender:
        """Learn from one tick of interactions; return ``self``."""
        ...

    def score(self, user_idx: np.ndarray, cand_idx: np.ndarray, view: PlatformView) -> np.ndarray:
        """Return float32 scores, shape ``cand_idx.shape`` = (n_batch, n_cand).

        Higher is better; ``-inf`` removes a candidate from the slate.
        ``user_idx`` is int64 (n_batch,); ``cand_idx`` int32 (n_batch, n_cand).
        """
        ...

    # Optional (not part of the runtime check):
    #
    # def algorithm_card(self, view: PlatformView) -> dict | None:
    #     """The algorithm card the platform publishes (Art. 16 of the Provisions: the basic principles,
    #     purposes and main operating mechanisms; DSA Art. 27: the main parameters and their relative
    #     importance). Returns ``{"signals": {name: weight, ...}, "purpose": str, "description": str}``
    #     with names from ``sim.scenario.CARD_SIGNALS`` ("interest_match", "popularity", "engagement",
    #     "recency", "random") and non-negative weights, normalised by the audit to shares. A weight is
    #     the share of the score's variation within a candidate set, in standard deviations, that the
    #     standardised signal moves (``audits/transparency.py`` defines the signals and measures the
    #     weights by probing ``score``); "random" is randomisation and anything the other signals do not
    #     explain. Called at each probe time of an audit, so a card may depend on learned state; None
    #     declares no card. A scenario's ``[recommender.card]`` table replaces it.
    #     """


class BaseRecommender:
    """Optional mixin: parameters from dataclass fields, no-op fit, unrestricted access."""

    def get_params(self) -> dict:
        """Return the constructor settings (dataclass fields not ending in ``_``)."""
        if is_dataclass(self):
            out = {}
            for f in fields(self):
                if f.name.endswith("_") or not f.init:
                    continue
                v = getattr(self, f.name)
                out[f.name] = {"kind": type(v).__name__, **v.get_params()} if hasattr(v, "get_params") else v
            return out
        return {}

    def fit(self, view: PlatformView, log: InteractionLog):
        """Learn nothing; return ``self``."""
        return self

    def access(self, user_idx: np.ndarray, view: PlatformView):
        """Serve everyone without limit: ``(inf, inf)`` for each user.

        Returns
        -------
        allowance : float32 (n_batch,)
            Minutes the platform still serves the user now; ``<= 0`` refuses service.
        prompt_after : float32 (n_batch,)
            Minutes of use after which a rest prompt is shown; ``inf``: never.
        """
        n = user_idx.shape[0]
        return np.full(n, np.inf, dtype=np.float32), np.full(n, np.inf, dtype=np.float32)
