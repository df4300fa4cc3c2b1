"""Interest tags: what the platform writes into its user models, users deleting tags, and tag attribution.

Art. 10 of the Provisions asks providers to manage user models and tags and not to write illegal or harmful
keywords into interest profiles or use them as tags that drive pushes (Qinglang 2024 item 1 repeats it);
Art. 17 lets users select or delete targeting tags, and a switched-off feature must stop at once
(regulation-map.md rows 10 and 17 (d)).

The platform's tags (:class:`sim.builtin.recommenders.TagTargeting`, ``[recommender.tags]``). Per user it keeps
decayed watched minutes by item category, ``counts`` float32 (n_users, n_categories): after each tick,
``counts <- counts * 0.5 ** (tick_minutes / (1440 * half_life_days)) + minutes watched by category`` from the
tick's :class:`~sim.platform.InteractionLog` (views by accounts that are not simulated users, such as bot
accounts, are left out). A user's tags are their top ``n_tags`` categories, by count, that hold at least
``min_share`` of the user's total; ties go to the lower category index. Decay scales a whole row, so it
changes no user's tags: only users who watched (or deleted a tag) in the tick are re-tagged.

The harmful-tag list (``[tags] harmful_categories``) names categories whose tags must not be written or used
(categories standing for, e.g., gambling or self-harm content). It is a list of categories, not the items'
``harmful_mask`` (a label of single items as harmful to minors, independent of the category in this
catalogue): no category is "mostly harmful" there, so the list is given explicitly. The engine publishes it to
the platform as ``view.harmful_category_mask`` bool (n_categories,).

Deleting tags (``[tags] delete_share``, ``delete_day``, ``delete_hour``). At the start of that tick each user
with at least one tag *shown* to them (the platform's tags minus those it already hid after a deletion) deletes
their top shown tag with probability ``delete_share`` (uniform ``(key, tick, user, Purpose.TAG_DELETE)``). The
requests reach the platform through the view (``view.tag_deletion_user_idx``, ``view.tag_deletion_category``),
published in the ``on_tick`` hook of the tick before, so the platform's ``fit`` of that tick receives them and
a compliant platform uses the tag in no slate of the deletion tick or later.

Attribution (:class:`TagAudit`, an observer). A shown slate item is *driven* by a set of tags when it would not
be in the slate without those tags' boost: after each sub-step, for a panel of users (all users up to
:data:`PANEL_USERS`, else a random panel of that size, the audit's own generator), the full recommender is
re-run on the same candidates with the boost of those tags set to zero and the slate re-selected by the view
kernel's rule (the top ``slate_size`` finite scores, ties to the earlier candidate). The base recommender's
scores are not recomputed (they are replayed from the sub-step's own call: the view has since updated the
platform's profiles), so a re-run without any suppression gives the shown slate bit for bit, and the
attribution is exact for any outer wrapper that is a function of its inner scores (diversity, the
non-personalised option, the hot list, the minors' mode). Each item gets a boost only from the tag of its own
category, so it is driven by at most one tag. Three tag sets are suppressed in turn: the harmful tags the
platform uses, the tag the user deleted (from the deletion on), and the other tags; only rows whose slate
holds an item of a suppressed category are re-run. The base recommender's own profile (``user_hat``) is not a
tag and is outside this measure.

Public objects
--------------
TagAudit
    The observer: deletions, attribution and the profile census of one run.
TagEvidence
    What a run keeps of them (the audit's raw material).
attach_tags
    Build and attach the observer when the platform keeps tags (``[recommender.tags]``).
without_attribution
    The same scenario without the attribution (the audit's counterfactual worlds).
find_targeting, update_tag_counts, select_tags, top_slate_mask, PANEL_USERS
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from sim.rng import Purpose, spawn_generators, uniform_np

__all__ = [
    "PANEL_USERS",
    "TagAudit",
    "TagEvidence",
    "attach_tags",
    "find_targeting",
    "select_tags",
    "add_boost",
    "row_spread",
    "top_slate_mask",
    "update_tag_counts",
    "without_attribution",
]

# Users whose slates are attributed (recaudit choice: the shipped scenarios' whole population; a larger one is
# sampled, and the findings say so). Cost: at most three re-rankings of a panel user's row per sub-step.
PANEL_USERS = 2_000
KINDS = ("harmful", "deleted", "other")  # the tag sets suppressed in turn


# ---- the platform's tags ----------------------------------------------------------------------------------------


def update_tag_counts(counts, user_idx, item_idx, minutes, item_category, decay) -> np.ndarray:
    """Decay the tag counts and add one tick of views, in place.

    Parameters
    ----------
    counts : float32 (n_users, n_categories)
        Decayed watched minutes by category.
    user_idx : int (n_views,)
        Viewers; indices ``>= n_users`` (accounts that are not simulated users) are left out.
    item_idx : int (n_views,)
    minutes : float (n_views,)
        Minutes watched.
    item_category : int32 (n_items,)
    decay : float
        Factor applied to the counts before the tick's views are added.

    Returns
    -------
    int64 (n_touched,)
        Sorted users with at least one view in the tick.
    """
    n_users, n_cat = counts.shape
    counts *= np.float32(decay)
    user_idx = np.asarray(user_idx, dtype=np.int64)
    keep = user_idx < n_users
    u = user_idx[keep]
    if u.size == 0:
        return np.zeros(0, dtype=np.int64)
    cat = np.asarray(item_category)[np.asarray(item_idx)[keep]].astype(np.int64)
    flat = np.bincount(u * n_cat + cat, weights=np.asarray(minutes)[keep], minlength=n_users * n_cat)
    touched = np.unique(u)
    rows = counts[touched]
    rows += flat.reshape(n_users, n_cat)[touched].astype(np.float32)
    counts[touched] = rows
    return touched


def select_tags(counts: np.ndarray, n_tags: int, min_share: float, allowed_mask: np.ndarray | None = None):
    """Return each row's tags: its top ``n_tags`` allowed categories holding at least ``min_share`` of the row.

    Parameters
    ----------
    counts : float (n_rows, n_categories)
        Decayed watched minutes by category.
    n_tags : int
    min_share : float
        Share of the row's total (all categories) a tag must hold.
    allowed_mask : bool (n_rows, n_categories) or (n_categories,), optional
        Categories that may be tags (default: all).

    Returns
    -------
    bool (n_rows, n_categories)
        Ties in count go to the lower category index.
    """
    c = np.asarray(counts, dtype=np.float64)
    n_rows, n_cat = c.shape
    total = c.sum(axis=1, keepdims=True)
    ok = (c > 0) & (c >= min_share * total)
    if allowed_mask is not None:
        ok &= np.broadcast_to(allowed_mask, c.shape)
    key = np.where(ok, c, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")[:, :n_tags]
    out = np.zeros((n_rows, n_cat), dtype=bool)
    rows = np.repeat(np.arange(n_rows), order.shape[1])
    out[rows, order.ravel()] = True
    return out & ok


@numba.njit(cache=True)
def row_spread(inner, out_sd):
    """Write the standard deviation of each row's finite scores (population form; 1 where they do not vary).

    ``inner`` float32 (n_rows, n_cand); ``out_sd`` float32 (n_rows,), in the scores' units.
    """
    for r in range(inner.shape[0]):
        n, total = 0, 0.0
        for j in range(inner.shape[1]):
            x = inner[r, j]
            if np.isfinite(x):
                n += 1
                total += x
        mean = total / max(n, 1)
        ss = 0.0
        for j in range(inner.shape[1]):
            x = inner[r, j]
            if np.isfinite(x):
                ss += (x - mean) ** 2
        sd = np.sqrt(ss / max(n, 1))
        out_sd[r] = sd if sd > 0 else 1.0


@numba.njit(cache=True)
def add_boost(inner, sd, use, item_category, cand_idx, boost, out):
    """``out = inner + boost * sd`` where the candidate's category is a used tag of the row (finite scores only).

    ``inner`` float32 (n_rows, n_cand); ``sd`` float32 (n_rows,); ``use`` bool (n_rows, n_categories);
    ``item_category`` int32 (n_items,); ``cand_idx`` int32 (n_rows, n_cand); ``boost`` float32 (standard
    deviations); ``out`` float32 (n_rows, n_cand).
    """
    for r in range(inner.shape[0]):
        b = boost * sd[r]
        for j in range(inner.shape[1]):
            x = inner[r, j]
            if np.isfinite(x) and use[r, item_category[cand_idx[r, j]]]:
                x = x + b
            out[r, j] = x


def top_slate_mask(scores: np.ndarray, slate_size: int) -> np.ndarray:
    """Which candidates the view kernel puts in the slate: the top ``slate_size`` finite scores, ties to the earlier.

    Parameters
    ----------
    scores : float32 (n_rows, n_cand)

    Returns
    -------
    bool (n_rows, n_cand)
    """
    scores = np.asarray(scores)
    n_rows, n_cand = scores.shape
    if slate_size >= n_cand:
        return scores > -np.inf
    kth = -np.partition(-scores, slate_size - 1, axis=1)[:, slate_size - 1]  # the slate_size-th largest score
    above = scores > kth[:, None]
    tie = scores == kth[:, None]
    room = slate_size - above.sum(axis=1)  # places left for the ties, taken in candidate order
    out = above | (tie & (np.cumsum(tie, axis=1) <= room[:, None]))
    return out & (scores > -np.inf)


def find_targeting(recommender):
    """Return the :class:`~sim.builtin.recommenders.TagTargeting` in a recommender's chain of wrappers, or None."""
    from sim.builtin.recommenders import TagTargeting

    seen, todo = set(), [recommender]
    while todo:
        rec = todo.pop()
        if rec is None or id(rec) in seen:
            continue
        seen.add(id(rec))
        if isinstance(rec, TagTargeting):
            return rec
        todo += [getattr(rec, "inner", None), getattr(rec, "fallback", None)]
    return None


