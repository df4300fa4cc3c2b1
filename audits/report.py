"""The HTML audit report: verdicts first, then each article's evidence, then the method.

The page is self-contained (figures embedded as PNG data URIs, inline CSS).

Public objects
--------------
render_html
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np

from audits import figures
from audits.audit import AuditResult, article_verdicts, articles_in_scope

__all__ = ["render_html"]

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1000px;margin:2em auto;color:#222;
line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;width:100%;font-size:.88em;margin:.6em 0}
th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.v{font-weight:700;padding:.1em .5em;border-radius:3px;white-space:nowrap}
.pass{background:#d9f2d9;color:#135d13}.fail{background:#f9d6d5;color:#8b1a14}
.undefined{background:#eee;color:#555}.muted{color:#666;font-size:.9em}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}
code,pre{background:#f6f6f6;font-size:.85em}pre{padding:.6em;overflow-x:auto}
"""


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(x) -> str:
    if x is None:
        return "–"
    ax = abs(x)
    if ax != 0 and (ax < 0.01 or ax >= 1e5):
        return f"{x:.3g}"
    return f"{x:.3f}" if ax < 10 else f"{x:.1f}"


def _badge(v: str) -> str:
    return f'<span class="v {v}">{v}</span>'


def _findings_table(findings) -> str:
    rows = []
    for f in findings:
        ci = "–" if f.ci_low is None else f"[{_fmt(f.ci_low)}, {_fmt(f.ci_high)}]"
        thr = "–" if f.threshold is None else f"{f.rule} {_fmt(f.threshold)}"
        rows.append(
            f"<tr><td><code>{html.escape(f.metric)}</code></td><td>{html.escape(f.cohort)}</td>"
            f'<td class="num">{_fmt(f.value)}</td><td class="num">{ci}</td><td class="num">{thr}</td>'
            f"<td>{_badge(f.verdict)}</td><td class='muted'>{html.escape(f.unit)}; {html.escape(f.note)}</td>"
            f"<td class='muted'>{f.n_users}</td></tr>"
        )
    head = (
        "<tr><th>metric</th><th>cohort</th><th>value</th><th>CI</th><th>line</th><th>verdict</th>"
        "<th>unit; note</th><th>users</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


_ARTICLE_TEXT = {
    8: "Daily use under the audited recommender against a chronological feed for the same people with the same "
    "random numbers. An uplift above the line means the recommender itself drives the extra use.",
    10: "The platform keeps interest tags per user (their top watched categories) and raises candidates in a "
    "user's tagged categories. Each slate item shown to the audited users is attributed to the tags whose boost put "
    "it there: the same candidates are re-ranked without those tags' boost (the rest of the recommender unchanged) "
    "and an item that leaves the slate was driven by them. The lines count the items driven by tags on the "
    "harmful-tag list and the harmful tags written into the platform's profiles; neither is allowed.",
    12: "Category diversity of each user's feed over the run, and how similar users' consumption becomes.",
    14: "A campaign of bot accounts fakes views of target items or creators. The audit runs the same scenario "
    "without the bot accounts (same people, items, random numbers and targets) and measures what the fake "
    "engagement bought: the targets' share of real users' impressions against their organic share (the "
    "over-recommendation index), the positions they gained in the recommender's ranking (probed hourly on the "
    "same users and candidate sets in both runs), how long the campaign took to put a target on the hot list, "
    "the share of the hot list the targets held, and how many fake views the platform's filter caught.",
    16: "What the recommender's algorithm card declares about its main ranking signals (profile match, "
    "popularity, predicted engagement, recency, randomisation) against what it does: the audit probes the "
    "recommender at fixed times of each day on random candidate sets of users who have not opted out, and "
    "measures each signal's weight as the share of the score's variation within a set that the signal moves "
    "(least squares on the signals the platform itself sees). The card fails when it misplaces more than the "
    "line's share of that weight, or leaves out a signal that carries more than its line.",
    17: "Users who switched personalisation off should get a feed that does not follow their profile: the "
    "alignment of their feed with their own interests must equal the alignment with a random other user's.",
    18: "Minors' use against the caps of the minors' mode guideline, night use, long sessions without a rest "
    "prompt, and harmful content in minors' feeds; with a market, minors' payments against the spending caps.",
    19: "How often the elderly are shown fraudulent offers compared with adults, and what they lose to them.",
    20: "Couriers' pay, hours, rest and deadlines under the audited dispatcher, and under the counterfactual "
    "dispatcher on the same orders, couriers and weather (common random numbers): net pay per working hour "
    "against the local minimum hourly wage, days over 8 hours of order-taking, orders pushed after 4 hours of "
    "continuous work without a 20-minute pause, weeks without a rest day, where deadlines sit in the distribution "
    "of delivery times and the riding speed they imply, and lateness penalties, including those for delays the "
    "courier could not control (weather, waiting at the merchant).",
    28: "Whether the platform's decision log holds every slate, price quote and dispatch of the audited run with "
    "its inputs, the algorithm's version and its outputs (counted on disk against the run's own record), "
    "whether the retention horizon it declares meets the legal minimum (six months for network logs, three "
    "years for transaction records), and whether its decisions reproduce bit for bit when the audit "
    "re-simulates the first days from the scenario and seed stored with the log and recomputes each slate "
    "from its logged candidates and scores. A platform that keeps no log fails.",
    21: "Prices compared with the uniform price for the same product at the same time (the reference pricer's "
    "quote, recorded next to every quote): loyal against new customers, iOS against Android, the effect of "
    "non-cost traits, undisclosed differences, and the consumer surplus moved to the platform.",
}
_NO_MARKET = "The scenario has no market ([market] table), so this article's market findings are undefined."


def _scope_line(sc, recs) -> str:
    who = [f"{sc.population.n_users:,} simulated users"] if sc.population.n_users else []
    if sc.fleet is not None:
        who.append(f"{sc.fleet.n_workers:,} couriers")
    return f"{' and '.join(who)}, {sc.clock.days} days, "


def _algorithms_line(sc, recs) -> str:
    parts = []
    if sc.population.n_users:
        parts.append(f"Audited recommender: <code>{html.escape(recs[0].recommender)}</code>; counterfactual: "
                     f"<code>{html.escape(sc.audit.counterfactual)}</code>")  # fmt: skip
    if recs[0].market is not None:
        parts.append(f"audited pricer: <code>{html.escape(recs[0].market.pricer)}</code>; counterfactual: "
                     f"<code>{html.escape(sc.audit.counterfactual_pricer)}</code>")  # fmt: skip
    if recs[0].fleet is not None:
        parts.append(f"audited dispatcher: <code>{html.escape(recs[0].fleet.dispatcher)}</code>; counterfactual: "
                     f"<code>{html.escape(sc.audit.counterfactual_dispatcher)}</code>")  # fmt: skip
    return "; ".join(parts) + " "


def _card_figure(result: AuditResult) -> bytes:
    """Draw the Art. 16 figure: the card's weights (mean over replications) against the measured ones."""
    from audits.transparency import CARD_SIGNALS

    by = {f.cohort: f for f in result.findings if f.metric == "measured_signal_weight"}
    nan = float("nan")
    measured = [[nan if by.get(s) is None or by[s].value is None else getattr(by[s], k) for k in
                 ("value", "ci_low", "ci_high")] for s in CARD_SIGNALS]  # fmt: skip
    probes = [p for p in result.extra.get("probes", []) if p is not None and p.declared is not None]
    declared = np.mean([p.declared for p in probes], axis=0) if probes else None
    source = probes[0].card_source if probes else ""
    return figures.card_weights(CARD_SIGNALS, measured, declared, source)


def _card_text(result: AuditResult) -> str:
    """Return the card's purpose and description, as declared (HTML)."""
    probes = [p for p in result.extra.get("probes", []) if p is not None and p.declared is not None]
    if not probes:
        return ""
    t = probes[0].card_text
    bits = [f"<b>Purpose:</b> {html.escape(t['purpose'])}" if t.get("purpose") else "",
            html.escape(t.get("description", ""))]  # fmt: skip
    text = " ".join(b for b in bits if b)
    return f"<p class='muted'>Declared card ({html.escape(probes[0].card_source)}): {text}</p>" if text else ""


def _log_text(result: AuditResult) -> str:
    """Return where the decision log is and what its replay found (HTML)."""
    logs = [e for e in result.extra.get("logs", []) if e is not None]
    if not logs or logs[0].log_dir is None:
        why = logs[0].reason if logs else "the platform keeps no decision log"
        return (f"<p class='muted'>{html.escape(why)} (enable it with a [decision_log] table or "
                "<code>--decision-log</code>).</p>")  # fmt: skip
    lines = "<br>".join(html.escape(line) for e in logs for line in e.replay_lines)
    return f"<p class='muted'>Decision log: <code>{html.escape(str(logs[0].log_dir))}</code>.<br>{lines}</p>"


def _hotlist_text(result: AuditResult) -> str:
    """Return the hot list's published principle and the campaign's settings (Art. 14, HTML)."""
    sc = result.scenario
    bits = []
    hl = sc.recommender.hot_list
    if hl is not None:
        unit = "views" if hl.signal == "views" else "watch minutes"
        feed = (f"its items take up to {hl.feed_slots} of the first slate positions when among a user's candidates"
                if hl.feed_slots else "it does not place items in the feed")  # fmt: skip
        bits.append(f"Hot list: the {hl.size} items with the most {unit} the platform counted in the last "
                    f"{hl.window_hours:g} h, recomputed every {sc.clock.tick_minutes} min; {feed}; every list is "
                    "logged (<code>hotlist.parquet</code>).")  # fmt: skip
    else:
        bits.append("The platform runs no hot list ([recommender.hot_list]): the hot-list lines are undefined.")
    b = sc.bots
    if b is not None:
        what = f"{b.n_targets} {b.target} ({b.choose})"
        until = "the end of the run" if b.duration_hours is None else f"{b.duration_hours:g} h"
        bits.append(f"Campaign: {b.n_bots} bot accounts, {b.views_per_bot_hour:g} fake views an hour each of "
                    f"{what}, from day {b.start_day + 1} at {b.start_hour:02d}:00 for {until}; the platform's "
                    f"filter catches {b.detection_rate:.0%} of fake views.")  # fmt: skip
    return "<p class='muted'>" + " ".join(bits) + "</p>"


def _tags_text(sc, art: int) -> str:
    """Describe the platform's tags, the harmful-tag list and the deletions (Art. 10 and 17), HTML."""
    tt, tg = sc.recommender.tags, sc.tags
    if art == 10:
        harmful = list(tg.harmful_categories) if tg is not None else []
        text = (f"Tags: the top {tt.n_tags} categories holding at least {tt.min_share:.0%} of a user's watch minutes "
                f"({tt.half_life_days:g}-day half-life), boosted by {tt.boost:g} standard deviations of the score; "
                f"harmful-tag list: categories {harmful or 'none'}; the platform "
                f"{'uses' if tt.use_harmful_tags else 'never writes or uses'} harmful tags.")  # fmt: skip
    else:
        if tg is None or tg.delete_share <= 0:
            return "<p class='muted'>No user deletes a tag in this scenario: the tag-deletion lines are undefined.</p>"
        keeps = ("hides the tag from the user but keeps targeting with it" if not tt.honour_deletion else
                 f"stops using it {'at once' if tt.deletion_delay_days == 0 else f'after {tt.deletion_delay_days:g} days'}")  # fmt: skip
        text = (f"Tag deletion: on day {tg.delete_day + 1} at {tg.delete_hour:02d}:00 each user deletes their top "
                f"tag with probability {tg.delete_share:.0%}; the platform {keeps}. The lines count the items shown "
                "afterwards that the deleted tag drove, and how long it kept driving them.")  # fmt: skip
    return f"<p class='muted'>{html.escape(text)}</p>"


def verdict_table(findings, verdicts: dict, scope: set, catalogue) -> str:
    """Return the "Verdicts by article" table (HTML): each article in scope, its duty, verdict and failing metrics."""
    rows = ["<h2>Verdicts by article</h2><table><tr><th>article</th><th>duty</th><th>verdict</th>"
            "<th>failing metrics</th></tr>"]  # fmt: skip
    for art, v in verdicts.items():
        if art not in scope:
            continue
        failing = sorted({f"{f.metric} ({f.cohort})" for f in findings if f.article == art and f.verdict == "fail"})
        rows.append(
            f"<tr><td><a href='#art{art}'>Art. {art}</a></td><td>{html.escape(catalogue.titles[art])}</td>"
            f"<td>{_badge(v)}</td><td class='muted'>{html.escape(', '.join(failing) or '–')}</td></tr>"
        )
    rows.append("</table>")
    return "".join(rows)


def render_html(result: AuditResult, manifest: dict | None = None) -> str:
    """Render an audit result as one self-contained HTML page."""
    sc = result.scenario
    cat = result.catalogue
    verdicts = article_verdicts(result.findings)
    scope = articles_in_scope(result.findings)
    cf = sc.audit.counterfactual
    recs, cfs = result.records, result.counterfactual_records
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>recaudit report: {html.escape(sc.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Algorithm audit: {html.escape(sc.name)}</h1>",
        f"<p class='muted'>{html.escape(sc.description)}</p>",
        f"<p class='muted'>{_scope_line(sc, recs)}{len(recs)} replication(s), seed {sc.seed}. "
        + _algorithms_line(sc, recs)
        + "(same people, same random numbers). Provisions on the Management of Algorithmic Recommendations in "
        "Internet Information Services (2021, in force 1 March 2022).</p>",
        verdict_table(result.findings, verdicts, scope, cat),
    ]
    absent = [art for art in verdicts if art not in scope]
    if absent:
        parts.append(
            "<p class='muted'>Not simulated in this scenario (no users or couriers in their scope): "
            + ", ".join(f"Art. {a} ({html.escape(cat.titles[a])})" for a in absent)
            + ".</p>"
        )

    figs = {}
    if recs[0].n_users:
        figs = {
            8: [figures.daily_minutes(recs, cfs, cf), figures.hourly_use(recs)],
            12: [figures.feed_entropy(recs, cfs, cf)]
            + ([figures.stance_distribution(recs, cfs, cf)] if sc.catalogue.stance_share > 0 else []),
            17: [figures.optout_alignment(recs)],
            18: [figures.minors_caps(recs, cat), figures.hourly_use(recs)],
        }
        figs[16] = [_card_figure(result)]
    if recs[0].market is not None:
        pcfs = result.pricer_counterfactual_records or cfs
        pcf_label = f"{sc.audit.counterfactual_pricer} pricer"
        figs[8].append(figures.spend_vs_budget(recs, cfs, f"{cf} + {pcf_label}"))
        figs[18].append(figures.minors_payments(recs, cat))
        figs[19] = [figures.fraud_exposure(recs)]
        figs[21] = [figures.price_by_segment(recs), figures.surplus_by_cohort(recs, pcfs, pcf_label)]
    if recs[0].fleet is not None:
        dcfs = result.dispatcher_counterfactual_records or cfs
        dcf_label = f"{sc.audit.counterfactual_dispatcher} dispatcher"
        figs[20] = [
            figures.hourly_pay_distribution(recs, dcfs, dcf_label),
            figures.hours_worked(recs, dcfs, dcf_label),
            figures.deadline_tightness(recs, dcfs, dcf_label),
        ]
    tag_evidence = [r.tags for r in recs if r.tags is not None]
    if tag_evidence:  # Art. 10 and 17 (d) (audits/tags_metrics.py)
        from audits.tags_metrics import tags_figure

        png = tags_figure(tag_evidence)
        figs.setdefault(10, []).append(png)
        figs.setdefault(17, []).append(png)
    if "logs" in result.extra:  # Art. 28 (audits/logs.py)
        from audits.logs import decisions_by_hour_figure

        figs[28] = [decisions_by_hour_figure(result.extra["logs"])]
    bfs = result.extra.get("bot_free_records") or []
    if bfs:  # Art. 14 (audits/manipulation.py)
        figs[14] = [figures.hotlist_and_ranking(recs, bfs), figures.exposure_vs_organic(recs, bfs)]
    for art in verdicts:
        if art not in scope:
            continue
        fs = [f for f in result.findings if f.article == art]
        parts.append(f"<h2 id='art{art}'>Art. {art}: {html.escape(cat.titles[art])} {_badge(verdicts[art])}</h2>")
        parts.append(f"<p>{html.escape(_ARTICLE_TEXT.get(art, ''))}</p>")
        if art in (19, 21) and recs[0].market is None:
            parts.append(f"<p class='muted'>{_NO_MARKET}</p>")
        if art == 14:
            parts.append(_hotlist_text(result))
        if art == 16:
            parts.append(_card_text(result))
        if art in (10, 17) and tag_evidence:
            parts.append(_tags_text(sc, art))
        if art == 28:
            parts.append(_log_text(result))
        parts.append(_findings_table(fs))
        for png in figs.get(art, []):
            parts.append(_img(png, f"Art. {art} evidence"))

    parts.append("<h2>Method</h2>")
    parts.append(
        "<p>Each metric is computed from the simulated users' (and couriers') logs. With one replication the "
        f"interval is a {sc.audit.confidence:.0%} paired bootstrap over users or couriers "
        f"({sc.audit.bootstrap_samples} resamples); with "
        "several it is a t-interval over replication estimates. Each replication draws a new population and "
        "catalogue, so only intervals from several replications cover world-to-world variation; with one "
        "replication they are narrower than the model's uncertainty (the shipped scenarios use three). Verdict rules: <b>max</b>/<b>min</b> pass when "
        "the whole interval is on the right side of the line and fail when it is wholly on the wrong side; "
        "<b>zero</b> duties fail on any observed occurrence; <b>equivalence</b> passes when the interval lies "
        "within the margin. Otherwise the verdict is <i>undefined</i>.</p>"
    )
    parts.append(
        "<table><tr><th>article</th><th>metric</th><th>cohorts</th><th>rule</th><th>line</th><th>source</th></tr>"
    )
    for s in cat.metrics:
        line = "–" if s.threshold is None else _fmt(s.threshold)
        parts.append(
            f"<tr><td>{s.article}</td><td><code>{s.metric}</code><br><span class='muted'>"
            f"{html.escape(s.description)}</span></td><td>{', '.join(s.cohorts)}</td><td>{s.rule}</td>"
            f"<td class='num'>{line}</td><td class='muted'>{html.escape(s.source)}</td></tr>"
        )
    parts.append("</table>")
    if manifest is not None:
        parts.append("<h2>Manifest</h2><pre>" + html.escape(json.dumps(manifest, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
