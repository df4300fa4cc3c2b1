"""Report figures. Each returns PNG bytes.

Figures are built with matplotlib's object-oriented API (:class:`matplotlib.figure.Figure`),
never through pyplot, so building a report does not change the backend or the figures of a
notebook that imports this module.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from audits.metrics import cohort_masks
from sim.market.summary import SEGMENTS
from sim.scenario import COHORTS

__all__ = [
    "card_weights",
    "daily_minutes",
    "deadline_tightness",
    "hourly_pay_distribution",
    "hours_worked",
    "feed_entropy",
    "fraud_exposure",
    "hourly_use",
    "hotlist_and_ranking",
    "exposure_vs_organic",
    "minors_caps",
    "minors_payments",
    "optout_alignment",
    "price_by_segment",
    "spend_vs_budget",
    "surplus_by_cohort",
]

_COLORS = {"adult": "#1f77b4", "minor": "#d62728", "elderly": "#2ca02c"}


def _figure(figsize, nrows=1, ncols=1, squeeze=True):
    """Return a new (figure, axes) pair, outside pyplot's state."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def daily_minutes(records, cf_records, cf_label: str) -> bytes:
    """Mean daily minutes by cohort over the days: audited (solid) vs counterfactual (dashed)."""
    fig, ax = _figure((7.5, 3.6))
    for recs, style, label in ((records, "-", "audited"), (cf_records, "--", cf_label)):
        for c, name in enumerate(COHORTS):
            m = recs[0].cohort == c
            if not m.any():
                continue
            series = np.mean([r.day_column("minutes")[:, m].mean(axis=1) for r in recs], axis=0)
            ax.plot(np.arange(1, len(series) + 1), series, style, color=_COLORS[name], marker="o", ms=3,
                    label=f"{name} ({label})")  # fmt: skip
    ax.axhline(156, color="grey", lw=0.8, ls=":")
    ax.text(1, 158, "156 min/day: 2024 average short-video use (CNSA 2025)", fontsize=7, color="grey")
    ax.set_xlabel("day")
    ax.set_ylabel("minutes per user-day")
    ax.set_title("Daily minutes by cohort")
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def hourly_use(records) -> bytes:
    """Minutes per user-day by hour of day and cohort; the 22:00-06:00 window shaded."""
    fig, ax = _figure((7.5, 3.4))
    ax.axvspan(-0.5, 5.5, color="#eeeeee")
    ax.axvspan(21.5, 23.5, color="#eeeeee")
    hourly = np.mean([r.hourly_minutes for r in records], axis=0)
    n_days = records[0].n_days
    for c, name in enumerate(COHORTS):
        n = int((records[0].cohort == c).sum())
        if n:
            ax.bar(np.arange(24) + (c - 1) * 0.28, hourly[c] / (n * n_days), width=0.28, color=_COLORS[name],
                   label=name)  # fmt: skip
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel("hour of day (shaded: 22:00-06:00, no service for minors by default)")
    ax.set_ylabel("minutes per user-day")
    ax.set_title("Use by hour of day")
    ax.legend(fontsize=8)
    return _png(fig)


def minors_caps(records, catalogue) -> bytes:
    """Minors' daily minutes by age band (every minor-day a dot) against the caps."""
    rec = records[0]
    masks = cohort_masks(rec)
    bands = [("minor_under_8", "under 8", catalogue.caps["under_8_minutes"]),
             ("minor_8_15", "8-15", catalogue.caps["under_16_minutes"]),
             ("minor_16_17", "16-17", catalogue.caps["under_18_minutes"])]  # fmt: skip
    fig, ax = _figure((7.5, 3.6))
    rng = np.random.default_rng(0)  # jitter only
    minutes = np.concatenate([r.day_column("minutes") for r in records], axis=0)
    labels = []
    for k, (key, label, cap) in enumerate(bands):
        vals = minutes[:, masks[key]].ravel()
        if vals.size == 0:
            labels.append(f"{label}\n(none)")
            continue
        over = vals > cap + 1e-3
        x = k + rng.uniform(-0.3, 0.3, vals.size)
        ax.scatter(x[~over], vals[~over], s=3, alpha=0.35, color="#555555")
        ax.scatter(x[over], vals[over], s=3, alpha=0.5, color="#d62728")
        ax.hlines(cap, k - 0.4, k + 0.4, color="black", lw=2)
        ax.text(k + 0.42, cap, f"cap {cap:g}", va="center", fontsize=8)
        labels.append(f"{label}\n{over.mean():.1%} of days over")
    ax.set_xticks(range(3), labels)
    ax.set_xlim(-0.6, 2.9)
    ax.set_ylabel("minutes per day")
    ax.set_title("Minors' daily minutes against the caps (red: over the cap)")
    return _png(fig)


