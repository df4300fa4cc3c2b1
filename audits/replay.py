"""Replay audit ("bring your own logs"): what logged slates do to simulated users, article by article.

The logged slates of a real system (schema: :mod:`sim.replay`) are shown, request by
request, to users drawn from a scenario's population, and so is a declared
counterfactual on the same requests with the same random numbers (``uniform``
random slates from the same items table, ``chronological`` newest-first slates,
or ``logged``: the logged slates themselves, a do-nothing check whose
differences are exactly zero). Both replays become :class:`sim.record.RunRecord`
objects, so the findings are the audit's own: the estimators of
:func:`audits.metrics.build_estimators`, the catalogue lines of
``audits/thresholds.toml`` for the feed (Art. 8, 12, 18), intervals from
replications over simulated populations (a t-interval with two or more, a
bootstrap over users with one) and the verdict rules of :func:`audits.audit.verdict`.

What logs cannot evidence is left out of the verdicts, with the reason in the
finding (n_users 0): Art. 17 (the logs do not say who switched personalisation
off) and rest prompts (not logged). Three paired contrasts, informational, add
what the catalogue states only as levels: night minutes and harmful exposure
of minors, and feed entropy, each logged minus counterfactual.

Public objects
--------------
replay_audit
    Replay a log and its counterfactual; return a :class:`ReplayAuditResult`.
ReplayAuditResult
    Findings, records and the replay's diagnostics.
write_replay_outputs
    Write findings.json, report.html, replay_daily.parquet and manifest.json (atomically).
replay_estimators
    The audit's estimators for a pair of replays, adapted to what logs show.
CONTRASTS, NOT_IN_LOGS
    The replay's extra (informational) lines and the catalogue metrics logs cannot evidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from audits.audit import Finding, _finding
from audits.catalogue import Catalogue, MetricSpec, load_catalogue
from audits.fleet_metrics import FLEET_METRICS
from audits.market_metrics import MARKET_METRICS
from audits.metrics import Estimator, build_estimators, cohort_masks
from sim.record import RunRecord
from sim.replay import COUNTERFACTUALS, ReplayLog, counterfactual_slates, load_logs, replay, replay_scenario
from sim.rng import spawn_generators
from sim.scenario import COHORTS, Scenario, ScenarioError, load_scenario

__all__ = ["CONTRASTS", "NOT_IN_LOGS", "ReplayAuditResult", "replay_audit", "replay_estimators",
           "write_replay_outputs"]  # fmt: skip

_SOURCE = "recaudit replay: logged minus counterfactual slates on the same requests and random numbers"
CONTRASTS = (
    MetricSpec(article=18, metric="night_minutes_increase", cohorts=("minor",), rule="info", threshold=None,
               unit="minutes per minor-day (difference)", source=_SOURCE,
               description="Minutes watched 22:00-06:00 per minor-day, logged minus counterfactual slates."),
    MetricSpec(article=18, metric="harmful_impression_share_increase", cohorts=("minor",), rule="info",
               threshold=None, unit="share of impressions (difference)", source=_SOURCE,
               description="Share of harmful items among the slates minors saw, logged minus counterfactual."),
    MetricSpec(article=12, metric="feed_entropy_difference", cohorts=("all",), rule="info", threshold=None,
               unit="nats (difference)", source=_SOURCE,
               description="Mean daily category entropy of each user's feed, logged minus counterfactual."),
)  # fmt: skip
NOT_IN_LOGS = {
    "optout_profile_alignment": "not assessed from logs: they do not say who switched personalisation off (Art. 17)",
    "unprompted_streaks_per_day": "not assessed from logs: rest prompts are not logged",
}


@dataclass
class ReplayAuditResult:
    """A replay audit: findings, the replays they came from, and diagnostics.

    Attributes
    ----------
    scenario : Scenario
        The scenario adapted to the log (:func:`sim.replay.replay_scenario`).
    log : ReplayLog
    findings : list of Finding
    records, counterfactual_records : list of RunRecord
        One per replication: the logged slates and the counterfactual slates.
    catalogue : Catalogue
    counterfactual : str
    session_gap_minutes : float
    wall_seconds : float
    """

    scenario: Scenario
    log: ReplayLog
    findings: list[Finding]
    records: list[RunRecord]
    counterfactual_records: list[RunRecord]
    catalogue: Catalogue
    counterfactual: str
    session_gap_minutes: float
    wall_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """Return the log's size and the replays' diagnostics (JSON-ready; also in the manifest)."""
        log = self.log

        def diag(recs):
            tot = {k: int(sum(r.extra[k] for r in recs)) for k in ("views", "sessions", "truncated_sessions")}
            return {
                "views_per_replication": tot["views"] / len(recs),
                "unused_request_share": 1.0 - tot["views"] / (log.n_requests * len(recs)),
                "truncated_session_share": tot["truncated_sessions"] / max(tot["sessions"], 1),
            }

        users = np.bincount(self.records[0].cohort, minlength=3)
        return {
            "requests": log.n_requests,
            "users": log.n_users,
            "users_by_cohort": {c: int(users[i]) for i, c in enumerate(COHORTS)},
            "users_with_logged_cohort": int((log.user_cohort >= 0).sum()),
            "items": log.n_items,
            "categories": int(log.category_id.size),
            "embedding_dim": int(log.item_embedding.shape[1]),
            "days": log.n_days,
            "start_date": log.start_date,
            "mean_slate_length": float(log.slate_lengths.mean()),
            "logged": diag(self.records),
            "counterfactual": diag(self.counterfactual_records),
        }


def _nobody(n: int, reason: str) -> Estimator:
    return Estimator(np.zeros(n, dtype=bool), lambda idx: float("nan"), undefined_reason=reason)


def replay_estimators(
    t: RunRecord, c: RunRecord, catalogue: Catalogue, rng: np.random.Generator
) -> dict[tuple[str, str], Estimator]:
    """Return the audit's estimators for a logged replay ``t`` and its counterfactual ``c``, plus the contrasts.

    Parameters
    ----------
    t, c : RunRecord
        Replays of the logged and the counterfactual slates (same population, same random numbers).
    catalogue : Catalogue
    rng : numpy.random.Generator
        For the audit's pair permutations (:func:`audits.metrics.build_estimators`).
    """
    est = build_estimators(t, c, catalogue, rng)
    n = t.n_users
    for metric, reason in NOT_IN_LOGS.items():
        for key in [k for k in est if k[0] == metric]:
            est[key] = _nobody(n, reason)
    if t.creator_minutes is None:
        for metric in ("creator_attention_gini", "creator_gini_increase"):
            est[(metric, "all")] = _nobody(n, "the items table has no creator_id column")
    minor = cohort_masks(t)["minor"]
    night_t = t.day_column("night_minutes").mean(axis=0, dtype=np.float64)
    night_c = c.day_column("night_minutes").mean(axis=0, dtype=np.float64)
    est[("night_minutes_increase", "minor")] = Estimator(minor, lambda idx: float(np.mean(night_t[idx] - night_c[idx])))

    def harm_share(rec, idx):
        imp = rec.day_column("impressions")[:, idx].sum(dtype=np.float64)
        return rec.day_column("harmful_impressions")[:, idx].sum(dtype=np.float64) / imp if imp > 0 else 0.0

    est[("harmful_impression_share_increase", "minor")] = Estimator(
        minor, lambda idx: float(harm_share(t, idx) - harm_share(c, idx))
    )
    with np.errstate(invalid="ignore"):
        ent_t = np.nanmean(t.feed_days[:, :, 0], axis=0) if t.n_days else np.full(n, np.nan)
        ent_c = np.nanmean(c.feed_days[:, :, 0], axis=0) if c.n_days else np.full(n, np.nan)
    both = np.isfinite(ent_t) & np.isfinite(ent_c)
    diff = np.nan_to_num(ent_t - ent_c)
    est[("feed_entropy_difference", "all")] = Estimator(both, lambda idx: float(np.mean(diff[idx])))
    return est


def replay_specs(catalogue: Catalogue, estimated: set | dict) -> list[MetricSpec]:
    """Return the catalogue lines a replay reports, then the replay's contrasts.

    The feed's lines: market and fleet lines are left out, and so is any line whose
    (metric, cohort) pairs ``estimated`` lacks (a line that needs the recommender itself).
    """
    skip = set(MARKET_METRICS) | set(FLEET_METRICS)
    lines = [
        s for s in catalogue.metrics if s.metric not in skip and all((s.metric, c) in estimated for c in s.cohorts)
    ]
    return lines + list(CONTRASTS)


def replay_audit(
    logs: str | Path | ReplayLog,
    scenario: str | Path | Scenario,
    counterfactual: str = "uniform",
    replications: int | None = None,
    session_gap_minutes: float = 30.0,
    seed: int | None = None,
    catalogue: Catalogue | None = None,
) -> ReplayAuditResult:
    """Replay logged slates and a counterfactual to simulated users; return findings.

    Parameters
    ----------
    logs : str, Path or ReplayLog
        A logs directory (``slates.parquet``, ``items.parquet``; schema in :mod:`sim.replay`).
    scenario : str, Path or Scenario
        Behaviour, population shares, seed and audit settings (confidence, bootstrap
        samples, default replications). Its recommender, market and fleet are not used.
    counterfactual : {"uniform", "chronological", "logged"}
        Slates compared with the logged ones on the same requests (:func:`sim.replay.counterfactual_slates`).
    replications : int, optional
        Simulated populations (default ``scenario.audit.replications``).
    session_gap_minutes : float
        A longer gap between two requests of a user starts a new logged session (minutes, > 0).
    seed : int, optional
        Overrides the scenario's seed.
    catalogue : Catalogue, optional
        Defaults to the packaged ``audits/thresholds.toml``.

    Raises
    ------
    ScenarioError
        A bad log, scenario or option (one line per problem).
    """
    started = time.perf_counter()
    if counterfactual not in COUNTERFACTUALS:
        raise ScenarioError(f"counterfactual '{counterfactual}' is not known; fix: use one of "
                            f"{', '.join(COUNTERFACTUALS)}")  # fmt: skip
    if not session_gap_minutes > 0:
        raise ScenarioError(f"session gap must be > 0 minutes (got {session_gap_minutes}); fix: e.g. 30")
    if replications is not None and replications < 1:
        raise ScenarioError(f"replications must be >= 1 (got {replications})")
    log = logs if isinstance(logs, ReplayLog) else load_logs(logs)
    base = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    if seed is not None:
        base = base.with_overrides(seed=seed)
    sc = replay_scenario(base, log)
    cat = catalogue or load_catalogue()
    reps = replications or sc.audit.replications
    cf_slates = counterfactual_slates(log, counterfactual, sc.seed)
    recs, cfs, per_rep = [], [], []
    for r in range(reps):
        t = replay(log, sc, None, r, session_gap_minutes, label="logged")
        c = replay(log, sc, cf_slates, r, session_gap_minutes, label=counterfactual)
        rng = spawn_generators(sc.seed, ("audit",), r)["audit"]
        per_rep.append(replay_estimators(t, c, cat, rng))
        recs.append(t)
        cfs.append(c)
    label = f"{counterfactual} slates, same requests"
    findings = []
    for spec in replay_specs(cat, per_rep[0]):
        for cohort in spec.cohorts:
            name = f"bootstrap:{spec.metric}:{cohort}"  # the audit's stream per (metric, cohort)
            boot_rng = spawn_generators(sc.seed, (name,))[name]
            findings.append(_finding(spec, cohort, per_rep, reps, sc.audit.confidence, boot_rng, sc, label))
    return ReplayAuditResult(
        scenario=sc, log=log, findings=findings, records=recs, counterfactual_records=cfs, catalogue=cat,
        counterfactual=counterfactual, session_gap_minutes=float(session_gap_minutes),
        wall_seconds=time.perf_counter() - started,
    )  # fmt: skip


def daily_table(result: ReplayAuditResult) -> pd.DataFrame:
    """One row per arm, replication, day and cohort (the ``replay_daily.parquet`` table)."""
    frames = []
    for arm, recs in (("logged", result.records), (result.counterfactual, result.counterfactual_records)):
        for rec in recs:
            d = rec.daily(result.catalogue.definitions["compulsive_ratio"])
            d.insert(0, "replication", rec.replication)
            d.insert(0, "arm", arm if arm == "logged" else f"counterfactual:{arm}")
            frames.append(d)
    out = pd.concat(frames, ignore_index=True)
    out.insert(3, "date", (pd.Timestamp(result.log.start_date) + pd.to_timedelta(out["day"], unit="D")).dt.date)
    return out


def write_replay_outputs(result: ReplayAuditResult, out: str | Path, command: str = "") -> dict:
    """Write the replay audit's files into ``out`` (staged, moved into place only when complete).

    Files: ``findings.json``, ``report.html``, ``replay_daily.parquet`` (one row per arm,
    replication, day and cohort) and ``manifest.json`` (the adapted scenario, seed,
    versions, the logs' paths and SHA-256, the counterfactual and the diagnostics).

    Returns
    -------
    dict
        The manifest.
    """
    from audits.replay_report import render_replay_html
    from sim.output import manifest, staged_output, write_json, write_parquet

    sc = result.scenario
    meta = manifest(sc, command=command, seed=sc.seed, replications=len(result.records),
                    extra={"wall_seconds": result.wall_seconds, "logs": result.log.sources,
                           "counterfactual": result.counterfactual,
                           "session_gap_minutes": result.session_gap_minutes, "replay": result.summary()})  # fmt: skip
    with staged_output(out) as stage:
        write_json([f.to_dict() for f in result.findings], stage / "findings.json")
        write_parquet(daily_table(result), stage / "replay_daily.parquet", meta)
        (stage / "report.html").write_text(render_replay_html(result, manifest=meta), encoding="utf-8")
        write_json(meta, stage / "manifest.json")
    return meta
