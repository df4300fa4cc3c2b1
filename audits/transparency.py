"""Art. 16 (transparency): whether the algorithm card describes what the recommender does.

Art. 16 of the Provisions asks providers to publish the basic principles, purposes and main operating
mechanisms of their recommendation algorithms; the EU DSA (Art. 27) asks for the "main parameters" and their
"relative importance" (regulation-map.md §1, Art 16 and §7). An *algorithm card* declares the ranking signals a
recommender uses and their relative weights (``[recommender.card]`` in a scenario, or the recommender's own
``algorithm_card(view)``). The audit measures those weights from the recommender's behaviour and compares.

Signals (:data:`sim.scenario.CARD_SIGNALS`), computed by the auditor from the :class:`~sim.platform.PlatformView`
for user ``u`` and candidate item ``i`` at probe time:

- ``interest_match``: ``user_hat[u] . item_embedding[i]`` (the platform's profile against the content);
- ``popularity``: ``item_views_hat[i]`` (decayed views);
- ``engagement``: the log of expected watch minutes per impression from the platform's logs,
  ``log(ctr_hat * watch_hat)`` with ``ctr_hat = (views + k ctr_bar) / (impressions + k)`` and
  ``watch_hat = (minutes + k watch_bar) / (views + k)`` (empirical-Bayes shrinkage toward the catalogue means
  with ``k = 5`` pseudo-views, as the built-in engagement recommender learns it);
- ``recency``: minus the item's age in days;
- ``random``: not a feature: whatever the four do not explain (randomisation, non-linearity, and signals the
  card's vocabulary does not name).

Measurement. At fixed times of each simulated day (:data:`PROBE_MINUTES`), after the recommender has learned
from the tick, the audit draws users (not opted out of personalisation) and uniformly random candidate sets
and asks a copy of the full recommender (wrappers included) for scores. Within each candidate set the
scores and the signals are centred (a fixed effect per set: only the order within a set matters), and the
scores are regressed on the signals by least squares. With ``b_j`` the coefficient of signal ``j``, ``s_j`` its
pooled within-set standard deviation and ``s_e`` that of the residual, the measured weight of signal ``j``
is ``|b_j| s_j / (sum_k |b_k| s_k + s_e)`` and that of ``random`` is ``s_e / (same)``: the share of the
score's variation (in standard-deviation units) each signal moves. A recommender that scores
``sum_j w_j x_j + noise`` has measured weights ``|w_j| sd(x_j)`` and ``sd(noise)``, normalised: the
definition a card's weights follow. The regression is kept as per-user sufficient statistics, so the audit's
bootstrap over users (one replication) and t-interval over replications apply unchanged.

Findings: ``card_weight_distance`` (total variation distance between declared and measured weight vectors),
``undeclared_signal_weight`` (measured weight of each measurable signal the card does not list) and
``measured_signal_weight`` (informational, with the declared weight in the note).

Public objects
--------------
Probe, ProbeWorld, simulate_with_probes, measure_weights, weights_from_stats, normalise_card, declared_card,
signal_features, transparency_estimators, TRANSPARENCY_METRICS, MEASURED_SIGNALS, PROBE_MINUTES,
PROBE_USERS
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sim.platform import PlatformView, PluginError
from sim.rng import spawn_generators
from sim.scenario import CARD_SIGNALS, Scenario

__all__ = [
    "MEASURED_SIGNALS",
    "PROBE_MINUTES",
    "PROBE_USERS",
    "TRANSPARENCY_METRICS",
    "Probe",
    "declared_card",
    "measure_weights",
    "normalise_card",
    "signal_features",
    "simulate_with_probes",
    "transparency_estimators",
    "weights_from_stats",
]

MEASURED_SIGNALS = CARD_SIGNALS[:-1]  # the signals with a feature; "random" is the unexplained rest
N_FEATURES = len(MEASURED_SIGNALS)
# Probe times: minutes after midnight of each simulated day (the lunch and evening use peaks of the activity
# profiles); a tick that starts at one of them is probed after its learning phase.
PROBE_MINUTES = (12 * 60, 20 * 60)
PROBE_USERS = 400  # users drawn per probe (recaudit choice: 800 a day keeps the bootstrap over users stable)
ENGAGEMENT_PRIOR_VIEWS = 5.0  # pseudo-views of the engagement signal's shrinkage (as EngagementMax's default)
TRANSPARENCY_METRICS = ("card_weight_distance", "undeclared_signal_weight", "measured_signal_weight")
_NO_CARD = (
    "the recommender declares no algorithm card (Art. 16); fix: add a [recommender.card] table to the scenario "
    "or an algorithm_card(view) method to the recommender"
)


@dataclass
class Probe:
    """What the probes of one run measured, as per-user sufficient statistics.

    Attributes
    ----------
    user_idx : int64 (n_probed,)
        Users probed at least once (sorted).
    stats : float64 (n_probed, 5, 5)
        Sum over the user's probed candidate sets of ``z z'`` with ``z = (signals..., score)`` centred within
        the set (signals in :data:`MEASURED_SIGNALS` order, the score last).
    dof : float64 (n_probed,)
        Sum over the user's probed sets of (candidates with a finite score - 1).
    declared : float64 (5,) or None
        The card's weights in :data:`CARD_SIGNALS` order, normalised to sum to 1 (averaged over the probe
        times when the recommender computes its card); None without a card.
    card_source : str
        ``"scenario"`` ([recommender.card]), ``"recommender"`` (its ``algorithm_card``) or ``""``.
    card_text : dict
        The card's ``purpose`` and ``description``.
    n_probes : int
        Probe times in the run.
    """

    user_idx: np.ndarray
    stats: np.ndarray
    dof: np.ndarray
    declared: np.ndarray | None
    card_source: str = ""
    card_text: dict = field(default_factory=dict)
    n_probes: int = 0


# ---- cards ---------------------------------------------------------------------------------------------------


def normalise_card(card, where: str = "algorithm card") -> tuple[np.ndarray, dict]:
    """Validate a card and return its weights as shares in :data:`CARD_SIGNALS` order.

    Parameters
    ----------
    card : Mapping or object with ``signals``
        ``{"signals": {name: weight}, "purpose": str, "description": str}`` (a
        :class:`sim.scenario.CardSettings` or a plain mapping).
    where : str
        Who declared it, for error messages.

    Returns
    -------
    weights : float64 (5,)
        Declared weights, normalised to sum to 1.
    text : dict
        ``purpose`` and ``description``.

    Raises
    ------
    PluginError
        Unknown signals, negative or non-finite weights, no positive weight, or not a mapping.
    """
    signals = card.get("signals") if isinstance(card, Mapping) else getattr(card, "signals", None)
    fix = f"fix: return {{'signals': {{name: weight}}}} with names from {', '.join(CARD_SIGNALS)}"
    if not isinstance(signals, Mapping) or not signals:
        raise PluginError(f"{where}: no 'signals' mapping of signal names to weights; {fix}")
    out = np.zeros(len(CARD_SIGNALS))
    for name, w in signals.items():
        if name not in CARD_SIGNALS:
            raise PluginError(f"{where}: unknown signal {name!r}; {fix}")
        try:
            w = float(w)
        except (TypeError, ValueError):
            raise PluginError(f"{where}: weight of {name!r} is {w!r}, not a number; {fix}") from None
        if not np.isfinite(w) or w < 0:
            raise PluginError(f"{where}: weight of {name!r} is {w}; weights must be finite and >= 0")
        out[CARD_SIGNALS.index(name)] = w
    if out.sum() <= 0:
        raise PluginError(f"{where}: every weight is 0; {fix}")
    get = card.get if isinstance(card, Mapping) else lambda k, d="": getattr(card, k, d)
    text = {"purpose": str(get("purpose", "") or ""), "description": str(get("description", "") or "")}
    return out / out.sum(), text


def declared_card(scenario: Scenario, recommender, view: PlatformView):
    """Return ``(weights (5,) or None, text, source)``: the scenario's card, else the recommender's own."""
    if scenario.recommender.card is not None:
        w, text = normalise_card(scenario.recommender.card, "recommender.card")
        return w, text, "scenario"
    fn = getattr(recommender, "algorithm_card", None)
    if not callable(fn):
        return None, {}, ""
    card = fn(view)
    if card is None:
        return None, {}, ""
    w, text = normalise_card(card, f"recommender '{scenario.recommender.kind}': algorithm_card()")
    return w, text, "recommender"


# ---- signals and the regression ---------------------------------------------------------------------------------


def engagement_signal(view: PlatformView, prior_views: float = ENGAGEMENT_PRIOR_VIEWS) -> np.ndarray:
    """Log expected watch minutes per impression of every item from the platform's logs, float64 (n_items,)."""
    v = view.item_views_hat.astype(np.float64)
    m = view.item_minutes_hat.astype(np.float64)
    imp = view.item_impressions_hat.astype(np.float64)
    ctr_bar = (v.sum() + 1.0) / (imp.sum() + 10.0)
    watch_bar = (m.sum() + 1.0) / (v.sum() + 1.0)
    ctr = (v + prior_views * ctr_bar) / (imp + prior_views)
    watch = (m + prior_views * watch_bar) / (v + prior_views)
    return np.log(ctr * watch)


