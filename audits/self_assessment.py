"""A draft algorithm self-assessment (Art. 24) built from an audit's findings.

Art. 24 of the Provisions asks providers with public-opinion or
social-mobilisation capacity to file, within 10 working days of launch, the
provider's name, the service form, the application field, the algorithm type,
an algorithm self-assessment report and the text to be made public
(regulation-map.md, Art 24). This module writes the self-assessment part as
Markdown in that structure: what is filed, the algorithm and its settings, the
risks measured article by article (with the evidence behind each verdict), the
mitigations the scenario tested, and the method and its limits. It is a draft:
every number in it comes from the simulation, and the provider must review it.

Public objects
--------------
render_self_assessment
"""

from __future__ import annotations

import json

from audits.audit import MIN_SCOPE, AuditResult, article_verdicts, articles_in_scope

__all__ = ["render_self_assessment"]

ALGORITHM_TYPE_NAMES = {
    "generation_synthesis": "generation and synthesis (生成合成类)",
    "personalised_push": "personalised push (个性化推送类)",
    "ranking_selection": "ranking and selection (排序精选类)",
    "search_filtering": "search and filtering (检索过滤类)",
    "dispatch_decision": "dispatch and decision-making (调度决策类)",
}


def _who(sc) -> str:
    who = [f"{sc.population.n_users:,} users"] if sc.population.n_users else []
    if sc.fleet is not None:
        who.append(f"{sc.fleet.n_workers:,} couriers")
    return " and ".join(who)


def _num(x) -> str:
    if x is None:
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _mitigations(sc) -> list[str]:
    out = []
    rec = sc.recommender
    if rec.minors_mode is not None:
        mm = rec.minors_mode
        out.append(
            f"Minors' mode (Art. 18): daily caps {mm.cap_under_8_minutes:g}/{mm.cap_under_16_minutes:g}/"
            f"{mm.cap_under_18_minutes:g} min (under 8 / under 16 / 16-17), no service {mm.curfew_start_hour}:00-"
            f"{mm.curfew_end_hour}:00, rest prompt after {mm.rest_prompt_after_minutes:g} min, harmful content "
            f"{'filtered' if mm.filter_harmful else 'not filtered'}; payments capped at {mm.payment_cap_under_16:g}/"
            f"{mm.monthly_cap_under_16:g} yuan (under 16) and {mm.payment_cap_under_18:g}/{mm.monthly_cap_under_18:g} "
            "yuan (16-17) a payment / a month."
        )
    if rec.non_personalised is not None:
        out.append(f"Option not based on personal characteristics (Art. 17): opted-out users get a "
                   f"'{rec.non_personalised.fallback}' feed.")  # fmt: skip
    if rec.diversity is not None:
        out.append(f"Diversity re-ranking (Art. 12): maximal marginal relevance, relevance weight "
                   f"{rec.diversity.relevance_weight:g}.")  # fmt: skip
    if rec.tags is not None and not rec.tags.use_harmful_tags:
        out.append("Harmful-tag filter (Art. 10): categories on the harmful-tag list are never written into user "
                   "profiles or used as targeting tags.")  # fmt: skip
    if rec.tags is not None and rec.tags.honour_deletion:
        when = "at once" if rec.tags.deletion_delay_days == 0 else f"after {rec.tags.deletion_delay_days:g} days"
        out.append(f"Tag deletion (Art. 17): users can delete targeting tags; a deleted tag stops driving pushes "
                   f"{when} and is not learned again.")  # fmt: skip
    if sc.bots is not None and sc.bots.detection_rate > 0:
        out.append(f"Bot filter (Art. 14): fake views are caught and dropped before they are counted; detection "
                   f"rate {sc.bots.detection_rate:.0%}.")  # fmt: skip
    if rec.hot_list is not None:
        hl = rec.hot_list
        out.append(f"Hot list (Art. 14, Qinglang 2024 item 2): published principle: the {hl.size} items with the most "
                   f"{hl.signal} in the last {hl.window_hours:g} h, recomputed every tick; every list logged "
                   "(hotlist.parquet) so results can be verified.")  # fmt: skip
    if sc.market is not None:
        if sc.market.fraud_filter_recall > 0:
            out.append(f"Fraud filter (Art. 19): offers flagged by fraud detection are withheld; detection recall "
                       f"{sc.market.fraud_filter_recall:.0%}.")  # fmt: skip
        if sc.pricer.kind in ("uniform", "compliant"):
            out.append(f"Pricing (Art. 21): '{sc.pricer.kind}' pricer (the same price for the same product at the "
                       "same time; only disclosed, opt-in promotions differ).")  # fmt: skip
    if sc.fleet is not None:
        out += _fleet_mitigations(sc)
    return out or ["None: the scenario tests the service without protective settings."]