# ---- the audit's observer ---------------------------------------------------------------------------------------


@dataclass
class TagEvidence:
    """What a run keeps of its tags, deletions and attribution (per panel user, and per tick).

    Attributes
    ----------
    n_users : int
        Users of the run.
    panel_idx : int64 (n_panel,)
        Users whose slates were attributed (sorted).
    shown : float64 (n_panel,)
        Slate items shown to the user over the run.
    driven : float64 (3, n_panel)
        Shown items driven by the harmful tags, the deleted tag and the other tags (:data:`KINDS` order).
    shown_after_deletion : float64 (n_panel,)
        Items shown from the user's deletion on (0 for users who deleted nothing).
    deleted_mask : bool (n_panel,)
        The user deleted a tag.
    latency_minutes : float64 (n_panel,)
        Minutes from the deletion to the end of the last tick that showed the user an item driven by the
        deleted tag (0: none); at most the time left in the run.
    harmful_tags_per_day : float64 (n_users,)
        Mean over days (at midnight) of the harmful tags in the user's profile (kept, used or hidden).
    tick_shown, tick_driven : float64 (n_ticks,), (3, n_ticks)
        The panel's shown and driven items per tick.
    tick_shown_deleting : float64 (n_ticks,)
        Items shown per tick to panel users who delete a tag (from the start, for the before/after figure).
    tick_driven_deleting_tag : float64 (n_ticks,)
        Items shown to them driven by the tag they delete (before the deletion: the tag's influence then).
    harmful_categories : tuple of int
    delete_tick : int
        Tick at whose start users delete (-1: no deletions).
    tick_minutes : int
    settings : dict
        The platform's ``[recommender.tags]`` settings.
    """

    n_users: int
    panel_idx: np.ndarray
    shown: np.ndarray
    driven: np.ndarray
    shown_after_deletion: np.ndarray
    deleted_mask: np.ndarray
    latency_minutes: np.ndarray
    harmful_tags_per_day: np.ndarray
    tick_shown: np.ndarray
    tick_driven: np.ndarray
    tick_shown_deleting: np.ndarray
    tick_driven_deleting_tag: np.ndarray
    harmful_categories: tuple
    delete_tick: int
    tick_minutes: int
    settings: dict