def signal_features(view: PlatformView, user_idx: np.ndarray, cand_idx: np.ndarray) -> np.ndarray:
    """Return the measurable signals of each (user, candidate): float64 (n_batch, n_cand, 4).

    Columns in :data:`MEASURED_SIGNALS` order: ``interest_match`` is dimensionless, ``popularity`` in decayed views, ``engagement`` in log minutes per
    impression, ``recency`` in days (minus the age).
    """
    emb = view.item_embedding[cand_idx].astype(np.float64)  # (n, c, D)
    match = np.einsum("nd,ncd->nc", view.user_hat[user_idx].astype(np.float64), emb)
    pop = view.item_views_hat[cand_idx].astype(np.float64)
    eng = engagement_signal(view)[cand_idx]
    age_days = (view.tick - view.item_birth_tick[cand_idx].astype(np.float64)) * view.tick_minutes / 1440.0
    return np.stack([match, pop, eng, -age_days], axis=-1)


def set_stats(features: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-set sufficient statistics of the within-set regression.

    Parameters
    ----------
    features : float64 (n_sets, n_cand, 4)
    scores : float (n_sets, n_cand)
        ``-inf`` marks a candidate the recommender removed (left out).

    Returns
    -------
    stats : float64 (n_sets, 5, 5)
        ``sum z z'`` over the set's finite candidates, ``z`` = (features, score) centred within the set.
    dof : float64 (n_sets,)
        Finite candidates minus 1 (0 for a set with fewer than 2).
    """
    y = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(y)
    z = np.concatenate([features, np.where(ok, y, 0.0)[..., None]], axis=-1)
    z = np.where(ok[..., None], z, 0.0)
    n_ok = ok.sum(axis=1)
    mean = z.sum(axis=1) / np.maximum(n_ok, 1)[:, None]
    z = np.where(ok[..., None], z - mean[:, None, :], 0.0)
    dof = np.maximum(n_ok - 1, 0).astype(np.float64)
    return np.einsum("nci,ncj->nij", z, z), dof


def weights_from_stats(stats: np.ndarray, dof: float) -> np.ndarray:
    """Measured weights (5,) in :data:`CARD_SIGNALS` order from pooled sufficient statistics.

    Parameters
    ----------
    stats : float64 (5, 5)
        Pooled ``sum z z'`` (:func:`set_stats`).
    dof : float
        Pooled degrees of freedom.

    Returns
    -------
    float64 (5,)
        ``|b_j| s_j / (sum_k |b_k| s_k + s_e)`` for the four signals, then ``s_e / (...)`` for ``random``;
        NaN everywhere when the scores do not vary within sets. A signal that does not vary (e.g. no views
        yet) gets weight 0.
    """
    if dof <= 0:
        return np.full(len(CARD_SIGNALS), np.nan)
    sxx, sxy, syy = stats[:N_FEATURES, :N_FEATURES], stats[:N_FEATURES, N_FEATURES], stats[N_FEATURES, N_FEATURES]
    var = np.diag(sxx) / dof
    keep = var > 1e-12 * max(float(var.max()), 1e-300)
    beta = np.zeros(N_FEATURES)
    if keep.any():
        beta[keep] = np.linalg.lstsq(sxx[np.ix_(keep, keep)], sxy[keep], rcond=None)[0]
    contrib = np.abs(beta) * np.sqrt(np.maximum(var, 0.0))
    resid = max(float(syy - beta @ sxy), 0.0) / dof
    out = np.append(contrib, np.sqrt(resid))
    total = out.sum()
    if not total > 0 or syy <= 0:
        return np.full(len(CARD_SIGNALS), np.nan)
    return out / total


def measure_weights(recommender, view: PlatformView, user_idx: np.ndarray, cand_idx: np.ndarray):
    """Score candidate sets with ``recommender`` and return their per-set statistics (:func:`set_stats`).

    ``user_idx`` int64 (n_sets,), ``cand_idx`` int32 (n_sets, n_cand). Scores must be a float array of the
    candidates' shape with no NaN or ``+inf`` (the feed's own rule); ``-inf`` candidates are left out.
    """
    scores = recommender.score(user_idx, cand_idx, view)
    if not isinstance(scores, np.ndarray) or scores.shape != cand_idx.shape or scores.dtype.kind != "f":
        raise PluginError(
            f"recommender: score() returned {type(scores).__name__} {getattr(scores, 'shape', '')} for a probe of "
            f"shape {cand_idx.shape}; fix: return float32 scores of shape (n_batch, n_cand)"
        )
    if np.isnan(scores).any() or np.isposinf(scores).any():
        raise PluginError("recommender: score() returned NaN or +inf in a probe; fix: return finite scores")
    return set_stats(signal_features(view, user_idx, cand_idx), scores)


# ---- probing a run ----------------------------------------------------------------------------------------------


class ProbeWorld:
    """Probe a :class:`sim.engine.FeedWorld` at :data:`PROBE_MINUTES` of each day as it runs.

    The probes score a deep copy of the world's recommender on the read-only view, draw from their own random
    stream, and change nothing in the world: the run is the same as :func:`sim.engine.simulate`'s.
    """

    def __init__(self, world, n_users: int = PROBE_USERS):
        sc = world.scenario
        self.world = world
        self.n_users = n_users
        self.rng = spawn_generators(sc.seed, ("transparency",), world.replication)["transparency"]
        self.eligible = np.flatnonzero(~np.asarray(world.users.opt_out_mask))
        self.user_rows, self.stats, self.dofs, self.cards = [], [], [], []
        self.card_text, self.card_source = {}, ""

    def due(self) -> bool:
        """Whether the tick just stepped starts at a probe time (and did not end the day)."""
        w = self.world
        tick = w.tick - 1  # the tick just stepped
        return ((tick % w.ticks_per_day) * w.scenario.clock.tick_minutes) in PROBE_MINUTES and w.tick % w.ticks_per_day

    def probe(self) -> None:
        """Draw users and candidate sets, score them and keep the statistics and the card."""
        w = self.world
        view = w.view
        if self.eligible.size == 0:
            return
        n = min(self.n_users, self.eligible.size)
        users = np.sort(self.rng.choice(self.eligible, size=n, replace=False)).astype(np.int64)
        cand = self.rng.integers(0, view.n_items, size=(n, w.scenario.recommender.n_candidates)).astype(np.int32)
        rec = copy.deepcopy(w.recommender)
        stats, dof = measure_weights(rec, view, users, cand)
        self.user_rows.append(users)
        self.stats.append(stats)
        self.dofs.append(dof)
        weights, text, source = declared_card(w.scenario, rec, view)
        if weights is not None:
            self.cards.append(weights)
            self.card_text, self.card_source = text, source

    def result(self) -> Probe:
        """Pool the probes by user."""
        if not self.user_rows:
            z = np.zeros(0, dtype=np.int64)
            return Probe(z, np.zeros((0, N_FEATURES + 1, N_FEATURES + 1)), np.zeros(0), None)
        rows = np.concatenate(self.user_rows)
        user_idx, inv = np.unique(rows, return_inverse=True)
        stats = np.zeros((user_idx.size, N_FEATURES + 1, N_FEATURES + 1))
        dof = np.zeros(user_idx.size)
        np.add.at(stats, inv, np.concatenate(self.stats))
        np.add.at(dof, inv, np.concatenate(self.dofs))
        declared = np.mean(self.cards, axis=0) if self.cards else None
        return Probe(user_idx, stats, dof, declared, self.card_source, self.card_text, len(self.user_rows))


def simulate_with_probes(
    scenario: Scenario, replication: int = 0, recommender=None, pricer=None, dispatcher=None, market_definitions=None
):
    """Run a scenario as :func:`sim.engine.simulate` does, probing the recommender at :data:`PROBE_MINUTES`.

    Returns
    -------
    record : sim.record.RunRecord
        The run (identical to ``simulate``'s).
    probe : Probe
    """
    from sim.engine import FeedWorld
    from sim.memory import check_memory
    from sim.record import RunRecord

    check_memory(scenario)
    started = time.perf_counter()
    world = FeedWorld(scenario, replication=replication, recommender=recommender, pricer=pricer, dispatcher=dispatcher,
                      market_definitions=market_definitions)  # fmt: skip
    probes = ProbeWorld(world)
    while world.tick < world.n_ticks:
        world.step()
        if world.users.n_users and probes.due():
            probes.probe()
    record = RunRecord.from_world(world, wall_seconds=time.perf_counter() - started)
    return record, probes.result()


# ---- findings ---------------------------------------------------------------------------------------------------


def transparency_estimators(probe: Probe | None, n_users: int, estimator) -> dict:
    """Estimators of the Art. 16 lines for one replication, keyed by (metric, cohort).

    Parameters
    ----------
    probe : Probe or None
        None when the run was not probed (no feed users).
    n_users : int
        Users of the run (the masks' length).
    estimator : type
        :class:`audits.metrics.Estimator`.

    Notes
    -----
    Every statistic pools the probed users' sufficient statistics over the user indices it is given (with
    repeats, for the bootstrap), so a resample of users is a resample of their probed candidate sets.
    """
    mask = np.zeros(n_users, dtype=bool)
    pos = np.full(n_users, -1, dtype=np.int64)
    reason = ""
    if probe is None or probe.user_idx.size == 0:
        reason = "the recommender was not probed (no users in the feed)"
    else:
        mask[probe.user_idx] = True
        pos[probe.user_idx] = np.arange(probe.user_idx.size)
    declared = None if probe is None else probe.declared
    if not reason and declared is None:
        reason = _NO_CARD

    def measured(idx: np.ndarray) -> np.ndarray:
        rows = pos[idx]
        return weights_from_stats(probe.stats[rows].sum(axis=0), float(probe.dof[rows].sum()))

    def distance(idx):
        return float(0.5 * np.abs(measured(idx) - declared).sum())

    est = {("card_weight_distance", "all"): estimator(mask, distance, undefined_reason=reason)}
    for j, name in enumerate(CARD_SIGNALS):
        declared_j = None if declared is None else float(declared[j])
        note = "" if declared_j is None else f"declared {declared_j:.3f} ({probe.card_source} card)"
        est[("measured_signal_weight", name)] = estimator(
            mask,
            lambda idx, j=j: float(measured(idx)[j]),
            undefined_reason="" if reason == _NO_CARD else reason,
            note=note,
        )
        if name in MEASURED_SIGNALS:
            listed = declared_j is not None and declared_j > 0

            def undeclared(idx, j=j, listed=listed):
                return 0.0 if listed else float(measured(idx)[j])

            est[("undeclared_signal_weight", name)] = estimator(
                mask, undeclared, undefined_reason=reason, note="declared on the card" if listed else ""
            )
    return est
