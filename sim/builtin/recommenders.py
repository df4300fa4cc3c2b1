"""Built-in feed recommenders and the regulatory wrappers.

Base recommenders
-----------------
RandomRecommender, Chronological, Popularity, ContentBased, EngagementMax

Wrappers (wrap any recommender)
-------------------------------
DiversityReranker
    MMR re-ranking for de-duplication and diversity (Art. 12).
NonPersonalised
    Opted-out users get a ranking that uses none of their data (Art. 17).
MinorsMode
    Daily caps by age, curfew, rest prompts, harmful-content filter (Art. 18).
HotListFeed
    Hot-listed items take the first positions of the slate (the hot list's way into the feed, Art. 14).
TagTargeting
    Interest tags per user (top watched categories) whose categories get a score boost (Art. 10 and 17).

All scoring runs in numba kernels (:mod:`sim.kernels.scoring`).

Every built-in declares a truthful algorithm card (Art. 16), ``algorithm_card(view)``: the signals its score
uses and their relative weights as ``audits/transparency.py`` defines and measures them (the share of the
score's within-set variation, in standard-deviation units, each standardised signal moves). Wrappers declare
their inner recommender's card.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.kernels import scoring
from sim.platform import BaseRecommender, InteractionLog, PlatformView

__all__ = [
    "BASE_RECOMMENDERS",
    "Chronological",
    "ContentBased",
    "DiversityReranker",
    "EngagementMax",
    "HotListFeed",
    "MinorsMode",
    "NonPersonalised",
    "Popularity",
    "RandomRecommender",
    "TagTargeting",
    "reads_views",
]


_NO_BIAS = np.zeros(0, dtype=np.float32)


def runs_fused(recommender) -> bool:
    """Whether the engine computes this recommender's ranking inside the view kernel.

    True for the built-in content-based and engagement recommenders themselves
    (not wrapped, not subclassed): their ``score`` is known to equal the kernel's
    profile-match ranking (``_profile_ranking``), bit for bit (tests/test_fused.py).
    """
    return type(recommender) in (ContentBased, EngagementMax)


def _out(cand_idx: np.ndarray) -> np.ndarray:
    return np.empty(cand_idx.shape, dtype=np.float32)


def _card(signals: dict, purpose: str, description: str) -> dict:
    """Build an algorithm card (Art. 16): declared signal weights and plain-language text."""
    return {"signals": signals, "purpose": purpose, "description": description}


@dataclass
class RandomRecommender(BaseRecommender):
    """Uniformly random order (keyed on the run's recommender stream)."""

    def score(self, user_idx, cand_idx, view: PlatformView):
        """Uniform scores in [0, 1)."""
        out = _out(cand_idx)
        scoring.random_scores(view.key, view.step, user_idx, out)
        return out

    def algorithm_card(self, view: PlatformView) -> dict:
        """Art. 16 card: the order is random."""
        return _card({"random": 1.0}, "show items in random order", "Candidates are ordered at random.")


@dataclass
class Chronological(BaseRecommender):
    """Newest first; non-personalised."""

    def score(self, user_idx, cand_idx, view: PlatformView):
        """Score = the item's arrival tick."""
        out = _out(cand_idx)
        scoring.gather_scores(view.item_birth_tick.astype(np.float32), cand_idx, out)
        return out

    def algorithm_card(self, view: PlatformView) -> dict:
        """Art. 16 card: newest first, nothing else."""
        return _card({"recency": 1.0}, "show the newest items first", "Candidates are ordered by upload time.")


@dataclass
class Popularity(BaseRecommender):
    """Most watched first (exponentially decayed view counts); non-personalised."""

    def score(self, user_idx, cand_idx, view: PlatformView):
        """Score = decayed view count of the item."""
        out = _out(cand_idx)
        scoring.gather_scores(view.item_views_hat, cand_idx, out)
        return out

    def algorithm_card(self, view: PlatformView) -> dict:
        """Art. 16 card: most watched first, nothing else."""
        return _card({"popularity": 1.0}, "show what most people watch",
                     "Candidates are ordered by their recent views (decayed counts).")  # fmt: skip


@dataclass
class ContentBased(BaseRecommender):
    """Similarity of the platform's user profile to the item's content (``user_hat . emb``)."""

    def score(self, user_idx, cand_idx, view: PlatformView):
        """Score = dot product of profile and content embedding."""
        out = _out(cand_idx)
        scoring.dot_scores(view.user_hat, user_idx, view.item_embedding, cand_idx, out)
        return out

    def _profile_ranking(self, view: PlatformView):
        """``score`` as (item bias, sharpness, exploration) for the engine's fused kernel."""
        return _NO_BIAS, 1.0, 0.0

    def algorithm_card(self, view: PlatformView) -> dict:
        """Art. 16 card: the match of the user's profile with the content, nothing else."""
        return _card({"interest_match": 1.0}, "show content that matches the user's interests",
                     "Candidates are ordered by the similarity of their content to the profile the platform "
                     "has learned from the user's views.")  # fmt: skip


@dataclass
class EngagementMax(BaseRecommender):
    """Maximise predicted watch time per impression, learned from the logs.

    Learns per item a click-through rate and mean minutes per view (hook
    included, since bait raises both), combines them with the profile match,
    and explores with probability ``exploration`` per user and step.

    Parameters
    ----------
    exploration : float
        Epsilon of epsilon-greedy exploration.
    sharpness : float
        Weight of the profile match in the exponent.
    half_life_days : float
        Forgetting of the learned item statistics.
    prior_views : float
        Pseudo-counts shrinking new items toward the catalogue mean.
    """

    exploration: float = 0.05
    sharpness: float = 4.0
    half_life_days: float = 2.0
    prior_views: float = 5.0
    views_: np.ndarray | None = field(default=None, init=False, repr=False)
    minutes_: np.ndarray | None = field(default=None, init=False, repr=False)
    impressions_: np.ndarray | None = field(default=None, init=False, repr=False)
    last_tick_: int = field(default=-1, init=False, repr=False)
    log_value_: np.ndarray | None = field(default=None, init=False, repr=False)

    def _ensure(self, n_items: int):
        if self.views_ is None or self.views_.shape[0] != n_items:
            self.views_ = np.zeros(n_items, dtype=np.float64)
            self.minutes_ = np.zeros(n_items, dtype=np.float64)
            self.impressions_ = np.zeros(n_items, dtype=np.float64)

    def fit(self, view: PlatformView, log: InteractionLog):
        """Decay and update the per-item counts with one tick of views."""
        self._ensure(view.n_items)
        if self.last_tick_ >= 0:
            d = 0.5 ** ((view.tick - self.last_tick_) * view.tick_minutes / (1440.0 * self.half_life_days))
            self.views_ *= d
            self.minutes_ *= d
            self.impressions_ *= d
        self.last_tick_ = view.tick
        new = view.replaced_item_idx
        self.views_[new] = 0.0
        self.minutes_[new] = 0.0
        self.impressions_[new] = 0.0
        self.views_ += log.item_views
        self.minutes_ += log.item_minutes
        self.impressions_ += log.item_impressions
        self.log_value_ = self._estimates(view.n_items)
        return self

    def _estimates(self, n_items: int):
        self._ensure(n_items)
        v, m, imp = self.views_, self.minutes_, self.impressions_
        k = self.prior_views
        ctr_mean = (v.sum() + 1.0) / (imp.sum() + 10.0)
        watch_mean = (m.sum() + 1.0) / (v.sum() + 1.0)
        ctr = (v + k * ctr_mean) / (imp + k)
        watch = (m + k * watch_mean) / (v + k)
        return np.log(watch * ctr).astype(np.float32)

    def _profile_ranking(self, view: PlatformView):
        """``score`` as (item bias, sharpness, exploration) for the engine's fused kernel."""
        log_value = self.log_value_ if self.log_value_ is not None else self._estimates(view.n_items)
        return log_value, float(self.sharpness), float(self.exploration)

    def score(self, user_idx, cand_idx, view: PlatformView):
        """Score = log(CTR-hat x minutes-per-view-hat) + sharpness x profile match."""
        log_value = self.log_value_ if self.log_value_ is not None else self._estimates(view.n_items)
        out = _out(cand_idx)
        scoring.engagement_scores(
            view.key, view.step, view.user_hat, user_idx, view.item_embedding, cand_idx,
            log_value, self.sharpness, self.exploration, out,
        )  # fmt: skip
        return out

    def algorithm_card(self, view: PlatformView) -> dict:
        """Art. 16 card: the weights of predicted engagement, profile match and exploration, from the model.

        The score is ``e_i + sharpness * m_ui`` in a share ``1 - exploration`` of rows and uniform noise on
        [0, 1) (variance 1/12) in the rest. On the audit's definition (least squares of scores on the
        signals within candidate sets drawn uniformly from the catalogue) the coefficients are
        ``(1 - exploration)`` times ``(1, sharpness)`` and the residual variance is
        ``exploration * (1 - exploration) * v + exploration / 12``, with ``v`` the variance of the
        non-exploring score; the weights are the coefficients times the signals' within-set standard
        deviations (of the learned log-engagement over the catalogue, and of the profile match:
        ``mean_u user_hat_u' C user_hat_u`` with ``C`` the covariance of the item embeddings), and the
        residual standard deviation, normalised by the audit.
        """
        log_value = self.log_value_ if self.log_value_ is not None else self._estimates(view.n_items)
        sd_eng = float(np.std(log_value))
        emb = np.asarray(view.item_embedding, dtype=np.float64)
        cov = np.cov(emb, rowvar=False)
        step = max(1, view.n_users // 10_000)  # a stride sample of profiles bounds the cost
        users = np.asarray(view.user_hat[::step], dtype=np.float64)
        sd_match = float(np.sqrt(max(np.einsum("nd,de,ne->n", users, cov, users).mean(), 0.0)))
        eps = float(self.exploration)
        a_eng, a_match = sd_eng, self.sharpness * sd_match
        noise = np.sqrt(eps * (1.0 - eps) * (a_eng**2 + a_match**2) + eps / 12.0)
        return _card(
            {"engagement": (1.0 - eps) * a_eng, "interest_match": (1.0 - eps) * a_match, "random": float(noise)},
            "maximise expected watch time per impression",
            f"Candidates are ordered by predicted watch minutes per impression (learned from views, with a "
            f"{self.half_life_days:g}-day half-life) times exp({self.sharpness:g} x the profile match); a share "
            f"{eps:g} of feeds is ordered at random to explore.",
        )


BASE_RECOMMENDERS = {
    "random": RandomRecommender,
    "chronological": Chronological,
    "popularity": Popularity,
    "content": ContentBased,
    "engagement": EngagementMax,
}


@dataclass
class _Wrapper(BaseRecommender):
    inner: object = None

    def fit(self, view, log):
        """Fit the wrapped recommender."""
        self.inner.fit(view, log)
        return self

    def access(self, user_idx, view):
        """Pass the wrapped recommender's access through."""
        return _access(self.inner, user_idx, view)

    def algorithm_card(self, view):
        """Return the wrapped recommender's Art. 16 card (None when it declares none)."""
        fn = getattr(self.inner, "algorithm_card", None)
        return fn(view) if callable(fn) else None


def _access(rec, user_idx, view):
    if hasattr(rec, "access"):
        return rec.access(user_idx, view)
    n = user_idx.shape[0]
    return np.full(n, np.inf, dtype=np.float32), np.full(n, np.inf, dtype=np.float32)


@dataclass
class DiversityReranker(_Wrapper):
    """Re-rank the wrapped recommender's scores by maximal marginal relevance (Art. 12).

    Parameters
    ----------
    inner : Recommender
    relevance_weight : float
        MMR lambda: 1 keeps the inner order, 0 maximises diversity.
    """

    relevance_weight: float = 0.7

    def score(self, user_idx, cand_idx, view):
        """Scores whose top ``slate_size`` are the MMR selection, in order."""
        base = np.asarray(self.inner.score(user_idx, cand_idx, view), dtype=np.float32)
        out = _out(cand_idx)
        scoring.mmr_rerank(base, cand_idx, view.item_embedding, self.relevance_weight, view.slate_size, out)
        return out


@dataclass
class NonPersonalised(_Wrapper):
    """Opted-out users (Art. 17) get ``fallback``'s non-personal ranking; others ``inner``'s.

    The fallback must itself be non-personalised (popularity, chronological or
    random): it reads no data of the user.
    """

    fallback: object = field(default_factory=Popularity)

    def fit(self, view, log):
        """Fit both the wrapped and the fallback recommender."""
        self.inner.fit(view, log)
        self.fallback.fit(view, log)
        return self

    def score(self, user_idx, cand_idx, view):
        """Inner scores, with opted-out users' rows from the fallback."""
        opt = view.user_opt_out_mask[user_idx]
        if not opt.any():
            return self.inner.score(user_idx, cand_idx, view)
        out = np.empty(cand_idx.shape, dtype=np.float32)
        keep = ~opt
        if keep.any():
            out[keep] = self.inner.score(user_idx[keep], cand_idx[keep], view)
        out[opt] = self.fallback.score(user_idx[opt], cand_idx[opt], view)
        return out


@dataclass
class MinorsMode(_Wrapper):
    """The minors' mode of Art. 18, for users whose declared age is under 18.

    Defaults from the CAC minors'-mode guideline (final Nov 2024; the under-8
    band from its Aug 2023 draft): daily caps 40 / 60 / 120 minutes for ages
    under 8 / 8-15 / 16-17, no service 22:00-06:00, a rest prompt after 30
    minutes of continuous use, and no content labelled harmful to minors.
    """

    cap_under_8_minutes: float = 40.0
    cap_under_16_minutes: float = 60.0
    cap_under_18_minutes: float = 120.0
    curfew_start_hour: int = 22
    curfew_end_hour: int = 6
    rest_prompt_after_minutes: float = 30.0
    filter_harmful: bool = True

    def cap_minutes(self, age: np.ndarray) -> np.ndarray:
        """Daily cap (minutes) for each age; ``inf`` for adults."""
        age = np.asarray(age)
        cap = np.full(age.shape, np.inf, dtype=np.float32)
        cap[age < 18] = self.cap_under_18_minutes
        cap[age < 16] = self.cap_under_16_minutes
        cap[age < 8] = self.cap_under_8_minutes
        return cap

    def in_curfew(self, hour: int) -> bool:
        """Whether ``hour`` is inside the no-service window."""
        s, e = self.curfew_start_hour, self.curfew_end_hour
        return (hour >= s or hour < e) if s > e else (s <= hour < e)

    def score(self, user_idx, cand_idx, view):
        """Inner scores, with harmful items removed for minors."""
        out = np.array(self.inner.score(user_idx, cand_idx, view), dtype=np.float32)
        if self.filter_harmful:
            minor = view.user_age[user_idx] < 18
            if minor.any():
                bad = view.item_harmful_mask[cand_idx] & minor[:, None]
                out[bad] = -np.inf
        return out

    def access(self, user_idx, view):
        """Minors: allowance = cap - minutes today (0 in the curfew); prompt every 30 min."""
        allowance, prompt_after = _access(self.inner, user_idx, view)
        allowance = np.array(allowance, dtype=np.float32)
        prompt_after = np.array(prompt_after, dtype=np.float32)
        minor = view.user_age[user_idx] < 18
        if minor.any():
            left = self.cap_minutes(view.user_age[user_idx]) - view.user_minutes_today[user_idx]
            if self.in_curfew(view.hour):
                left[:] = 0.0
            else:  # no view may run into the curfew: serve at most the minutes left until it starts
                tick_start = (view.tick * view.tick_minutes) % 1440
                now = tick_start + view.tick_minutes - np.maximum(view.user_time_left[user_idx], 0.0)
                to_curfew = (self.curfew_start_hour * 60 - now) % 1440
                left = np.minimum(left, to_curfew)
            allowance = np.where(minor, np.minimum(allowance, left), allowance).astype(np.float32)
            prompt_after = np.where(
                minor, np.minimum(prompt_after, self.rest_prompt_after_minutes), prompt_after
            ).astype(np.float32)
        return allowance, prompt_after


@dataclass
class HotListFeed(_Wrapper):
    """The platform's hot list in the feed (Art. 14): hot-listed candidates take the top slate positions.

    The hot list itself (:class:`sim.hotlist.HotList`, ``[recommender.hot_list]``) is computed by the
    platform after every tick from the interactions it counted and published in the view as
    ``view.hot_list_idx`` (int32 item slots, best first). In a user's candidate set, the hot-listed
    items, best hot-list rank first, take the first ``slots`` positions of the slate (a "hot" badge
    slot); the rest of the slate is the wrapped recommender's. Retrieval stays the engine's, so a hot
    item reaches a user when it is among the user's candidates. Items the wrapped recommender removed
    (``-inf``) stay removed.

    Parameters
    ----------
    inner : Recommender
    slots : int
        Slate positions the hot list may take in each slate.
    """

    slots: int = 1

    def score(self, user_idx, cand_idx, view):
        """Inner scores, with up to ``slots`` hot-listed candidates per row raised above all others."""
        out = np.array(self.inner.score(user_idx, cand_idx, view), dtype=np.float32)
        hot = getattr(view, "hot_list_idx", None)  # published by the platform (sim.hotlist)
        if hot is None or hot.size == 0 or self.slots <= 0 or out.size == 0:
            return out
        rank_of = np.full(view.n_items, hot.size, dtype=np.int32)  # hot-list rank of each item; size: not listed
        rank_of[hot] = np.arange(hot.size, dtype=np.int32)
        key = np.where(np.isfinite(out), rank_of[cand_idx], hot.size)  # (n_batch, n_cand)
        rows = np.flatnonzero((key < hot.size).any(axis=1))
        if rows.size == 0:
            return out
        k = min(self.slots, cand_idx.shape[1])
        best = np.argsort(key[rows], axis=1, kind="stable")[:, :k]  # the k best hot ranks of each row
        chosen = np.take_along_axis(key[rows], best, axis=1) < hot.size
        finite = np.where(np.isfinite(out[rows]), out[rows], -np.inf)
        top = np.max(finite, axis=1, keepdims=True).astype(np.float64)
        # above the row's best score, in hot-list order: steps of 1e-3 relative, resolved in float32
        step = np.maximum(1.0, np.abs(top)) * 1e-3
        raised = (top + step * (k - np.arange(k))[None, :]).astype(np.float32)
        sub = out[rows]
        r_idx, c_idx = np.nonzero(chosen)
        sub[r_idx, best[r_idx, c_idx]] = raised[r_idx, c_idx]
        out[rows] = sub
        return out

    def algorithm_card(self, view):
        """Return the wrapped recommender's Art. 16 card, its description saying that hot-listed items come first."""
        card = super().algorithm_card(view)
        if card is None:
            return None
        text = (f" Up to {self.slots} hot-listed item(s) among the candidates are shown first, in hot-list order "
                "(the hot list: the most viewed items of the last hours).")  # fmt: skip
        return {**card, "description": str(card.get("description", "")) + text}


@dataclass
class TagTargeting(_Wrapper):
    """Interest tags per user and a score boost for candidates in the user's tagged categories (Art. 10, 17).

    The platform keeps decayed watched minutes by category per user (``counts_`` float32 (n_users,
    n_categories), half-life ``half_life_days``), learned in ``fit`` from the tick's log and
    ``view.item_category``; a user's tags are their top ``n_tags`` categories holding at least ``min_share`` of
    those minutes (:func:`sim.tags.select_tags`). ``score`` adds ``boost`` times the standard deviation of the
    row's finite inner scores (1 when they do not vary) to candidates in a tagged category: the boost is in the
    inner ranking's own units, whatever the base recommender.

    Harmful tags: with ``use_harmful_tags = False`` categories in ``view.harmful_category_mask`` (the
    scenario's harmful-tag list, Art. 10) are never written as tags. Deletions (Art. 17): the requests in
    ``view.tag_deletion_user_idx`` / ``view.tag_deletion_category`` are hidden from the user at once; with
    ``honour_deletion`` the platform stops using the tag ``deletion_delay_days`` later (0: from the next
    slate) and never writes it again for that user; without, it keeps the tag in the profile and goes on
    targeting with it.

    Parameters
    ----------
    inner : Recommender
    boost : float
        Score boost of a tagged category, in standard deviations of the row's inner scores.
    n_tags : int
        Tags per user at most.
    min_share : float
        Share of the user's decayed minutes a category needs to become a tag.
    half_life_days : float
        Half-life of the counts (days).
    use_harmful_tags, honour_deletion : bool
    deletion_delay_days : float
        Days from a deletion request until an honouring platform stops using the tag.
    """

    boost: float = 1.0
    n_tags: int = 3
    min_share: float = 0.1
    half_life_days: float = 3.0
    use_harmful_tags: bool = False
    honour_deletion: bool = True
    deletion_delay_days: float = 0.0
    counts_: np.ndarray | None = field(default=None, init=False, repr=False)
    tags_: np.ndarray | None = field(default=None, init=False, repr=False)
    hidden_: np.ndarray | None = field(default=None, init=False, repr=False)
    blocked_: np.ndarray | None = field(default=None, init=False, repr=False)
    pending_: list = field(default_factory=list, init=False, repr=False)
    _cache: tuple | None = field(default=None, init=False, repr=False)
    _suppress: np.ndarray | None = field(default=None, init=False, repr=False)
    # keep each sub-step's inner scores for replay(); the tag auditor (sim.tags.TagAudit) turns it off without attribution
    _replayable: bool = field(default=True, init=False, repr=False)

    def _ensure(self, view):
        n_cat = int(getattr(view, "n_categories", 0) or (int(view.item_category.max()) + 1))
        if self.counts_ is None or self.counts_.shape != (view.n_users, n_cat):
            shape = (view.n_users, n_cat)
            self.counts_ = np.zeros(shape, dtype=np.float32)
            self.tags_ = np.zeros(shape, dtype=bool)
            self.hidden_ = np.zeros(shape, dtype=bool)
            self.blocked_ = np.zeros(shape, dtype=bool)
        return n_cat

    def _allowed(self, view, user_idx):
        """Categories that may be tags of these users: bool (n_batch, n_categories)."""
        allowed = ~self.blocked_[user_idx]
        harmful = getattr(view, "harmful_category_mask", None)
        if not self.use_harmful_tags and harmful is not None:
            allowed &= ~np.asarray(harmful)[None, :]
        return allowed

    def fit(self, view, log):
        """Fit the wrapped recommender; update the tag counts, apply deletion requests, re-tag touched users."""
        from sim.tags import select_tags, update_tag_counts

        self.inner.fit(view, log)
        self._ensure(view)
        decay = 0.5 ** (view.tick_minutes / (1440.0 * self.half_life_days))
        touched = update_tag_counts(self.counts_, log.user_idx, log.item_idx, log.minutes, view.item_category, decay)
        req_u = np.asarray(getattr(view, "tag_deletion_user_idx", np.zeros(0, dtype=np.int64)), dtype=np.int64)
        req_c = np.asarray(getattr(view, "tag_deletion_category", np.zeros(0, dtype=np.int64)), dtype=np.int64)
        if req_u.size:
            self.hidden_[req_u, req_c] = True  # gone from the user's tag page at once
            if self.honour_deletion:
                delay_ticks = int(round(self.deletion_delay_days * 1440.0 / view.tick_minutes))
                self.pending_.append((view.tick + 1 + delay_ticks, req_u.copy(), req_c.copy()))
        due = [p for p in self.pending_ if p[0] <= view.tick + 1]  # effective from the next tick's first slate
        self.pending_ = [p for p in self.pending_ if p[0] > view.tick + 1]
        for _, u, c in due:
            self.blocked_[u, c] = True
            self.counts_[u, c] = 0.0
            touched = np.union1d(touched, u)
        if touched.size:
            self.tags_[touched] = select_tags(self.counts_[touched], self.n_tags, self.min_share,
                                              self._allowed(view, touched))  # fmt: skip
        return self

    def used_tags(self, user_idx):
        """Tags the platform targets these users with now, hidden ones included: bool (n_batch, n_categories)."""
        return self.tags_[user_idx].copy()

    def top_shown_tag(self, user_idx):
        """Each user's top tag on their tag page (used and not hidden), -1 if none: int64 (n_batch,)."""
        if self.tags_ is None:
            return np.full(np.asarray(user_idx).shape, -1, dtype=np.int64)
        shown = self.tags_[user_idx] & ~self.hidden_[user_idx]
        key = np.where(shown, self.counts_[user_idx].astype(np.float64), -np.inf)
        top = np.argmax(key, axis=1).astype(np.int64)  # ties to the lower category
        return np.where(shown.any(axis=1), top, -1)

    def score(self, user_idx, cand_idx, view):
        """Inner scores plus ``boost`` row standard deviations for candidates in a tagged category."""
        if self._suppress is not None:  # the auditor's replay (sim.tags.TagAudit): this sub-step's inner scores
            step, users, cands, inner, sd = self._cache
            order = np.argsort(users, kind="stable")
            at = np.minimum(np.searchsorted(users[order], user_idx), users.size - 1)
            rows = order[at]
            same = np.array_equal(users[rows], user_idx) and np.array_equal(cands[rows], cand_idx)
            if step != view.step or not same:
                raise RuntimeError("TagTargeting.replay: rows not scored in this sub-step")
            sup_users, sup_rows = self._suppress
            at = np.minimum(np.searchsorted(sup_users, user_idx), sup_users.size - 1)
            sup = np.where((sup_users[at] == user_idx)[:, None], sup_rows[at], False)
            return self._boosted(inner[rows], sd[rows], user_idx, cand_idx, view, sup)
        inner = np.ascontiguousarray(self.inner.score(user_idx, cand_idx, view), dtype=np.float32)
        if self.tags_ is None or self.boost == 0 or inner.size == 0:
            return inner
        from sim.tags import row_spread

        sd = np.empty(inner.shape[0], dtype=np.float32)
        row_spread(inner, sd)
        if self._replayable:  # kept for the auditor's replay of this sub-step
            self._cache = (view.step, np.asarray(user_idx).copy(), np.asarray(cand_idx).copy(), inner, sd)
        return self._boosted(inner, sd, user_idx, cand_idx, view, None)

    def _boosted(self, inner, sd, user_idx, cand_idx, view, suppress):
        from sim.tags import add_boost

        use = self.tags_[user_idx]
        if suppress is not None:
            use &= ~suppress
        out = np.empty(inner.shape, dtype=np.float32)
        add_boost(np.ascontiguousarray(inner), np.ascontiguousarray(sd), use, np.asarray(view.item_category),
                  np.ascontiguousarray(cand_idx, dtype=np.int32), np.float32(self.boost), out)  # fmt: skip
        return out

    def replay(self, recommender, user_idx, cand_idx, view, suppress):
        """Re-run ``recommender`` (the full chain holding this wrapper) on rows scored in this sub-step.

        Parameters
        ----------
        recommender : Recommender
            The full chain holding this wrapper.
        user_idx : int64 (n_batch,)
            Sorted, distinct users scored in this sub-step.
        cand_idx : int32 (n_batch, n_cand)
            Their candidates in this sub-step.
        view : PlatformView
        suppress : bool (n_batch, n_categories)
            Tags whose boost is removed for each row.

        Returns
        -------
        float32 (n_batch, n_cand)
            The chain's scores with those boosts removed; the inner scores are replayed from the sub-step's own
            call, not recomputed.
        """
        if self._cache is None:
            raise RuntimeError("TagTargeting.replay: nothing scored yet")
        self._suppress = (np.asarray(user_idx), np.asarray(suppress, dtype=bool))
        try:
            return np.asarray(recommender.score(user_idx, cand_idx, view), dtype=np.float32)
        finally:
            self._suppress = None

    def algorithm_card(self, view):
        """Return the wrapped recommender's Art. 16 card, its description saying that tagged categories are boosted."""
        card = super().algorithm_card(view)
        if card is None:
            return None
        text = (f" Items in the user's interest tags (up to {self.n_tags} categories holding at least "
                f"{self.min_share:.0%} of their recent watch time) are raised by {self.boost:g} standard deviations "
                "of the score.")  # fmt: skip
        return {**card, "description": str(card.get("description", "")) + text}


_TOTALS_ONLY = (RandomRecommender, Chronological, Popularity, ContentBased, EngagementMax)
_FIT_IS_INNER = (DiversityReranker, MinorsMode, HotListFeed)  # fit() is the wrapped recommender's fit()


def reads_views(recommender) -> bool:
    """Whether ``recommender.fit`` may read the per-view arrays of the :class:`InteractionLog`.

    False only for built-ins (exact types, not subclasses) that learn from the
    per-item totals alone, and for built-in wrappers around them; the engine then
    does not keep the tick's per-view arrays. Any other recommender gets them.
    """
    kind = type(recommender)
    if kind in _TOTALS_ONLY:
        return False
    if kind in _FIT_IS_INNER:
        return reads_views(recommender.inner)
    if kind is NonPersonalised:
        return reads_views(recommender.inner) or reads_views(recommender.fallback)
    return True
