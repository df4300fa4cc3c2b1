"""Run an audit: the scenario and its counterfactual, replicated, into findings.

Every finding is a difference from (or a level under) a declared
counterfactual run that shares the population and the random numbers
(common random numbers), with a confidence interval from replications (a
t-interval over replication estimates when there are two or more, a paired
bootstrap over users when there is one), and a verdict rule that uses the
interval, not the point estimate.

Public objects
--------------
Finding, AuditResult, run_audit, verdict
"""

from __future__ import annotations

import copy
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from audits.catalogue import Catalogue, MetricSpec, load_catalogue
from audits.fleet_metrics import FLEET_METRICS
from audits.logs import LOG_METRICS, collect_log_evidence, log_estimators
from audits.manipulation import MANIPULATION_METRICS, manipulation_estimators
from audits.market_metrics import PRICER_CF_METRICS, market_definitions
from audits.metrics import Estimator, build_estimators
from audits.tags_metrics import TAG_METRICS, tag_estimators
from audits.transparency import TRANSPARENCY_METRICS, simulate_with_probes, transparency_estimators
from sim.bots import bot_free_scenario
from sim.decision_log import without_decision_log
from sim.engine import simulate
from sim.memory import check_memory
from sim.platform import PluginError
from sim.record import RunRecord
from sim.registry import make_dispatcher
from sim.rng import spawn_generators
from sim.scenario import Scenario
from sim.tags import without_attribution

__all__ = ["AuditResult", "Finding", "article_verdicts", "articles_in_scope", "planned_runs", "run_audit", "verdict"]

MIN_SCOPE = 30  # users needed in a cohort for a finding to be defined (an interval from fewer is not credible)


@dataclass(frozen=True)
class Finding:
    """One (article, metric, cohort) result; the rows of ``findings.json``."""

    article: int
    metric: str
    cohort: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float | None
    rule: str
    unit: str
    source: str
    verdict: str
    note: str
    n_users: int
    replications: int
    counterfactual: str

    def to_dict(self) -> dict:
        """JSON-ready dict (NaN becomes None)."""
        d = asdict(self)
        for k in ("value", "ci_low", "ci_high"):
            if d[k] is not None and not math.isfinite(d[k]):
                d[k] = None
        return d


@dataclass
class AuditResult:
    """Findings plus the records they came from."""

    scenario: Scenario
    findings: list[Finding]
    records: list[RunRecord]
    counterfactual_records: list[RunRecord]
    catalogue: Catalogue
    pricer_counterfactual_records: list[RunRecord] = field(default_factory=list)
    dispatcher_counterfactual_records: list[RunRecord] = field(default_factory=list)
    wall_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def verdict(rule: str, value, lo, hi, threshold, observed_values=None, center: float = 0.0) -> tuple[str, str]:
    """Apply a catalogue rule; return (verdict, note)."""
    if value is None or not math.isfinite(value):
        return "undefined", "no estimate"
    if rule == "info":
        return "undefined", "informational: no published or proposed line"
    if rule == "zero":
        obs = observed_values if observed_values is not None else [value]
        if all(v == 0 for v in obs):
            return "pass", "no occurrence observed"
        return "fail", "occurrences observed where none are allowed"
    if rule == "max":
        if hi <= threshold:
            return "pass", "interval at or below the line"
        if lo > threshold:
            return "fail", "interval above the line"
        return "undefined", "inconclusive: interval straddles the line (add replications or users)"
    if rule == "min":
        if lo >= threshold:
            return "pass", "interval at or above the line"
        if hi < threshold:
            return "fail", "interval below the line"
        return "undefined", "inconclusive: interval straddles the line (add replications or users)"
    if rule == "equivalence":
        where = f"{center:g} +/- {threshold:g}" if center else f"+/-{threshold:g}"
        if center - threshold <= lo and hi <= center + threshold:
            return "pass", f"interval within {where}"
        if lo > center + threshold or hi < center - threshold:
            return "fail", f"interval outside {where}"
        return "undefined", "inconclusive: interval overlaps the margin (add replications or users)"
    raise ValueError(f"unknown rule {rule!r}")


def _interval(values: list[float], boot: np.ndarray | None, confidence: float):
    if len(values) >= 2:
        v = np.asarray(values, dtype=float)
        mean = float(v.mean())
        half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
        return mean, mean - half, mean + half
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha]) if boot is not None and boot.size else (values[0], values[0])
    return values[0], float(lo), float(hi)


