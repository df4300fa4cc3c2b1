"""Art. 10 (user models and tags) and Art. 17 (d) (tag deletion): findings from a run's tag evidence.

Art. 10 of the Provisions: manage user models and tags; do not write illegal or harmful keywords into interest
profiles or use them as tags that drive pushes (Qinglang 2024 item 1 repeats it). Art. 17: users may select or
delete targeting tags, and a switched-off feature stops at once (regulation-map.md rows 10 and 17 (d)). The
evidence is :class:`sim.tags.TagEvidence`, kept by the :class:`sim.tags.TagAudit` observer of the audited run:
each shown slate item of a panel of users is attributed to the tags whose boost put it in the slate (a
counterfactual re-ranking of the same candidates without those tags' boost; see :mod:`sim.tags`).

Findings (``audits/thresholds.toml``):

- ``harmful_tag_driven_share`` (Art. 10, zero rule): shown items that would not be in their slate without the
  boost of a tag on the harmful-tag list, over all shown items (panel users);
- ``harmful_tags_in_profiles`` (Art. 10, zero rule): harmful tags per user in the platform's profiles (mean of
  the midnight counts);
- ``tag_driven_share`` (Art. 10, informational): shown items driven by the other tags (neither harmful nor
  deleted): how much the tags steer the feed at all;
- ``deleted_tag_driven_share`` (Art. 17, zero rule): among users who deleted a tag, the items shown from the
  deletion on that the deleted tag drove, over all items shown to them from then on;
- ``deleted_tag_latency_minutes`` (Art. 17, zero rule): minutes from the deletion to the end of the last tick
  in which the deleted tag drove an item the user was shown (0: none), mean over the users who deleted; a
  platform that never stops is censored at the end of the run (at least this long).

Each is a ratio of sums or a mean over users, so the audit's bootstrap over users (one replication) and
t-interval over replications apply. Without tags in the scenario every line is undefined with the reason, and
with zero users in scope the articles' roll-ups ignore them.

Public objects
--------------
TAG_METRICS, tag_estimators, tags_figure
"""

from __future__ import annotations

import numpy as np

from audits.statistics import ratio_of_sums

__all__ = ["TAG_METRICS", "tag_estimators", "tags_figure"]

TAG_METRICS = (
    "harmful_tag_driven_share",
    "harmful_tags_in_profiles",
    "tag_driven_share",
    "deleted_tag_driven_share",
    "deleted_tag_latency_minutes",
)
_NO_TAGS = "the platform keeps no interest tags in this scenario (no [recommender.tags] table)"
_NO_LIST = "the scenario names no harmful tags ([tags] harmful_categories is empty or absent)"
_NO_DELETION = "no user deletes a tag in this scenario ([tags] delete_share = 0 or absent)"
_NO_ATTRIBUTION = "the run's slates were not attributed to tags ([tags] attribute = false)"