def _fleet_mitigations(sc) -> list[str]:
    """Describe what the scenario's dispatcher does for couriers (Art. 20), read from its settings."""
    from sim.registry import make_dispatcher

    d = make_dispatcher(sc.dispatcher)
    params = d.get_params() if hasattr(d, "get_params") else {}
    out = []
    if callable(getattr(d, "access", None)) and "daily_cap_minutes" in params:
        out.append(f"Rest rules (Art. 20): no orders past {params['daily_cap_minutes'] / 60:g} h of order-taking a "
                   f"day, a {params['pause_minutes']:g}-minute pause after {params['stretch_limit_minutes'] / 60:g} h "
                   f"continuous, no more than {params['max_consecutive_days']} working days in a row.")  # fmt: skip
    elif callable(getattr(d, "access", None)):
        out.append("Rest rules (Art. 20): the dispatcher pauses or stops couriers through access().")
    if params.get("percentile", 0) >= 50 and "speed_basis_kmh" in params:
        out.append(f"Deadlines (Art. 20): at the P{params['percentile']:g} of past delivery times of comparable "
                   f"orders, never faster than {params['speed_basis_kmh']:g} km/h; lateness from weather or "
                   f"merchants {'excused' if params.get('excuse_uncontrollable') else 'not excused'}.")  # fmt: skip
    if callable(getattr(d, "settle", None)) and "hourly_floor" in params:
        out.append(f"Pay floor (Art. 20): each day topped up to {params['hourly_floor']:g} yuan per order-taking "
                   "hour after estimated costs.")  # fmt: skip
    return out


def _card_line(probes) -> str:
    """Describe the algorithm card the audit held the recommender to (Art. 16), as declared."""
    from audits.transparency import CARD_SIGNALS

    declared = [p for p in probes if p is not None and p.declared is not None]
    if not declared:
        return "- Algorithm card (Art. 16): none declared."
    w = sum(p.declared for p in declared) / len(declared)
    signals = ", ".join(f"{name} {v:.2f}" for name, v in zip(CARD_SIGNALS, w, strict=True) if v > 0)
    purpose = declared[0].card_text.get("purpose", "")
    return (f"- Algorithm card (Art. 16, declared by the {declared[0].card_source}): signal weights {signals}"
            + (f"; purpose: {purpose}." if purpose else "."))  # fmt: skip


def _log_line(sc) -> str:
    """Describe the decision log the platform keeps (Art. 28), as configured."""
    st = sc.decision_log
    if not st.enabled:
        return "- Decision log (Art. 28): none kept."
    keep = ", ".join(f"{k} {st.retention_days[k]} days" for k in st.kinds)
    inputs = "candidates and scores" if st.scores else ("candidates" if st.candidates else "no ranking inputs")
    return (f"- Decision log (Art. 28): {', '.join(st.kinds)} decisions with {inputs}, algorithm version and "
            f"outputs, as partitioned Parquet; retention {keep}.")  # fmt: skip


def _algorithms(sc, rec0, probes=None) -> list[str]:
    lines = []
    if sc.population.n_users:
        lines.append(f"- Recommender: `{rec0.recommender}` with parameters "
                     f"`{json.dumps(rec0.recommender_params, default=str)}`; {sc.recommender.slate_size} items shown "
                     f"from {sc.recommender.n_candidates} candidates per view.")  # fmt: skip
    if rec0.market is not None:
        lines.append(f"- Pricer: `{rec0.market.pricer}` with parameters "
                     f"`{json.dumps(rec0.market.pricer_params, default=str)}`; sponsored offers targeted by "
                     f"{sc.market.targeting}.")  # fmt: skip
    if rec0.fleet is not None:
        lines.append(f"- Dispatcher: `{rec0.fleet.dispatcher}` with parameters "
                     f"`{json.dumps(rec0.fleet.dispatcher_params, default=str)}`; {sc.fleet.n_workers:,} couriers, "
                     f"orders from {'platform purchases' if sc.fleet.orders == 'market' else 'a demand profile'}.")  # fmt: skip
    if probes:
        lines.append(_card_line(probes))
    lines.append(_log_line(sc))
    against = []
    if sc.population.n_users:
        against.append(f"the `{sc.audit.counterfactual}` recommender")
    if rec0.market is not None:
        against.append(f"the `{sc.audit.counterfactual_pricer}` pricer")
    if rec0.fleet is not None:
        against.append(f"the `{sc.audit.counterfactual_dispatcher}` dispatcher")
    lines.append(f"- Compared with: {' and '.join(against)} on the same simulated people with the same random numbers.")
    return lines