def run_audit(
    scenario: Scenario,
    replications: int | None = None,
    progress: bool = False,
    catalogue: Catalogue | None = None,
    recommender=None,
    workers: int | None = None,
    pricer=None,
    dispatcher=None,
) -> AuditResult:
    """Audit a scenario against its counterfactual.

    Parameters
    ----------
    scenario : Scenario
    replications : int, optional
        Defaults to ``scenario.audit.replications``.
    progress : bool
        Show progress bars.
    catalogue : Catalogue, optional
        Defaults to the packaged ``audits/thresholds.toml``.
    recommender : object, optional
        A recommender instance to audit instead of ``scenario.recommender``'s
        base (notebooks); the scenario's wrappers still apply, and the
        counterfactual is built from the scenario.
    pricer : object, optional
        A pricer instance to audit instead of ``scenario.pricer`` (scenarios with a market).
    dispatcher : object, optional
        A dispatcher instance to audit instead of ``scenario.dispatcher`` (scenarios with a fleet).
    workers : int, optional
        Processes for the runs (each run is independent and deterministic, so
        the results do not depend on it). Default: one per core, at most the
        number of runs; 1 runs everything in this process.
    """
    started = time.perf_counter()
    workers = _workers_for(workers, recommender, pricer, dispatcher)
    cat = catalogue or load_catalogue()
    reps = replications or scenario.audit.replications
    cf_kind = scenario.audit.counterfactual
    cf_pricer = scenario.audit.counterfactual_pricer
    cf_dispatcher = scenario.audit.counterfactual_dispatcher
    # only the audited runs keep the platform's decision log (Art. 28); counterfactual worlds keep none
    cf_scenario = without_decision_log(
        scenario.with_overrides(recommender_kind=cf_kind, pricer_kind=cf_pricer, dispatcher_kind=cf_dispatcher)
    )
    # With a market and a pricer other than the reference, a second counterfactual swaps the
    # pricer only (same recommender): the pricing findings compare against it.
    pricer_cf = scenario.market is not None and (
        pricer is not None or scenario.pricer.kind != cf_pricer or bool(scenario.pricer.params)
    )
    pricer_scenario = without_decision_log(scenario.with_overrides(pricer_kind=cf_pricer)) if pricer_cf else None
    # The fleet's findings compare dispatchers on the same orders. With orders from a demand profile the
    # full counterfactual has the same orders; with orders from purchases a further run swaps the
    # dispatcher only. A dispatcher equal to the counterfactual one is its own counterfactual.
    same_dispatcher = (
        dispatcher is None and scenario.dispatcher.kind == cf_dispatcher and not scenario.dispatcher.params
    )
    dispatcher_cf = _needs_dispatcher_cf(scenario, same_dispatcher)
    if scenario.fleet is not None:
        try:
            make_dispatcher(cf_dispatcher)
        except PluginError as exc:
            raise PluginError(f"audit.counterfactual_dispatcher: {exc}") from None
    dispatcher_scenario = (
        without_decision_log(scenario.with_overrides(dispatcher_kind=cf_dispatcher)) if dispatcher_cf else None
    )
    # Art. 14: a bot campaign is judged against the same scenario without bot accounts (audits/manipulation.py)
    bots_cf = scenario.bots is not None and scenario.population.n_users > 0
    bot_free = without_decision_log(bot_free_scenario(scenario)) if bots_cf else None
    # Art. 10/17: only the audited runs attribute slate items to tags (sim/tags.py); the others are the same runs
    cf_scenario, pricer_scenario, dispatcher_scenario, bot_free = (
        None if x is None else without_attribution(x)
        for x in (cf_scenario, pricer_scenario, dispatcher_scenario, bot_free)
    )
    # the audited run probes its recommender for the Art. 16 card check (audits/transparency.py)
    probe = scenario.population.n_users > 0
    defs = market_definitions(cat)  # the quote summaries are folded with the catalogue's definitions
    jobs = []

    def job(role, sc, r, rec=recommender, pr=pricer, disp=dispatcher, probe=False):
        # each job gets its own copies of the plugins: runs must not share (and so mutate) one instance
        jobs.append(_Job(role, sc, r, copy.deepcopy(rec), copy.deepcopy(pr), copy.deepcopy(disp), probe, defs))

    for r in range(reps):
        job("audited", scenario, r, probe=probe)
        job("counterfactual", cf_scenario, r, rec=None, pr=None, disp=None)
        if pricer_cf:
            job("pricer", pricer_scenario, r, pr=None)
        if dispatcher_cf:
            job("dispatcher", dispatcher_scenario, r, disp=None)
        if bots_cf:
            job("bot_free", bot_free, r)
    n_workers = min(len(jobs), os.cpu_count() or 1) if workers is None else max(1, workers)
    check_memory(scenario, runs=len(jobs), concurrent=n_workers)
    outputs = _run_all(jobs, workers=workers, progress=progress)
    by_role: dict[str, list] = {}
    for j, out in zip(jobs, outputs, strict=True):
        by_role.setdefault(j.role, [None] * reps)[j.replication] = out
    recs = [rec for rec, _ in by_role["audited"]]
    probes = [p for _, p in by_role["audited"]]
    cfs = [rec for rec, _ in by_role["counterfactual"]]
    pcfs = [rec for rec, _ in by_role["pricer"]] if pricer_cf else recs
    if dispatcher_cf:
        dcfs = [rec for rec, _ in by_role["dispatcher"]]
    elif scenario.fleet is not None and same_dispatcher:
        dcfs = recs
    else:
        dcfs = cfs
    bfs = [rec for rec, _ in by_role["bot_free"]] if bots_cf else []

    # Art. 28: read and replay each audited run's decision log (audits/logs.py); none kept -> no evidence
    rebuildable = recommender is None and pricer is None and dispatcher is None
    log_evidence = [
        collect_log_evidence(scenario, r, recs[r], resimulate=rebuildable) if scenario.decision_log.enabled else None
        for r in range(reps)
    ]
    conf = scenario.audit.confidence
    per_rep = []
    for r in range(reps):
        rng = spawn_generators(scenario.seed, ("audit",), r)["audit"]
        est = build_estimators(
            recs[r], cfs[r], cat, rng, pricer_counterfactual=pcfs[r], dispatcher_counterfactual=dcfs[r]
        )
        est.update(transparency_estimators(probes[r], recs[r].n_users, Estimator))
        est.update(manipulation_estimators(recs[r], bfs[r] if bots_cf else None, Estimator))
        est.update(log_estimators(log_evidence[r], recs[r], Estimator))
        est.update(tag_estimators(recs[r].tags, recs[r].n_users, Estimator))
        per_rep.append(est)
    labels = {
        "recommender": f"{cf_kind} recommender" + (f", {cf_pricer} pricer" if scenario.market is not None else ""),
        "pricer": f"{cf_pricer} pricer, same recommender",
        "dispatcher": f"{cf_dispatcher} dispatcher, same orders and couriers",
        "card": "the recommender's algorithm card (declared weights)",
        "bots": "the same scenario without bot accounts (bots.n_bots = 0)",
        "log": "the audited run's own decision log",
        "tags": "the same candidates re-ranked without the tags' boost",
    }
    findings = []
    for spec in cat.metrics:
        for cohort in spec.cohorts:
            # one bootstrap stream per (metric, cohort): an estimate listed under two articles gets the
            # same interval, and adding a catalogue line changes no other interval
            name = f"bootstrap:{spec.metric}:{cohort}"
            boot_rng = spawn_generators(scenario.seed, (name,))[name]
            if spec.metric in FLEET_METRICS:
                label = labels["dispatcher"]
            elif spec.metric in TRANSPARENCY_METRICS:
                label = labels["card"]
            elif spec.metric in MANIPULATION_METRICS:
                label = labels["bots"]
            elif spec.metric in LOG_METRICS:
                label = labels["log"]
            elif spec.metric in TAG_METRICS:
                label = labels["tags"]
            else:
                label = labels["pricer" if spec.metric in PRICER_CF_METRICS else "recommender"]
            findings.append(_finding(spec, cohort, per_rep, reps, conf, boot_rng, scenario, label))
    return AuditResult(
        scenario=scenario,
        findings=findings,
        records=recs,
        counterfactual_records=cfs,
        pricer_counterfactual_records=pcfs,
        dispatcher_counterfactual_records=dcfs,
        catalogue=cat,
        wall_seconds=time.perf_counter() - started,
        extra={"probes": probes, "logs": log_evidence, "bot_free_records": bfs},
    )