def feed_entropy(records, cf_records, cf_label: str) -> bytes:
    """Mean category entropy of users' feeds by day: audited vs counterfactual."""
    fig, ax = _figure((7.5, 3.2))
    for recs, style, label in ((records, "-", "audited"), (cf_records, "--", cf_label)):
        series = np.mean([np.nanmean(r.feed_days[:, :, 0], axis=1) for r in recs], axis=0)
        ax.plot(np.arange(1, len(series) + 1), series, style, marker="o", ms=3, label=label)
    n_cat = records[0].scenario.catalogue.n_categories
    ax.axhline(np.log(n_cat), color="grey", lw=0.8, ls=":")
    ax.text(len(series), np.log(n_cat) * 0.985, f"maximum: ln {n_cat}", fontsize=7, color="grey", va="top", ha="right")
    ax.set_xlabel("day")
    ax.set_ylabel("entropy (nats)")
    ax.set_title("Diversity of each user's feed (category entropy)")
    ax.legend(fontsize=8)
    return _png(fig)


def stance_distribution(records, cf_records, cf_label: str) -> bytes:
    """Polarisation: users' stances on the contested issue at the start, and at the end under each algorithm."""
    from sim.state import stances

    fig, ax = _figure((7.5, 3.2))
    bins = np.linspace(-1.0, 1.0, 41)
    start = np.concatenate([stances(r.true_interest0) for r in records])
    ends = [(np.concatenate([stances(r.true_interest) for r in recs]), label)
            for recs, label in ((records, "audited, end"), (cf_records, f"{cf_label}, end"))]  # fmt: skip
    ax.hist(start, bins=bins, histtype="stepfilled", color="0.85", label=f"start (variance {start.var():.3f})")
    for values, label in ends:
        ax.hist(values, bins=bins, histtype="step", lw=1.5, label=f"{label} (variance {values.var():.3f})")
    ax.set_xlabel("stance on the contested issue (interest along the stance axis)")
    ax.set_ylabel("users")
    ax.set_title("Polarisation: the spread of users' stances")
    ax.legend(fontsize=8)
    return _png(fig)


def card_weights(signals, measured, declared, card_source: str = "") -> bytes:
    """Art. 16: declared (card) against measured weight of each ranking signal.

    Parameters
    ----------
    signals : sequence of str
        Signal names (n_signals,).
    measured : float (n_signals, 3)
        Measured weight and its interval (value, low, high) per signal; NaN where undefined.
    declared : float (n_signals,) or None
        The card's weights (normalised); None when the recommender declares no card.
    card_source : str
        Who declared the card ("scenario" or "recommender"), for the legend.
    """
    fig, ax = _figure((7.5, 3.2))
    x = np.arange(len(signals))
    width = 0.38
    m = np.asarray(measured, dtype=float)
    if declared is not None:
        ax.bar(x - width / 2, declared, width=width, color="#7f7f7f", label=f"declared ({card_source} card)")
    err = np.vstack([np.clip(m[:, 0] - m[:, 1], 0, None), np.clip(m[:, 2] - m[:, 0], 0, None)])
    ax.bar(x + width / 2 if declared is not None else x, m[:, 0], width=width, yerr=np.nan_to_num(err), capsize=3,
           color="#d62728", label="measured (probes of the recommender)")  # fmt: skip
    ax.set_xticks(x, signals)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of the ranking's weight")
    title = "Algorithm card: declared against measured weights of the ranking signals"
    ax.set_title(title if declared is not None else title + "\n(no card declared)", fontsize=10)
    ax.legend(fontsize=8)
    return _png(fig)