def render_self_assessment(result: AuditResult, manifest: dict | None = None) -> str:
    """Render the draft self-assessment of an audit as Markdown."""
    sc = result.scenario
    f = sc.filing
    cat = result.catalogue
    scope = articles_in_scope(result.findings)
    verdicts = {a: v for a, v in article_verdicts(result.findings).items() if a in scope}
    rec0 = result.records[0]
    lines = [
        f"# Algorithm self-assessment (draft): {f.service_name}",
        "",
        "*Draft generated by recaudit from a simulation audit. It is evidence for the provider's own assessment "
        "under Art. 24 of the Provisions on the Management of Algorithmic Recommendations in Internet Information "
        "Services (2021), not a substitute for it: review every statement before filing.*",
        "",
        "## 1. Filing information",
        "",
        "| item | value |",
        "|---|---|",
        f"| provider | {f.provider} |",
        f"| service | {f.service_name} |",
        f"| service form | {f.service_form} |",
        f"| application field | {f.application_field} |",
        f"| algorithm type (Art. 2) | {ALGORITHM_TYPE_NAMES[f.algorithm_type]} |",
        "",
        "## 2. The algorithm assessed",
        "",
    ]
    lines += _algorithms(sc, rec0, result.extra.get("probes"))
    lines += [
        "",
        "## 3. Risks assessed, article by article",
        "",
        "| article | duty | verdict | evidence |",
        "|---|---|---|---|",
    ]
    for art, v in verdicts.items():
        fails = [x for x in result.findings if x.article == art and x.verdict == "fail"]
        if fails:
            ev = "; ".join(f"{x.metric} ({x.cohort}) = {_num(x.value)} [{_num(x.ci_low)}, {_num(x.ci_high)}], "
                           f"line {x.rule} {_num(x.threshold)}" for x in fails[:3])  # fmt: skip
            if len(fails) > 3:
                ev += f"; and {len(fails) - 3} more"
        elif v == "pass":
            ev = "every line with a verdict passed"
        else:
            scoped = [x for x in result.findings if x.article == art and x.n_users >= MIN_SCOPE and x.rule != "info"]
            open_ = [x for x in scoped if x.verdict == "undefined"]
            ev = "not applicable in this scenario" if not scoped else "inconclusive: " + (open_ or scoped)[0].note
        lines.append(f"| {art} | {cat.titles[art]} | **{v}** | {ev} |")
    lines += ["", "### Findings behind the verdicts", ""]
    for art in verdicts:
        lines.append(f"**Art. {art}: {cat.titles[art]}**")
        lines.append("")
        for x in result.findings:
            if x.article != art or x.n_users < MIN_SCOPE:
                continue
            ci = "" if x.ci_low is None else f" [{_num(x.ci_low)}, {_num(x.ci_high)}]"
            line = "" if x.threshold is None else f"; line: {x.rule} {_num(x.threshold)}"
            lines.append(f"- `{x.metric}` ({x.cohort}): {_num(x.value)}{ci} {x.unit}{line}; {x.verdict}. "
                         f"Source: {x.source}.")  # fmt: skip
        lines.append("")
    skipped = [a for a in article_verdicts(result.findings) if a not in scope]
    if skipped:
        lines += [f"Not simulated in this scenario: {', '.join(f'Art. {a}' for a in skipped)}.", ""]
    lines += ["## 4. Mitigations tested", ""] + [f"- {m}" for m in _mitigations(sc)]
    lines += [
        "",
        "## 5. Method and limits",
        "",
        f"- Agent-based simulation of {_who(sc)} over {sc.clock.days} days, "
        f"{len(result.records)} replication(s), seed {sc.seed}; each finding is a level or a difference from the "
        f"counterfactual with a {sc.audit.confidence:.0%} interval, and verdicts use the interval, not the point "
        "estimate.",
        "- The simulated people's behaviour (users' habit, self-control, price sensitivity, fraud susceptibility; "
        "couriers' earnings targets, acceptance of offers, shifts and rest) is a model calibrated to published "
        "figures (see the report's method section); results describe what the algorithm does to such people, "
        "not a measurement of the live service.",
        "- Lines marked 'proposed' in the sources are audit lines from our research notes where no regulator has "
        "published a number.",
    ]
    if manifest is not None:
        lines += ["", "## 6. Provenance", "", "```json", json.dumps(
            {k: manifest.get(k) for k in ("command", "git_commit", "seed", "packages", "created") if k in manifest},
            indent=2, default=str), "```"]  # fmt: skip
    return "\n".join(lines) + "\n"