def _workers_for(workers: int | None, *plugins) -> int | None:
    """Run in this process when a plugin's class lives in ``__main__`` (a notebook or script).

    Spawned worker processes import plugins by module name, and ``__main__`` of a notebook
    is not importable; asking for several workers then is an error that says so.
    """
    local = [type(p).__name__ for p in plugins if p is not None and type(p).__module__ == "__main__"]
    if not local:
        return workers
    if workers is not None and workers > 1:
        raise ValueError(
            f"{', '.join(local)} is defined in __main__ (a notebook or script), which worker processes cannot "
            "import; fix: pass workers=1, or move the class into an importable module"
        )
    return 1


@dataclass(frozen=True)
class _Job:
    """One simulation of an audit: which run it is (``role``) and what it needs."""

    role: str  # "audited", "counterfactual", "pricer", "dispatcher" or "bot_free"
    scenario: Scenario
    replication: int
    recommender: object = None
    pricer: object = None
    dispatcher: object = None
    probe: bool = False  # probe the recommender (Art. 16; the audited run only)
    market_definitions: dict | None = None


def _simulate_job(job: _Job):
    """Run one job; return ``(record, probe)``, the probe (Art. 16) None unless the job asks for one."""
    kw = dict(replication=job.replication, recommender=job.recommender, pricer=job.pricer,
              dispatcher=job.dispatcher, market_definitions=job.market_definitions)  # fmt: skip
    return simulate_with_probes(job.scenario, **kw) if job.probe else (simulate(job.scenario, **kw), None)