def optout_alignment(records) -> bytes:
    """Opted-out users: cosine of own interests vs feed, against a placebo user's interests."""
    rec = records[0]
    imp = rec.day_column("impressions").sum(axis=0)
    opt = np.flatnonzero(rec.opt_out_mask & (imp > 0))
    fig, ax = _figure((7.5, 3.2))
    if opt.size >= 2:
        feed = rec.imp_emb_sum[opt] / imp[opt, None]
        feed = feed / np.maximum(np.linalg.norm(feed, axis=1, keepdims=True), 1e-12)
        own = (rec.true_interest0[opt] * feed).sum(axis=1)
        other = (rec.true_interest0[np.roll(opt, 1)] * feed).sum(axis=1)
        bins = np.linspace(-1, 1, 41)
        ax.hist(own, bins=bins, alpha=0.6, label="own interests")
        ax.hist(other, bins=bins, alpha=0.6, label="another user's interests (placebo)")
        ax.legend(fontsize=8)
    ax.set_xlabel("cosine(interests, mean of feed)")
    ax.set_ylabel("opted-out users")
    ax.set_title("Art. 17: does an opted-out feed follow the user's profile?")
    return _png(fig)


def _summaries(records):
    return [r.market.summary for r in records if r.market is not None]


def price_by_segment(records) -> bytes:
    """Art. 21: mean price over the uniform price for the same product and time, by customer segment."""
    fig, ax = _figure((7.5, 3.4))
    width = 0.38
    shown = []
    for d, (dev, color) in enumerate((("Android", "#7f7f7f"), ("iOS", "#9467bd"))):
        means, errs, paid = [], [], []
        for seg in range(len(SEGMENTS)):
            per_rep = [qs.segment_quoted_rel[d, seg] / qs.segment_quoted_n[d, seg]
                       for qs in _summaries(records) if qs.segment_quoted_n[d, seg]]  # fmt: skip
            paid_rep = [qs.segment_paid_rel[d, seg] / qs.segment_paid_n[d, seg]
                        for qs in _summaries(records) if qs.segment_paid_n[d, seg]]  # fmt: skip
            means.append(np.mean(per_rep) if per_rep else np.nan)
            errs.append(np.std(per_rep, ddof=1) if len(per_rep) > 1 else 0.0)
            paid.append(np.mean(paid_rep) if paid_rep else np.nan)
        x = np.arange(len(SEGMENTS)) + (d - 0.5) * width
        ax.bar(x, means, width=width, yerr=errs, color=color, label=f"{dev}: quoted", capsize=3)
        ax.plot(x, paid, "D", color="black", ms=4, label="paid (purchases)" if d == 1 else None)
        shown.extend(v for v in paid if np.isfinite(v))
        for xi, v in zip(x, means, strict=True):
            if np.isfinite(v):
                ax.text(xi, v + 0.005, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        shown.extend(v for v in means if np.isfinite(v))
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xticks(range(len(SEGMENTS)), SEGMENTS)
    ax.set_ylim(min([0.9, *shown]) - 0.02, max([1.1, *shown]) + 0.03)
    ax.set_ylabel("price / uniform price")
    ax.set_title("Price quoted and paid for the same product at the same time, by segment\n(1 = uniform price; "
                 "quotes without a disclosed promotion; bars: sd across replications)", fontsize=10)  # fmt: skip
    ax.legend(fontsize=8)
    return _png(fig)


def surplus_by_cohort(records, pricer_cf_records, cf_label: str) -> bytes:
    """Art. 21: consumer surplus per user-month by cohort, audited pricer vs the reference pricer."""
    fig, ax = _figure((7.5, 3.2))
    width = 0.38
    for k, (recs, label, color) in enumerate(((records, "audited pricer", "#d62728"),
                                               (pricer_cf_records, cf_label, "#1f77b4"))):  # fmt: skip
        vals = []
        for c in range(3):
            per_rep = []
            for r in recs:
                in_c = r.cohort == c
                if r.market is None or not in_c.any():
                    continue
                per_rep.append(r.market.summary["surplus"][in_c].sum() / in_c.sum() * 30.0 / r.n_days)
            vals.append(np.mean(per_rep) if per_rep else np.nan)
        ax.bar(np.arange(3) + (k - 0.5) * width, vals, width=width, color=color, label=label)
    ax.set_xticks(range(3), COHORTS)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("yuan per user-month")
    ax.set_title("Consumer surplus (value received minus price paid) by cohort")
    ax.legend(fontsize=8)
    return _png(fig)


def fraud_exposure(records) -> bytes:
    """Art. 19: share of offers that are fraudulent, by cohort and day."""
    fig, ax = _figure((7.5, 3.2))
    n_days = records[0].n_days
    for c, name in enumerate(COHORTS):
        series = []
        for qs in _summaries(records):
            tot, fr = qs.offers_by_day[c], qs.fraud_by_day[c]
            series.append(np.where(tot > 0, fr / np.maximum(tot, 1), np.nan))
        if series:
            ax.plot(np.arange(1, n_days + 1), np.nanmean(series, axis=0), marker="o", ms=3, color=_COLORS[name],
                    label=name)  # fmt: skip
    ax.set_xlabel("day")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("share of offers that are scams")
    ax.set_title("Fraudulent offers by cohort (Art. 19)")
    ax.legend(fontsize=8)
    return _png(fig)


def spend_vs_budget(records, cf_records, cf_label: str) -> bytes:
    """Art. 8: spend over the run relative to each user's budget for it, audited vs counterfactual."""
    fig, ax = _figure((7.5, 3.2))
    bins = np.linspace(0, 4, 41)
    for recs, label, color in ((records, "audited", "#d62728"), (cf_records, cf_label, "#1f77b4")):
        ratios = []
        for r in recs:
            if r.market is None:
                continue
            budget = r.market.budget_month.astype(float) * r.n_days / 30.0
            ratios.append(r.market.month_spend.sum(axis=0) / np.maximum(budget, 1e-9))
        if ratios:
            x = np.concatenate(ratios)
            ax.hist(np.clip(x, 0, 4), bins=bins, alpha=0.5, color=color,
                    label=f"{label}: {np.mean(x > 1):.1%} over budget")  # fmt: skip
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xlabel("spend / budget over the run (clipped at 4)")
    ax.set_ylabel("users")
    ax.set_title("Spending against budget (Art. 8 excessive consumption)")
    ax.legend(fontsize=8)
    return _png(fig)


def minors_payments(records, catalogue) -> bytes:
    """Art. 18: minors' platform payments by age against the per-payment caps."""
    fig, ax = _figure((7.5, 3.2))
    for r in records:
        if r.market is None:
            continue
        pay = r.market.summary.minor_payments
        age = r.age[pay["user_idx"]]
        pay_cap, _ = catalogue.payment_caps(age)
        price = pay["price"]
        over = price > pay_cap + 1e-6
        rng = np.random.default_rng(0)  # jitter only
        x = age + rng.uniform(-0.3, 0.3, age.size)
        ax.scatter(x[~over], price[~over], s=6, alpha=0.5, color="#555555")
        ax.scatter(x[over], price[over], s=6, alpha=0.7, color="#d62728")
    sc = catalogue.spending_caps
    ax.hlines(sc["under_16_payment"], 2.5, 15.5, color="black", lw=2)
    ax.hlines(sc["under_18_payment"], 15.5, 17.5, color="black", lw=2)
    ax.set_xlabel("age (black: per-payment cap, NPPA 2019)")
    ax.set_ylabel("yuan per payment")
    ax.set_title("Minors' payments against the per-payment caps (red: over)")
    return _png(fig)


# --- Art. 20: the delivery fleet ---------------------------------------------------------------------


def _pay_rates(records) -> np.ndarray:
    """Net hourly pay of every courier-day with at least an hour of order-taking, pooled over records."""
    from audits.fleet_metrics import MIN_DAY_MINUTES, per_worker_day_pay

    out = []
    for r in records:
        net, minutes = per_worker_day_pay(r)
        ok = minutes >= MIN_DAY_MINUTES
        out.append(net[ok] / (minutes[ok] / 60.0))
    return np.concatenate(out) if out else np.zeros(0)


def hourly_pay_distribution(records, cf_records, cf_label: str) -> bytes:
    """Art. 20: net hourly pay of courier-days, audited and counterfactual, against the minimum wage."""
    wage = records[0].scenario.fleet.min_hourly_wage
    a, c = _pay_rates(records), _pay_rates(cf_records)
    fig, ax = _figure((7.5, 3.4))
    both = np.concatenate([a, c, [wage]])
    lo, hi = np.percentile(both, [0.5, 99.5]) if both.size > 1 else (0.0, 2 * wage)
    bins = np.linspace(min(lo, 0.0), max(hi, 1.3 * wage), 50)
    ax.hist(np.clip(a, bins[0], bins[-1]), bins=bins, alpha=0.6, color="#d62728",
            label=f"audited ({np.mean(a < wage):.0%} of days below)")  # fmt: skip
    ax.hist(np.clip(c, bins[0], bins[-1]), bins=bins, alpha=0.5, color="#1f77b4",
            label=f"{cf_label} ({np.mean(c < wage):.0%} below)")  # fmt: skip
    ax.axvline(wage, color="black", lw=1.5)
    ax.text(wage, ax.get_ylim()[1] * 0.95, f" minimum wage {wage:g} yuan/h", fontsize=8, va="top")
    ax.set_xlabel("net pay per working hour (yuan, after penalties, top-ups and costs)")
    ax.set_ylabel("courier-days")
    ax.set_title("Hourly pay of courier-days against the minimum hourly wage")
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def hours_worked(records, cf_records, cf_label: str) -> bytes:
    """Art. 20: order-taking hours per worked courier-day (line at 8 h) and the longest stretch (line at 4 h)."""
    fig, axes = _figure((8.5, 3.4), ncols=2)
    for recs, color, label in ((records, "#d62728", "audited"), (cf_records, "#1f77b4", cf_label)):
        taking = np.concatenate([r.fleet.day_column("order_taking_minutes").ravel() for r in recs]) / 60.0
        stretch = np.concatenate([r.fleet.day_column("max_stretch_minutes").ravel() for r in recs]) / 60.0
        worked = taking > 0
        # bins closed on the right, so a day of exactly 8 h sits left of the 8-h line
        bins = np.arange(0, 17, 0.5) + 1e-6
        axes[0].hist(taking[worked], bins=bins, alpha=0.55, color=color,
                     label=f"{label} ({np.mean(taking[worked] > 8 + 1e-4):.0%} over 8 h)")  # fmt: skip
        axes[1].hist(stretch[worked], bins=bins, alpha=0.55, color=color, label=label)
    axes[0].axvline(8, color="black", lw=1.5)
    axes[1].axvline(4, color="black", lw=1.5)
    axes[0].set_xlabel("order-taking hours per worked day")
    axes[1].set_xlabel("longest stretch of the day, hours")
    axes[0].set_ylabel("courier-days")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[0].set_title("Hours worked", fontsize=10)
    axes[1].set_title("Continuous work without a 20-min pause", fontsize=10)
    return _png(fig)


def deadline_tightness(records, cf_records, cf_label: str) -> bytes:
    """Art. 20: where deadlines sit among delivery times (line at the median) and the speed they imply (line 15 km/h)."""
    from audits.fleet_metrics import FAST_KMH, order_deadline_stats

    fig, axes = _figure((8.5, 3.4), ncols=2)
    for recs, color, label in ((records, "#d62728", "audited"), (cf_records, "#1f77b4", cf_label)):
        stats = [order_deadline_stats(r) for r in recs]
        pct = np.concatenate([s["percentile"] for s in stats])
        speed = np.concatenate([s["implied_speed"] for s in stats])
        axes[0].hist(pct, bins=np.linspace(0, 100, 41), alpha=0.55, color=color,
                     label=f"{label} (mean P{pct.mean():.0f})" if pct.size else label)  # fmt: skip
        ok = np.isfinite(speed)
        if ok.any():
            fast = np.mean(speed[ok] > FAST_KMH)  # speeds are to 0.01 km/h, as in the finding
            axes[1].hist(np.minimum(speed[ok], 40.0) - 1e-6, bins=np.linspace(0, 40, 41), alpha=0.55, color=color,
                         label=f"{label} ({fast:.0%} above 15 km/h)")  # fmt: skip
    axes[0].axvline(50, color="black", lw=1.5)
    axes[1].axvline(15, color="black", lw=1.5)
    axes[0].set_xlabel("percentile among comparable delivery times")
    axes[1].set_xlabel("implied km/h (40 = 40+ or no time left)")
    axes[0].set_ylabel("orders")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[0].set_title("Deadline tightness", fontsize=10)
    axes[1].set_title("Implied riding speed", fontsize=10)
    return _png(fig)


# --- Art. 14: bot campaigns and the hot list ----------------------------------------------------------------------


def hotlist_and_ranking(records, free_records) -> bytes:
    """Art. 14: the best-placed target's hot-list position over time, and the ranking's robustness curve.

    Left: the position (by hot-list score) of the best-placed campaign target at every tick, with and without
    the bots. Right: the positions the targets gained in the recommender's ranking against accepted fake views.

    Parameters
    ----------
    records, free_records : list of RunRecord
        The audited runs (with the bot campaign) and their bot-free counterfactuals, paired by replication.
    """
    from audits.manipulation import robustness_curve

    fig, axes = _figure((9.0, 3.6), ncols=2)
    ax = axes[0]
    m0 = records[0].manipulation
    if m0.has_hot_list:
        hours = (np.arange(m0.hot_target_position.size) - m0.start_tick) * m0.tick_minutes / 60.0
        post = hours >= 0
        for recs, color, label in ((records, "#d62728", "with bots"), (free_records, "#1f77b4", "without bots")):
            for k, r in enumerate(recs):
                pos = r.manipulation.hot_target_position
                ax.plot(hours[post], pos[post], color=color, lw=1.0, alpha=0.8, label=label if k == 0 else None)
        size = m0.hot_items.shape[1]
        ax.axhline(size + 0.5, color="black", lw=1.0, ls="--")
        ax.text(0, size + 0.5, f" hot list (top {size})", fontsize=7, va="bottom")
        ax.set_yscale("log")
        ax.invert_yaxis()
        ax.set_ylabel("position by hot-list score (1 = top)")
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no hot list in this scenario", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("hours from the campaign's start")
    ax.set_title("Best-placed target on the hot list", fontsize=10)
    ax = axes[1]
    for k, (t, f) in enumerate(zip(records, free_records, strict=True)):
        _, fake, disp = robustness_curve(t, f)
        ax.plot(fake, disp, marker="o", ms=2, lw=1.0, color="#d62728", alpha=0.8,
                label="replications" if k == 0 else None)  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("accepted fake views per target (cumulative)")
    ax.set_ylabel(f"positions gained among {m0.n_candidates} candidates")
    ax.set_title("Recommender's ranking of the targets", fontsize=10)
    return _png(fig)


def exposure_vs_organic(records, free_records) -> bytes:
    """Art. 14: the targets' exposure share with and without the bots, and their organic share of minutes.

    Shares of real users' impressions (with the bots, without them) and of their watch minutes without the bots;
    bars: mean over replications, dots: replications.
    """

    def share(num, den):
        return float(num.sum() / den.sum()) if den.sum() > 0 else float("nan")

    vals = []
    for t, f in zip(records, free_records, strict=True):
        mt, mf = t.manipulation, f.manipulation
        vals.append((share(mt.user_target_impressions, mt.user_impressions),
                     share(mf.user_target_impressions, mf.user_impressions),
                     share(mf.user_target_minutes, mf.user_minutes)))  # fmt: skip
    vals = np.asarray(vals)
    labels = ["exposure share\nwith bots", "exposure share\nwithout bots", "share of watch minutes\nwithout bots"]
    colors = ["#d62728", "#1f77b4", "#7f7f7f"]
    fig, ax = _figure((7.0, 3.4))
    x = np.arange(3)
    ax.bar(x, np.nanmean(vals, axis=0), color=colors, alpha=0.8)
    for row in vals:
        ax.scatter(x, row, color="black", s=8, zorder=3)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylabel("share of real users' impressions / minutes")
    kind = records[0].manipulation.target_kind
    ax.set_title(f"Campaign targets ({kind}): exposure against organic exposure and demand", fontsize=10)
    return _png(fig)