def tag_estimators(evidence, n_users: int, estimator) -> dict:
    """Estimators of the Art. 10 and Art. 17 (d) lines for one replication, keyed by (metric, cohort).

    Parameters
    ----------
    evidence : sim.tags.TagEvidence or None
        None when the platform keeps no tags.
    n_users : int
        Users of the run (the masks' length).
    estimator : type
        :class:`audits.metrics.Estimator`.
    """
    empty = np.zeros(n_users, dtype=bool)
    if evidence is None:
        return {(m, "all" if not m.startswith("deleted") else "deleted_tag"): estimator(empty, _nan, _NO_TAGS)
                for m in TAG_METRICS}  # fmt: skip
    ev = evidence
    attributed = ev.shown.sum() > 0 or ev.tick_shown.sum() > 0
    pos = np.full(n_users, -1, dtype=np.int64)
    pos[ev.panel_idx] = np.arange(ev.panel_idx.size)
    seen = np.zeros(n_users, dtype=bool)
    seen[ev.panel_idx[ev.shown > 0]] = True
    deleting = np.zeros(n_users, dtype=bool)
    deleting[ev.panel_idx[ev.deleted_mask & (ev.shown_after_deletion > 0)]] = True
    sampled = ev.panel_idx.size < ev.n_users
    panel_note = f"a random panel of {ev.panel_idx.size:,} of {ev.n_users:,} users attributed" if sampled else ""
    why = "" if attributed else _NO_ATTRIBUTION

    def by_user(panel_values):  # (panel,) -> (n_users,), 0 outside the panel
        return np.where(pos >= 0, panel_values[np.maximum(pos, 0)], 0)

    def share(j, den):  # items driven by tag set j among those shown, pooled over the users resampled
        return ratio_of_sums(by_user(ev.driven[j]), by_user(den), empty=0.0)

    est = {
        ("harmful_tag_driven_share", "all"): estimator(
            seen, share(0, ev.shown), undefined_reason=why or (_NO_LIST if not ev.harmful_categories else ""),
            note=_join(panel_note, f"harmful-tag list: categories {list(ev.harmful_categories)}")),
        ("tag_driven_share", "all"): estimator(seen, share(2, ev.shown), undefined_reason=why, note=panel_note),
        ("harmful_tags_in_profiles", "all"): estimator(
            np.ones(n_users, dtype=bool), lambda idx: float(ev.harmful_tags_per_day[idx].mean()),
            undefined_reason=_NO_LIST if not ev.harmful_categories else ""),
    }  # fmt: skip
    no_del = _NO_DELETION if ev.delete_tick < 0 else ""
    when = ""
    if ev.delete_tick >= 0:
        tpd = 1440 // ev.tick_minutes
        d, t = divmod(ev.delete_tick, tpd)
        when = f"deletion on day {d + 1} at {t * ev.tick_minutes // 60:02d}:{t * ev.tick_minutes % 60:02d}"
    est[("deleted_tag_driven_share", "deleted_tag")] = estimator(
        deleting, share(1, ev.shown_after_deletion), undefined_reason=why or no_del, note=_join(panel_note, when)
    )
    left = 0.0
    if ev.delete_tick >= 0:
        left = (ev.tick_shown.size - ev.delete_tick) * ev.tick_minutes
    lat = ev.latency_minutes
    censored = bool(np.any(lat >= left)) if left > 0 else False
    est[("deleted_tag_latency_minutes", "deleted_tag")] = estimator(
        deleting, lambda idx: float(lat[pos[idx]].mean()), undefined_reason=why or no_del,
        note=_join(when, f"censored at the end of the run ({left:g} min after the deletion): at least this long"
                   if censored else ""),
    )  # fmt: skip
    return est


def _nan(idx) -> float:
    return float("nan")


def _join(*parts) -> str:
    return "; ".join(p for p in parts if p)


def tags_figure(evidence_list) -> bytes:
    """Art. 10 / 17: share of the panel's shown items driven by each kind of tag, hour by hour.

    Parameters
    ----------
    evidence_list : list of sim.tags.TagEvidence
        The audited runs' evidence (replications); lines are the mean over them.

    Left: harmful tags and the other tags, over all the panel's shown items. Right: for the users who delete a
    tag, the share of their shown items driven by that tag (before the deletion: by their top tag then), with
    the deletion time marked.
    """
    from audits.figures import _figure, _png

    ev0 = evidence_list[0]
    per_hour = max(1, 60 // ev0.tick_minutes)
    n_hours = ev0.tick_shown.size // per_hour

    def hourly(x):
        return x[: n_hours * per_hour].reshape(n_hours, per_hour).sum(axis=1)

    def ratio(num, den):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)

    hours = np.arange(n_hours) / 24.0
    fig, axes = _figure((9.5, 3.6), ncols=2)
    ax = axes[0]
    for j, (label, color) in enumerate((("harmful tags", "#d62728"), ("other tags", "#1f77b4"))):
        k = 0 if j == 0 else 2
        series = np.nanmean([ratio(hourly(e.tick_driven[k]), hourly(e.tick_shown)) for e in evidence_list], axis=0)
        ax.plot(hours, series, color=color, lw=1.0, label=label)
    ax.set_xlabel("day")
    ax.set_ylabel("share of shown slate items")
    ax.set_ylim(bottom=0)
    ax.set_title("Slate items driven by a tag (Art. 10)", fontsize=10)
    ax.legend(fontsize=7)
    ax = axes[1]
    if ev0.delete_tick >= 0:
        series = np.nanmean([ratio(hourly(e.tick_driven_deleting_tag), hourly(e.tick_shown_deleting))
                             for e in evidence_list], axis=0)  # fmt: skip
        ax.plot(hours, series, color="#9467bd", lw=1.0, label="the tag they delete")
        ax.set_ylim(bottom=0)
        t_del = ev0.delete_tick * ev0.tick_minutes / 1440.0
        ax.axvline(t_del, color="black", ls="--", lw=1.0)
        ax.text(t_del, ax.get_ylim()[1], " deletion", fontsize=7, va="top")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no tag deletions in this scenario", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("day")
    ax.set_ylabel("share of their shown slate items")
    ax.set_title("Users who delete a tag (Art. 17)", fontsize=10)
    return _png(fig)
