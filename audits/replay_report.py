"""The HTML report of a replay audit: verdicts, each article's findings and figures, the method, the log.

Built from the audit report's pieces (:mod:`audits.report`: style, findings table,
badges, embedded figures) and figures (:mod:`audits.figures`), so a replay report reads
like an audit report. Self-contained (figures as PNG data URIs).

Public objects
--------------
render_replay_html
"""

from __future__ import annotations

import html
import json

import numpy as np

from audits import figures
from audits.audit import article_verdicts, articles_in_scope
from audits.replay import NOT_IN_LOGS, ReplayAuditResult
from audits.report import _ARTICLE_TEXT, _CSS, _badge, _findings_table, _fmt, _img, verdict_table
from sim.kernels import layout as L
from sim.scenario import COHORTS

__all__ = ["minutes_figure", "render_replay_html"]

_REPLAY_ARTICLE_TEXT = {
    8: "Daily use of simulated users shown the logged slates, against the same users shown the counterfactual "
    "slates on the same requests with the same random numbers. An uplift above the line means the logged "
    "system's choice of items itself drives the extra use.",
    12: _ARTICLE_TEXT[12],
    18: "Minors' use against the caps of the minors' mode guideline, night use and harmful content in the slates "
    "minors were served, with the change against the counterfactual slates.",
}

_METHOD = """
<p>Each logged user stands for one simulated user drawn from the scenario's population (the logged cohort or age
fixes the cohort; users with neither get one drawn from the scenario's shares; each replication draws a new
population). A user's requests with gaps of at most {gap:g} minutes form one logged session. At each request of a
session the simulated user sees the slate in the logged order, picks an item by the model's logit over its true
utility or leaves, watches a share of it, and decides whether to go on, exactly as in the simulation
(<code>sim.kernels.feed.view_step</code>). A user who leaves skips the rest of that session; a user who would go on
when its slates run out stops there (a truncated session: minutes are then a lower bound). The minutes measured are
the simulated watching, charged to the day and hour of the logged request (China Standard Time; night is
22:00-06:00); logged dwell times are not used. There is no access gate and no rest prompt (the log says what was
served; prompts are not logged). The counterfactual, <b>{cf}</b>, shows other slates at the same requests to the
same users with the same random numbers: {cf_text}</p>
<p>With one replication the interval is a {conf:.0%} bootstrap over users ({boot} resamples); with several it is
a t-interval over replications (simulated populations). Verdict rules are the audit's: <b>max</b>/<b>min</b> pass
when the whole interval is on the right side of the line and fail when it is wholly on the wrong side; <b>zero</b>
duties fail on any observed occurrence. Otherwise the verdict is <i>undefined</i>.</p>
"""
_CF_TEXT = {
    "uniform": "as many distinct items as the logged slate, drawn uniformly from the items table.",
    "chronological": "the newest items published at or before the request, newest first.",
    "logged": "the logged slates themselves (a do-nothing check: every difference is exactly zero).",
}