def _run_all(jobs: list, workers: int | None, progress: bool) -> list[tuple]:
    """Run simulation jobs, in worker processes when there are several and more than one core.

    Small batches run the kernels on one thread (``sim.engine.PARALLEL_MIN_ROWS``), so
    independent runs side by side use the cores better than one run at a time.
    """
    n_workers = min(len(jobs), os.cpu_count() or 1) if workers is None else max(1, workers)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="run", desc="audit runs", leave=False)
    if n_workers <= 1:
        out = []
        for job in jobs:
            out.append(_simulate_job(job))
            if bar is not None:
                bar.update(1)
    else:
        # "spawn": numba's OpenMP threads must not be forked; children load the cached kernels
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx) as pool:
            futures = [pool.submit(_simulate_job, job) for job in jobs]
            out = []
            for fut in futures:
                out.append(fut.result())
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _finding(spec: MetricSpec, cohort, per_rep, reps, conf, boot_rng, scenario, cf_kind) -> Finding:
    key = (spec.metric, cohort)
    ests = [p[key] for p in per_rep]
    n_scope = int(ests[0].mask.sum())
    base = dict(
        article=spec.article, metric=spec.metric, cohort=cohort, threshold=spec.threshold,
        rule=spec.rule, unit=spec.unit, source=spec.source, n_users=n_scope, replications=reps,
        counterfactual=cf_kind,
    )  # fmt: skip
    if ests[0].undefined_reason:
        return Finding(
            value=None, ci_low=None, ci_high=None, verdict="undefined", note=ests[0].undefined_reason, **base
        )
    if n_scope < MIN_SCOPE:
        return Finding(value=None, ci_low=None, ci_high=None, verdict="undefined",
                       note=f"cohort '{cohort}' absent or too small ({n_scope} users)", **base)  # fmt: skip
    values = [e.value() for e in ests]
    boot = None
    if reps == 1:
        idx = np.flatnonzero(ests[0].mask)
        b = scenario.audit.bootstrap_samples
        boot = np.array([ests[0].stat(idx[boot_rng.integers(0, idx.size, idx.size)]) for _ in range(b)])
    value, lo, hi = _interval(values, boot, conf)
    v, note = verdict(spec.rule, value, lo, hi, spec.threshold, observed_values=values, center=spec.center)
    if ests[0].note:
        note += f"; {ests[0].note}"
    if reps == 1 and spec.rule not in ("info", "zero"):
        note += "; one replication: the interval covers user sampling only, not world-to-world variation"
    return Finding(value=value, ci_low=lo, ci_high=hi, verdict=v, note=note, **base)


def _needs_dispatcher_cf(scenario: Scenario, same_dispatcher: bool) -> bool:
    """Whether the fleet needs a run that swaps only the dispatcher (its orders depend on the feed's purchases)."""
    fs = scenario.fleet
    return fs is not None and fs.orders == "market" and scenario.population.n_users > 0 and not same_dispatcher


def planned_runs(scenario: Scenario, replications: int) -> int:
    """Return the number of simulations an audit of ``scenario`` runs (for the memory check before it starts)."""
    cf_pricer = scenario.audit.counterfactual_pricer
    pricer_cf = scenario.market is not None and (scenario.pricer.kind != cf_pricer or bool(scenario.pricer.params))
    same = scenario.dispatcher.kind == scenario.audit.counterfactual_dispatcher and not scenario.dispatcher.params
    dispatcher_cf = _needs_dispatcher_cf(scenario, same)
    bots_cf = scenario.bots is not None and scenario.population.n_users > 0  # the bot-free run (Art. 14)
    return replications * (2 + int(pricer_cf) + int(dispatcher_cf) + int(bots_cf))


def articles_in_scope(findings: list[Finding]) -> set[int]:
    """Articles with at least one finding about somebody (users or couriers) the scenario simulates."""
    return {f.article for f in findings if f.n_users > 0}


def article_verdicts(findings: list[Finding]) -> dict[int, str]:
    """Roll findings up by article.

    An article fails if any finding fails; passes if every finding that
    carries a verdict (not informational, cohort present) passes; otherwise
    it is undefined.
    """
    out: dict[int, str] = {}
    for art in sorted({f.article for f in findings}):
        vs = [f.verdict for f in findings if f.article == art and f.rule != "info" and f.n_users >= MIN_SCOPE]
        if "fail" in vs:
            out[art] = "fail"
        elif vs and all(v == "pass" for v in vs):
            out[art] = "pass"
        else:
            out[art] = "undefined"
    return out