class TagAudit:
    """Observer (:mod:`sim.observers`) of a world whose platform keeps tags: deletions, attribution, census.

    Parameters
    ----------
    world : sim.engine.FeedWorld
    targeting : sim.builtin.recommenders.TagTargeting
        The platform's tag targeting, in ``world.recommender``'s chain.
    panel_users : int
        Users attributed at most (:data:`PANEL_USERS`).
    attribute : bool
        Attribute slate items to tags (``on_substep``); without, only deletions and the profile census run.
    """

    def __init__(self, world, targeting, panel_users: int = PANEL_USERS, attribute: bool = True):
        sc = world.scenario
        self.attribute = attribute
        targeting._replayable = attribute  # without attribution nothing replays: no sub-step scores kept
        tg = sc.tags
        n, n_cat = world.users.n_users, sc.catalogue.n_categories
        self.world, self.tw = world, targeting
        self.n_users, self.k = n, sc.recommender.slate_size
        self.harmful = tuple(sorted(tg.harmful_categories)) if tg is not None else ()
        self.harmful_mask = np.zeros(n_cat, dtype=bool)
        self.harmful_mask[list(self.harmful)] = True
        tpd = sc.ticks_per_day
        self.delete_share = tg.delete_share if tg is not None else 0.0
        self.delete_tick = tg.delete_day * tpd + tg.delete_hour * 60 // sc.clock.tick_minutes if tg else -1
        if self.delete_share <= 0:
            self.delete_tick = -1
        if n <= panel_users:
            self.panel_idx = np.arange(n, dtype=np.int64)
        else:
            rng = spawn_generators(sc.seed, ("tag_panel",), world.replication)["tag_panel"]
            self.panel_idx = np.sort(rng.choice(n, size=panel_users, replace=False)).astype(np.int64)
        self.pos = np.full(n, -1, dtype=np.int64)  # position of a user in the panel; -1: not in it
        self.pos[self.panel_idx] = np.arange(self.panel_idx.size)
        m, n_ticks = self.panel_idx.size, world.n_ticks
        self.shown = np.zeros(m)
        self.driven = np.zeros((len(KINDS), m))
        self.shown_after = np.zeros(m)
        self.last_driven_tick = np.full(m, -1, dtype=np.int64)
        self.deleted_cat = np.full(n, -1, dtype=np.int64)  # the tag each user deleted (-1: none); ground truth
        self.will_delete = np.zeros(n, dtype=bool)
        if self.delete_tick >= 0:
            u = uniform_np(world.key, self.delete_tick, np.arange(n, dtype=np.int64), Purpose.TAG_DELETE)
            self.will_delete = u < self.delete_share  # decided now; acted on if they have a shown tag then
        self.harmful_tag_sum = np.zeros(n)
        self.n_days_seen = 0
        self.tick_shown = np.zeros(n_ticks)
        self.tick_driven = np.zeros((len(KINDS), n_ticks))
        self.tick_shown_deleting = np.zeros(n_ticks)
        self.tick_driven_deleting = np.zeros(n_ticks)
        world.view._set(harmful_category_mask=self.harmful_mask, n_categories=n_cat,
                        tag_deletion_user_idx=np.zeros(0, dtype=np.int64),
                        tag_deletion_category=np.zeros(0, dtype=np.int64))  # fmt: skip
        targeting._ensure(world.view)  # the platform's (empty) tag state exists from the first slate

    # -- hooks ------------------------------------------------------------------------------------------------
    def on_tick(self, world, log):
        """Publish this tick's deletion requests (for the platform's ``fit``); the log is unchanged."""
        due = self.delete_tick >= 0 and world.tick == self.delete_tick - 1
        users = np.zeros(0, dtype=np.int64)
        cats = np.zeros(0, dtype=np.int64)
        if due:
            top = self.tw.top_shown_tag(np.arange(self.n_users, dtype=np.int64))
            users = np.flatnonzero(self.will_delete & (top >= 0)).astype(np.int64)
            cats = top[users].astype(np.int64)
            self.deleted_cat[users] = cats
        world.view._set(tag_deletion_user_idx=users, tag_deletion_category=cats)
        return None

    def on_substep(self, world, sub):
        """Attribute the panel's slate items of the sub-step to the tags that drove them."""
        if not self.attribute:
            return
        rows = np.flatnonzero(self.pos[sub.active_idx] >= 0)
        slate = np.asarray(sub.out_slate)[rows]
        n_shown = (slate >= 0).sum(axis=1)
        rows, slate, n_shown = rows[n_shown > 0], slate[n_shown > 0], n_shown[n_shown > 0]
        if rows.size == 0:
            return
        users = np.asarray(sub.active_idx)[rows]
        p, tick = self.pos[users], sub.tick
        self.shown[p] += n_shown
        self.tick_shown[tick] += n_shown.sum()
        after = self.deleted_cat[users] >= 0
        self.shown_after[p[after]] += n_shown[after]
        deleting = self.will_delete[users]
        self.tick_shown_deleting[tick] += n_shown[deleting].sum()
        cand = np.asarray(sub.candidates())[rows]
        shown_in = top_slate_mask(np.asarray(sub.scores)[rows], self.k)  # (n_rows, n_cand): the view kernel's rule
        shown_items = np.where(shown_in, cand, 0).astype(np.int64)
        if not (
            np.array_equal(shown_in.sum(axis=1), n_shown)
            and np.array_equal(shown_items.sum(axis=1), np.maximum(slate, 0).sum(axis=1, dtype=np.int64))
            and np.array_equal((shown_items**2).sum(axis=1), (np.maximum(slate, 0).astype(np.int64) ** 2).sum(axis=1))
        ):
            raise RuntimeError("sim.tags: the shown slates are not the top scores (the view kernel's rule changed?)")
        cand_cat = world.items.category[cand]  # (n_rows, n_cand)
        used = self.tw.used_tags(users)  # (n_rows, n_cat): tags the platform targets with now
        deleted = np.zeros_like(used)
        has = np.flatnonzero(after)
        deleted[has, self.deleted_cat[users[has]]] = True
        drops = {
            "harmful": used & self.harmful_mask[None, :],
            "deleted": used & deleted,
            "other": used & ~self.harmful_mask[None, :] & ~deleted,
        }
        if self.delete_tick >= 0 and tick < self.delete_tick:  # before the deletion: the tag they will delete
            will = np.flatnonzero(deleting)
            if will.size:
                top = self.tw.top_shown_tag(users[will])
                pre = np.zeros_like(used)
                ok = top >= 0
                pre[will[ok], top[ok]] = True
                drops["_pre"] = used & pre
        for kind, drop in drops.items():
            per_row = self._driven(world, users, cand, cand_cat, shown_in, drop)
            if per_row is None:
                continue
            if kind == "_pre":
                self.tick_driven_deleting[tick] += per_row.sum()
                continue
            j = KINDS.index(kind)
            self.driven[j, p] += per_row
            self.tick_driven[j, tick] += per_row.sum()
            if kind == "deleted":
                self.last_driven_tick[p[per_row > 0]] = tick
                self.tick_driven_deleting[tick] += per_row[deleting].sum()

    def _driven(self, world, users, cand, cand_cat, shown_in, drop):
        """Shown items per row that leave the slate when the boosts of ``drop`` are removed: int64 (n_rows,) or None.

        ``users`` int64 (n_rows,) sorted; ``cand`` int32 (n_rows, n_cand); ``cand_cat`` their categories;
        ``shown_in`` bool (n_rows, n_cand) the candidates shown; ``drop`` bool (n_rows, n_categories) the tags
        whose boost is removed. None when no shown item is in a dropped category.
        """
        at_risk = shown_in & np.take_along_axis(drop, cand_cat.astype(np.int64), axis=1)
        need = np.flatnonzero(at_risk.any(axis=1))
        if need.size == 0:
            return None
        from sim.engine import _threads_for  # small batches on one thread, as the engine runs them

        with _threads_for(need.size):
            cf_scores = self.tw.replay(world.recommender, users[need], cand[need], world.view, drop[need])
        out = np.zeros(users.size, dtype=np.int64)
        out[need] = (at_risk[need] & ~top_slate_mask(cf_scores, self.k)).sum(axis=1)
        return out

    def on_day_end(self, world, day):
        """Count the harmful tags in every profile (the run's record takes :meth:`evidence` at the end)."""
        profile = self.tw.used_tags(np.arange(self.n_users, dtype=np.int64))  # hidden tags stay in the profile
        self.harmful_tag_sum += (profile & self.harmful_mask[None, :]).sum(axis=1)
        self.n_days_seen += 1

    def evidence(self) -> TagEvidence:
        """Return the run's evidence so far."""
        w = self.world
        tm = w.scenario.clock.tick_minutes
        p_del = self.deleted_cat[self.panel_idx] >= 0
        latency = np.zeros(self.panel_idx.size)
        hit = p_del & (self.last_driven_tick >= 0)
        latency[hit] = (self.last_driven_tick[hit] + 1 - self.delete_tick) * tm
        st = w.scenario.recommender.tags
        return TagEvidence(
            n_users=self.n_users, panel_idx=self.panel_idx.copy(), shown=self.shown.copy(),
            driven=self.driven.copy(), shown_after_deletion=self.shown_after.copy(), deleted_mask=p_del,
            latency_minutes=latency, harmful_tags_per_day=self.harmful_tag_sum / max(self.n_days_seen, 1),
            tick_shown=self.tick_shown.copy(), tick_driven=self.tick_driven.copy(),
            tick_shown_deleting=self.tick_shown_deleting.copy(),
            tick_driven_deleting_tag=self.tick_driven_deleting.copy(), harmful_categories=self.harmful,
            delete_tick=int(self.delete_tick), tick_minutes=int(tm),
            settings=st.model_dump() if st is not None else {},
        )  # fmt: skip


def attach_tags(world) -> TagAudit | None:
    """Attach a :class:`TagAudit` when the world's platform keeps tags (its recommender has a ``TagTargeting``)."""
    tw = find_targeting(world.recommender)
    if tw is None or world.users.n_users == 0:
        return None
    tg = world.scenario.tags
    obs = TagAudit(world, tw, attribute=tg is None or tg.attribute)
    world.add_observer(obs)
    return obs


def without_attribution(scenario):
    """Return the scenario without the auditor's tag attribution (``tags.attribute = false``; the same run).

    The audit's counterfactual worlds keep the platform's tags and the users' deletions, not the measurement.
    """
    if scenario.recommender.tags is None or (scenario.tags is not None and not scenario.tags.attribute):
        return scenario
    return scenario.with_values({"tags.attribute": False}, source="<counterfactual>", add_tables=True)