def _log_table(result: ReplayAuditResult) -> str:
    s = result.summary()
    rows = [
        ("requests (slates)", f"{s['requests']:,}"),
        ("users", f"{s['users']:,} (" + ", ".join(f"{v} {k}" for k, v in s["users_by_cohort"].items())
         + f" in replication 1; {s['users_with_logged_cohort']} with a logged cohort or age)"),
        ("days", f"{s['days']} from {s['start_date']} (China Standard Time)"),
        ("items", f"{s['items']:,} in {s['categories']} categories, embeddings of length {s['embedding_dim']}"),
        ("mean slate length", f"{s['mean_slate_length']:.1f}"),
    ]  # fmt: skip
    for arm in ("logged", "counterfactual"):
        d = s[arm]
        rows.append((f"{arm}: requests unused", f"{d['unused_request_share']:.1%} (the user had left the session)"))
        rows.append((f"{arm}: truncated sessions", f"{d['truncated_session_share']:.1%} (the user would have gone on "
                                                   "when the logged session ended)"))  # fmt: skip
    for name in ("slates", "items"):
        rows.append((f"{name} file", f"<code>{html.escape(result.log.sources.get(name, ''))}</code> sha256 "
                                     f"<code>{result.log.sources.get(name + '_sha256', '')[:16]}…</code>"))  # fmt: skip
    body = "".join(f"<tr><th>{k}</th><td>{v if k.endswith('file') else html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def minutes_figure(result: ReplayAuditResult) -> bytes:
    """Return PNG bytes: minutes per user-day by cohort, and minors' minutes by hour, logged vs counterfactual.

    Left: bars of the mean over replications (error bars: the range over replications).
    Right: minors' minutes per minor-day by hour of the logged request; 22:00-06:00 shaded.
    """
    fig, (left, right) = figures._figure((9.0, 3.4), 1, 2)
    arms = (("logged slates", result.records, "#d62728"),
            (f"{result.counterfactual} slates", result.counterfactual_records, "#7f7f7f"))  # fmt: skip
    x = np.arange(len(COHORTS))
    for j, (label, recs, color) in enumerate(arms):
        per_rep = np.array([[r.day_column("minutes")[:, r.cohort == c].mean() if (r.cohort == c).any() else np.nan
                             for c in range(len(COHORTS))] for r in recs])  # fmt: skip
        mean = per_rep.mean(axis=0)
        err = np.vstack([mean - per_rep.min(axis=0), per_rep.max(axis=0) - mean])
        left.bar(x + (j - 0.5) * 0.38, mean, width=0.38, yerr=err, color=color, label=label, capsize=3)
        minors = np.array([r.hourly_minutes[1] / max((r.cohort == 1).sum() * r.n_days, 1) for r in recs]).mean(axis=0)
        right.plot(np.arange(24), minors, "-" if j == 0 else "--", color=color, marker="o", ms=3, label=label)
    left.set_xticks(x, COHORTS)
    left.set_ylabel("minutes per user-day")
    left.set_title("Simulated daily minutes by cohort")
    left.legend(fontsize=8)
    right.axvspan(-0.5, L.NIGHT_END_HOUR - 0.5, color="#eeeeee")
    right.axvspan(L.NIGHT_START_HOUR - 0.5, 23.5, color="#eeeeee")
    right.set_xticks(range(0, 24, 3))
    right.set_xlabel("hour of the logged request (shaded: 22:00-06:00)")
    right.set_ylabel("minutes per minor-day")
    right.set_title("Minors' minutes by hour of day")
    right.legend(fontsize=8)
    return figures._png(fig)


def _truncation_note(result: ReplayAuditResult) -> str:
    share = result.summary()["logged"]["truncated_session_share"]
    if share <= 0.5:
        return ""
    return (f"<p><b>Note:</b> in {share:.0%} of the logged sessions the simulated user would have gone on when the "
            "log's slates ran out. Minutes then measure what the logged requests allow: a lower bound of what these "
            "users would watch, in both arms. Differences between the arms are still paired on the same "
            "requests.</p>")  # fmt: skip


def render_replay_html(result: ReplayAuditResult, manifest: dict | None = None) -> str:
    """Render a replay audit as one self-contained HTML page."""
    sc, cat = result.scenario, result.catalogue
    verdicts = article_verdicts(result.findings)
    scope = articles_in_scope(result.findings)
    recs = result.records
    cf_label = f"{result.counterfactual} slates"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>recaudit replay report: {html.escape(sc.name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Replay audit of logged slates: {html.escape(sc.name)}</h1>",
        f"<p class='muted'>Logged slates shown to simulated users of scenario <code>{html.escape(sc.name)}</code>, "
        f"{len(recs)} replication(s), seed {sc.seed}; counterfactual: <code>{html.escape(cf_label)}</code> on the "
        "same requests (same people, same random numbers). Provisions on the Management of Algorithmic "
        "Recommendations in Internet Information Services (2021, in force 1 March 2022).</p>",
        "<h2>The log</h2>",
        _log_table(result),
        _truncation_note(result),
        verdict_table(result.findings, verdicts, scope, cat),
    ]
    absent = sorted({f"Art. {f.article}: {f.metric} ({f.note.removeprefix('not assessed from logs: ')})" for f in result.findings
                     if f.article not in scope or f.metric in NOT_IN_LOGS})  # fmt: skip
    if absent:
        parts.append("<p class='muted'>Not assessed from logs: " + html.escape("; ".join(absent)) + ".</p>")
    minutes_png = minutes_figure(result)
    figs = {8: [minutes_png], 18: [minutes_png, figures.minors_caps(recs, cat)]}
    for art in verdicts:
        if art not in scope:
            continue
        fs = [f for f in result.findings if f.article == art and f.n_users > 0]
        parts.append(f"<h2 id='art{art}'>Art. {art}: {html.escape(cat.titles[art])} {_badge(verdicts[art])}</h2>")
        parts.append(f"<p>{html.escape(_REPLAY_ARTICLE_TEXT.get(art, _ARTICLE_TEXT.get(art, '')))}</p>")
        parts.append(_findings_table(fs))
        for png in figs.get(art, []):
            parts.append(_img(png, f"Art. {art} evidence"))
    parts.append("<h2>Method</h2>")
    parts.append(_METHOD.format(gap=result.session_gap_minutes, cf=html.escape(result.counterfactual),
                                cf_text=_CF_TEXT[result.counterfactual], conf=sc.audit.confidence,
                                boot=sc.audit.bootstrap_samples))  # fmt: skip
    parts.append("<table><tr><th>article</th><th>metric</th><th>rule</th><th>line</th><th>source</th></tr>")
    seen = set()
    for f in result.findings:
        if (f.article, f.metric) in seen or f.n_users == 0:
            continue
        seen.add((f.article, f.metric))
        line = "–" if f.threshold is None else _fmt(f.threshold)
        parts.append(f"<tr><td>{f.article}</td><td><code>{f.metric}</code></td><td>{f.rule}</td>"
                     f"<td class='num'>{line}</td><td class='muted'>{html.escape(f.source)}</td></tr>")  # fmt: skip
    parts.append("</table>")
    if manifest is not None:
        parts.append("<h2>Manifest</h2><pre>" + html.escape(json.dumps(manifest, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
