"""Art. 28 (logs): every algorithmic decision logged, kept long enough, and reproducible.

Art. 28 of the Provisions: providers "retain network logs according to law" and give inspections technical and
data support (regulation-map.md row 28). The audit reads the decision log the audited run wrote
(:mod:`sim.decision_log`, ``[decision_log]`` in the scenario or ``--decision-log``) and checks three things,
for each kind of decision the scenario simulates (slates with feed users, price quotes with a market,
dispatches with a fleet):

- ``unlogged_decision_share``: the share of the run's decisions without a complete log row (inputs, algorithm
  version, outputs: :data:`sim.decision_log.REQUIRED_FIELDS`). The denominators come from the run's own
  record, not from the logger: agent-steps (one slate decision each), quotes in the market's record, orders in
  the fleet's record. The numerators are counted on disk, in the Parquet files.
- ``log_retention_days`` (slates) and ``transaction_log_retention_days`` (quotes, dispatches): the retention
  horizon the log declares (``retention.json``) against the legal minimum (Cybersecurity Law Art. 21: six
  months; E-Commerce Law Art. 31: three years for transaction records).
- ``replay_mismatch_share``: the share of checked decisions that do not reproduce bit for bit when the
  audit re-simulates the first ``decision_log.replay_days`` days from the scenario and seed stored with the
  log, plus (slates) every logged slate recomputed from its logged candidates and scores.

A platform that keeps no log (logging off, or a kind left out of ``decision_log.kinds``) fails completeness
(share 1) and retention (0 days): Art. 28 makes retention a duty, so its absence is a failure, not a gap in
the evidence. Replayability is then undefined (nothing to replay). These are counts over the whole run (a
census, not a sample of users), so their intervals have no width.

Public objects
--------------
LogEvidence, collect_log_evidence, log_estimators, LOG_METRICS
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.scenario import DECISION_KINDS, Scenario

__all__ = ["LOG_METRICS", "LogEvidence", "collect_log_evidence", "log_estimators"]

LOG_METRICS = (
    "unlogged_decision_share",
    "log_retention_days",
    "transaction_log_retention_days",
    "replay_mismatch_share",
)
_TRANSACTION_KINDS = ("quote", "dispatch")


@dataclass
class LogEvidence:
    """What one replication's decision log shows.

    Attributes
    ----------
    log_dir : Path or None
        The run's log; None when the platform kept none.
    simulated : dict of str -> bool
        Whether the scenario makes decisions of each kind.
    decisions : dict of str -> int
        Decisions the run made, from its record.
    rows, complete_rows : dict of str -> int
        Rows in the log, and rows with inputs, version and outputs.
    retention_days : dict of str -> int
        Declared horizon (0 when not logged).
    replay_checked, replay_mismatched : dict of str -> int
        Decisions checked by replay, and those that did not reproduce.
    rows_by_hour : dict of str -> list of int (24,)
        Logged decisions by hour of day (figure).
    replay_lines : list of str
        The replay's summary.
    reason : str
        Why there is no log, when there is none.
    """

    log_dir: Path | None
    simulated: dict
    decisions: dict
    rows: dict = field(default_factory=dict)
    complete_rows: dict = field(default_factory=dict)
    retention_days: dict = field(default_factory=dict)
    replay_checked: dict = field(default_factory=dict)
    replay_mismatched: dict = field(default_factory=dict)
    rows_by_hour: dict = field(default_factory=dict)
    replay_lines: list = field(default_factory=list)
    reason: str = ""


def _decisions(record) -> tuple[dict, dict]:
    simulated = {"slate": record.n_users > 0, "quote": record.market is not None, "dispatch": record.fleet is not None}
    decisions = {
        "slate": int(record.agent_steps) if simulated["slate"] else 0,
        "quote": record.market.summary.n_total if simulated["quote"] else 0,
        "dispatch": int(np.asarray(record.fleet.orders["status"]).size) if simulated["dispatch"] else 0,
    }
    return simulated, decisions


def collect_log_evidence(
    scenario: Scenario, replication: int, record, replay_days: int | None = None, resimulate: bool = True
) -> LogEvidence:
    """Read and replay the decision log of one audited run.

    Parameters
    ----------
    scenario : Scenario
        The audited scenario (its ``decision_log`` says where the log is).
    replication : int
    record : sim.record.RunRecord
        The audited run (the denominators).
    replay_days : int, optional
        Days to re-simulate (default ``scenario.decision_log.replay_days``).
    resimulate : bool
        Re-simulate (False when the audited algorithm was an instance the scenario cannot rebuild: only the
        slates' recomputation from logged scores is then checked).
    """
    from sim.decision_log import DecisionLogError, count_complete, read_log, replay

    simulated, decisions = _decisions(record)
    st = scenario.decision_log
    if not st.enabled:
        return LogEvidence(None, simulated, decisions, reason="the platform keeps no decision log")
    log_dir = Path(st.path) / f"replication={replication}"
    try:
        meta = read_log(log_dir)
    except DecisionLogError as exc:
        return LogEvidence(None, simulated, decisions, reason=str(exc))
    ev = LogEvidence(log_dir, simulated, decisions)
    for kind in DECISION_KINDS:
        info = meta["kinds"].get(kind)
        ev.rows[kind], ev.complete_rows[kind] = count_complete(log_dir, kind) if info else (0, 0)
        ev.retention_days[kind] = int(info["retention_days"]) if info else 0
        ev.rows_by_hour[kind] = info["rows_by_hour"] if info else [0] * 24
    rep = replay(log_dir, days=replay_days or st.replay_days, resimulate=resimulate)
    for kind in DECISION_KINDS:
        c = rep.resimulated.get(kind)
        checked = (c.logged + c.extra) if c else 0
        bad = (c.mismatched + c.extra) if c else 0
        if kind == "slate" and rep.recomputed:
            checked += rep.recomputed["checked"]
            bad += rep.recomputed["mismatched"]
        ev.replay_checked[kind], ev.replay_mismatched[kind] = checked, bad
    ev.replay_lines = rep.lines()
    return ev


def log_estimators(ev: LogEvidence | None, record, estimator) -> dict:
    """Estimators of the Art. 28 lines for one replication, keyed by (metric, kind).

    Parameters
    ----------
    ev : LogEvidence or None
        None when the audit did not look (treated as no log).
    record : sim.record.RunRecord
        The audited run: the scope is its users (slates, quotes) or couriers (dispatches).
    estimator : type
        :class:`audits.metrics.Estimator`.

    Notes
    -----
    The statistics are run-level counts and do not depend on which users a bootstrap draws.
    """
    if ev is None:
        simulated, decisions = _decisions(record)
        ev = LogEvidence(None, simulated, decisions, reason="the platform keeps no decision log")
    if record.scenario.decision_log.enabled is None:  # logging not modelled: Art. 28 is not assessed
        not_modelled = ("the scenario does not model the platform's logs (add a [decision_log] table; "
                        "enabled = false declares a platform that keeps none)")  # fmt: skip
        ev = LogEvidence(None, {kind: False for kind in DECISION_KINDS}, ev.decisions, reason=not_modelled)
    n_workers = record.fleet.n_workers if record.fleet is not None else 0
    est = {}
    for kind in DECISION_KINDS:
        n_scope = n_workers if kind == "dispatch" else record.n_users
        mask = np.ones(n_scope, dtype=bool) if ev.simulated[kind] else np.zeros(record.n_users, dtype=bool)
        absent = (
            "" if ev.simulated[kind] else (ev.reason if ev.decisions[kind] else f"no {kind} decisions in this scenario")
        )
        made = ev.decisions[kind]
        logged = ev.complete_rows.get(kind, 0)
        unlogged = 1.0 - min(logged, made) / made if made else 0.0
        note = (f"{logged:,} of {made:,} decisions logged completely" if ev.log_dir is not None
                else f"{ev.reason}; {made:,} decisions unlogged")  # fmt: skip
        if ev.log_dir is not None and ev.rows.get(kind, 0) > made:
            note += f"; {ev.rows[kind] - made:,} rows more than decisions made"
            unlogged = max(unlogged, (ev.rows[kind] - made) / made) if made else 1.0
        est[("unlogged_decision_share", kind)] = estimator(
            mask, lambda idx, v=unlogged: v, undefined_reason=absent, note=note
        )
        days = float(ev.retention_days.get(kind, 0))
        metric = "transaction_log_retention_days" if kind in _TRANSACTION_KINDS else "log_retention_days"
        est[(metric, kind)] = estimator(
            mask, lambda idx, v=days: v, undefined_reason=absent,
            note="declared in retention.json" if ev.log_dir is not None else ev.reason,
        )  # fmt: skip
        checked = ev.replay_checked.get(kind, 0)
        bad = ev.replay_mismatched.get(kind, 0)
        reason = absent or ("" if ev.log_dir is not None else f"{ev.reason}: nothing to replay")
        if not reason and checked == 0:
            reason = f"no {kind} decision in the replayed window"
        est[("replay_mismatch_share", kind)] = estimator(
            mask, lambda idx, v=(bad / checked if checked else float("nan")): v, undefined_reason=reason,
            note=f"{bad:,} of {checked:,} checked decisions did not reproduce",
        )  # fmt: skip
    return est


def decisions_by_hour_figure(evidence: list) -> bytes:
    """Draw decisions logged per hour of day by kind (mean over replications with a log), PNG bytes.

    Parameters
    ----------
    evidence : list of LogEvidence or None
        One per replication.
    """
    from audits.figures import _figure, _png

    logs = [e for e in evidence if e is not None and e.log_dir is not None]
    fig, ax = _figure((7.5, 3.2))
    hours = np.arange(24)
    colors = {"slate": "#1f77b4", "quote": "#ff7f0e", "dispatch": "#2ca02c"}
    drawn = False
    for kind in DECISION_KINDS:
        if not logs or not any(e.simulated[kind] for e in logs):
            continue
        per_hour = np.mean([np.asarray(e.rows_by_hour.get(kind, [0] * 24), dtype=float) for e in logs], axis=0)
        ax.plot(hours, np.maximum(per_hour, 0.5), marker="o", ms=3, color=colors[kind], label=kind)
        drawn = True
    if drawn:
        ax.set_yscale("log")
        ax.legend(frameon=False)
    else:
        ax.text(0.5, 0.5, "no decision log kept", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks(range(0, 24, 3))
    ax.set_xlabel("hour of day")
    ax.set_ylabel("decisions logged (whole run)")
    ax.set_title("Art. 28: decisions in the log by hour and kind")
    return _png(fig)
