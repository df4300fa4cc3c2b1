"""The ``recaudit`` command line.

Commands
--------
run SCENARIO
    Simulate and write metrics.parquet, users.parquet, hourly.parquet (with feed users),
    quotes.parquet (with a market and ``--quote-log`` or ``[market] quote_log = true``),
    deliveries.parquet and worker_days.parquet (with a fleet), manifest.json.
audit SCENARIO
    Also run the counterfactual, and write findings.json, report.html and a draft
    Art. 24 self-assessment (self_assessment.md).
list
    The recommenders, pricers and dispatchers available by name.
sweep SWEEP --out DIR
    Run a sweep of experiments on Dask (resumable); write the experiments and outcomes
    tables, and a policy comparison by lever (policy.parquet, policy.png).
sensitivity SWEEP --out DIR
    Run a ``design = "sobol"`` sweep and write Sobol indices (sobol.parquet, sobol.png).
replay LOGS_DIR --scenario SCENARIO
    Show logged slates (slates.parquet, items.parquet; schema in :mod:`sim.replay`) to
    simulated users, and a counterfactual on the same requests; write findings.json,
    report.html, replay_daily.parquet and manifest.json.

verify-log LOG_DIR
    Replay a decision log (``--decision-log``, Art. 28): re-simulate and recompute its decisions and
    report those that do not reproduce (exit code 3 when some do not).

Exit codes: 0 success, 2 bad input (one line, no traceback), 1 internal error, 3 a decision log that does
not reproduce (verify-log).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import traceback
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="recaudit",
        description="Audit recommendation algorithms against China's 2021 Algorithmic Recommendation "
        "Provisions in an agent-based simulation.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("scenario", help="scenario TOML file, e.g. scenarios/baseline.toml")
        sp.add_argument("--out", default=None, help="output directory (default: out/<scenario name>)")
        sp.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
        sp.add_argument("--users", type=int, default=None, help="override the population size (keeps cohort shares)")
        sp.add_argument("--days", type=int, default=None, help="override the number of simulated days")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")
        sp.add_argument("--decision-log", nargs="?", const="", default=None, metavar="DIR",
                        help="write the decision log (Art. 28: every slate, quote and dispatch) as partitioned "
                        "Parquet under DIR (default: OUT/decisions)")  # fmt: skip
        sp.add_argument("--quote-log", action="store_true",
                        help="keep every price quote and write quotes.parquet (a scenario with a market; "
                        "~90-190 B a quote; the audit itself needs only per-user sums)")  # fmt: skip

    common(sub.add_parser("run", help="simulate a scenario and write its metrics"))
    a = sub.add_parser("audit", help="simulate, run the counterfactual, and write findings and a report")
    common(a)
    a.add_argument("--replications", type=int, default=None, help="replications (default: the scenario's)")
    sub.add_parser("list", help="list the recommenders, pricers and dispatchers available by name")

    def sweep_args(sp):
        sp.add_argument("sweep", help="sweep TOML file, e.g. scenarios/minors_cap_sweep.toml")
        sp.add_argument("--out", required=True, help="output directory (re-run into it to resume)")
        sp.add_argument("--cluster", default=None, help="address of a running Dask scheduler, e.g. tcp://host:8786 "
                        "(default: a local cluster)")  # fmt: skip
        sp.add_argument("--workers", type=int, default=None, help="local cluster workers (default: one per core)")
        sp.add_argument("--retry-failed", action="store_true", help="run again the experiments recorded as errors")
        sp.add_argument("--no-progress", action="store_true", help="no progress bar")

    sweep_args(sub.add_parser("sweep", help="run a sweep of experiments on a Dask cluster (resumable)"))
    sweep_args(sub.add_parser("sensitivity", help="run a design = 'sobol' sweep and compute Sobol indices"))
    r = sub.add_parser("replay", help="replay logged slates to simulated users and audit them (bring your own logs)")
    r.add_argument(
        "logs", help="logs directory holding slates.parquet and items.parquet (schema: README, sim/replay.py)"
    )
    r.add_argument("--scenario", required=True, help="scenario TOML giving behaviour, cohort shares, seed and audit "
                   "settings, e.g. scenarios/replay_example/scenario.toml")  # fmt: skip
    r.add_argument("--out", default=None, help="output directory (default: out/replay-<logs directory name>)")
    r.add_argument("--counterfactual", choices=("uniform", "chronological", "logged"), default="uniform",
                   help="slates compared on the same requests (default: uniform; logged: do-nothing check)")  # fmt: skip
    r.add_argument("--replications", type=int, default=None, help="simulated populations (default: the scenario's)")
    r.add_argument("--seed", type=int, default=None, help="override the scenario's seed")
    r.add_argument("--session-gap", type=float, default=30.0,
                   help="minutes between two requests that start a new logged session (default: 30)")  # fmt: skip
    v = sub.add_parser("verify-log", help="replay a decision log (Art. 28) and check it reproduces")
    v.add_argument("log_dir", help="a decision log: OUT/decisions, or one of its replication=<r> directories")
    v.add_argument("--days", type=int, default=None, help="re-simulate only the first N days (default: all)")
    v.add_argument("--no-resimulate", action="store_true",
                   help="only recompute slates from their logged candidates and scores")  # fmt: skip
    return p


class _BadInput(Exception):
    pass


def _load(args):
    from sim.scenario import load_scenario

    for flag in ("users", "days", "seed", "replications"):
        v = getattr(args, flag, None)
        if v is not None and v < (0 if flag == "seed" else 1):
            raise _BadInput(f"--{flag} must be {'>= 0' if flag == 'seed' else '>= 1'} (got {v})")
    sc = load_scenario(args.scenario)
    sc = sc.with_overrides(n_users=args.users, days=args.days, seed=args.seed)
    from sim.registry import make_dispatcher, make_pricer, make_recommender

    make_recommender(sc.recommender)  # fail fast on a bad plugin, before any simulation
    if sc.market is not None:
        make_pricer(sc.pricer)
    if sc.fleet is not None:
        make_dispatcher(sc.dispatcher)
        from sim.platform import PluginError

        try:
            make_dispatcher(sc.audit.counterfactual_dispatcher)
        except PluginError as exc:
            raise _BadInput(f"{args.scenario}: audit.counterfactual_dispatcher: {exc}") from None
    if getattr(args, "command", None) == "audit":
        from sim.platform import PluginError

        try:
            make_recommender(sc.with_overrides(recommender_kind=sc.audit.counterfactual).recommender)
        except PluginError as exc:
            raise _BadInput(f"{args.scenario}: audit.counterfactual: {exc}") from None
    if sc.market is not None:
        from sim.platform import PluginError

        try:
            make_pricer(sc.audit.counterfactual_pricer)
        except PluginError as exc:
            raise _BadInput(f"{args.scenario}: audit.counterfactual_pricer: {exc}") from None
    out = Path(args.out) if args.out else Path("out") / sc.name
    if getattr(args, "decision_log", None) is not None:  # Art. 28 decision log (sim/decision_log.py)
        where = Path(args.decision_log) if args.decision_log else out / "decisions"
        sc = sc.with_values({"decision_log.enabled": True, "decision_log.path": str(where)}, source=args.scenario)
    if getattr(args, "quote_log", False):
        try:
            sc = sc.with_overrides(quote_log=True)
        except ValueError as exc:
            raise _BadInput(f"--quote-log: {args.scenario}: {exc}; fix: drop --quote-log") from None
    return sc, out


def _progress(args) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _write_run_tables(stage: Path, rec, meta: dict) -> None:
    from sim import output
    from sim.output import write_parquet, write_parquet_batches

    step = output.BATCH_ROWS  # one slice of users (or quotes) in memory at a time
    if rec.n_users:
        write_parquet(rec.daily(), stage / "metrics.parquet", meta)
        n = rec.n_users
        write_parquet_batches((rec.users_frame(slice(lo, lo + step)) for lo in range(0, n, step)),
                              stage / "users.parquet", meta)  # fmt: skip
        write_parquet(rec.hourly(), stage / "hourly.parquet", meta)
    if rec.market is not None and rec.market.quotes is not None:
        # in slices of 1/8 of a users' slice (~12 MB of columns each): a slice is held as a DataFrame, an Arrow
        # table and its cast at once, which with 1M-row slices was ~270 MB on top of the log
        nq, q_step = rec.market.summary.n_total, max(1, step // 8)
        write_parquet_batches((rec.market.quotes_frame(slice(lo, lo + q_step)) for lo in range(0, max(nq, 1), q_step)),
                              stage / "quotes.parquet", meta)  # fmt: skip
    if rec.fleet is not None:
        write_parquet(rec.fleet.orders_frame(), stage / "deliveries.parquet", meta)
        write_parquet(rec.fleet.worker_days_frame(), stage / "worker_days.parquet", meta)
    if rec.manipulation is not None and rec.manipulation.has_hot_list:  # the hot-list log (Art. 14)
        write_parquet(rec.manipulation.hotlist_frame(), stage / "hotlist.parquet", meta)


def _tables(rec) -> str:
    names = ["metrics.parquet", "users.parquet", "hourly.parquet"] if rec.n_users else []
    names += ["quotes.parquet"] if rec.market is not None and rec.market.quotes is not None else []
    names += ["deliveries.parquet", "worker_days.parquet"] if rec.fleet is not None else []
    names += ["hotlist.parquet"] if rec.manipulation is not None and rec.manipulation.has_hot_list else []
    return "".join(f"{n}, " for n in names)


def _cmd_run(args) -> int:
    from sim.engine import simulate
    from sim.memory import check_memory
    from sim.output import manifest, staged_output, write_json

    sc, out = _load(args)
    check_memory(sc)  # before anything is written
    command = "recaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with staged_output(out) as stage:
        rec = simulate(sc, progress=_progress(args))
        meta = manifest(sc, command=command, seed=sc.seed,
                        extra={"wall_seconds": rec.wall_seconds, "agent_steps": rec.agent_steps})  # fmt: skip
        _write_run_tables(stage, rec, meta)
        write_json(meta, stage / "manifest.json")
    _summary_run(rec, out)
    return 0


def _summary_run(rec, out: Path) -> None:
    d = rec.daily()
    last = d[d.day == d.day.max()] if len(d) else d
    who = f"{rec.n_users:,} users" if rec.n_users or rec.fleet is None else f"{rec.fleet.n_workers:,} couriers"
    print(f"simulated {who} for {rec.n_days} days in {rec.wall_seconds:.1f} s"
          + (f" ({rec.agent_steps / max(rec.wall_seconds, 1e-9):,.0f} agent-steps/s)" if rec.n_users else ""))  # fmt: skip
    for _, r in last.iterrows():
        print(f"  {r.cohort:8s} day {int(r.day) + 1}: {r.minutes_mean:6.1f} min/day (P90 {r.minutes_p90:6.1f}), "
              f"night {r.night_minutes_mean:5.1f} min")  # fmt: skip
    if rec.market is not None:
        qs = rec.market.summary
        print(f"  market ({rec.market.pricer} pricer): {qs.n_total:,} offers, {int(qs['n_bought'].sum()):,} purchases, "
              f"{rec.market.money['user_paid_platform']:,.0f} yuan paid on the platform")  # fmt: skip
    if rec.fleet is not None:
        f = rec.fleet
        st = f.orders["status"]
        minutes = f.day_column("online_minutes")
        worked = minutes > 0
        print(f"  fleet ({f.dispatcher} dispatcher): {st.size:,} orders, {int((st == 3).sum()):,} delivered, "
              f"{int((st == 4).sum()):,} cancelled; {minutes[worked].mean() / 60 if worked.any() else 0:.1f} h "
              "per worked courier-day")  # fmt: skip
    print(f"wrote {out}/{_tables(rec)}manifest.json")


_HEADLINES = ("loyal_new_price_ratio", "fraud_exposure_ratio", "net_hourly_pay_to_min_wage")  # under their article


def _cmd_audit(args) -> int:
    import os

    from audits.audit import article_verdicts, articles_in_scope, planned_runs, run_audit
    from audits.report import render_html
    from audits.self_assessment import render_self_assessment
    from sim.memory import check_memory
    from sim.output import manifest, staged_output, write_json

    sc, out = _load(args)
    reps = args.replications or sc.audit.replications
    runs = planned_runs(sc, reps)
    check_memory(sc, runs=runs, concurrent=min(runs, os.cpu_count() or 1))  # before anything is written
    command = "recaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    with staged_output(out) as stage:
        result = run_audit(sc, replications=reps, progress=_progress(args))
        meta = manifest(sc, command=command, seed=sc.seed, replications=reps,
                        extra={"wall_seconds": result.wall_seconds,
                               "counterfactual": sc.audit.counterfactual,
                               "counterfactual_pricer": sc.audit.counterfactual_pricer,
                               "counterfactual_dispatcher": sc.audit.counterfactual_dispatcher})  # fmt: skip
        _write_run_tables(stage, result.records[0], meta)
        write_json([f.to_dict() for f in result.findings], stage / "findings.json")
        (stage / "report.html").write_text(render_html(result, manifest=meta), encoding="utf-8")
        (stage / "self_assessment.md").write_text(render_self_assessment(result, manifest=meta), encoding="utf-8")
        write_json(meta, stage / "manifest.json")
    verdicts = article_verdicts(result.findings)
    scope = articles_in_scope(result.findings)
    who = [f"{sc.population.n_users:,} users"] if sc.population.n_users else []
    who += [f"{sc.fleet.n_workers:,} couriers"] if sc.fleet is not None else []
    cfs = [f"'{sc.audit.counterfactual}'"] if sc.population.n_users else []
    cfs += [f"'{sc.audit.counterfactual_dispatcher}' dispatcher"] if sc.fleet is not None else []
    print(f"audited '{sc.name}': {', '.join(who)}, {sc.clock.days} days, {reps} replication(s), "
          f"counterfactual {' and '.join(cfs)}, {result.wall_seconds:.1f} s")  # fmt: skip
    skipped = [art for art in verdicts if art not in scope]
    for art, v in verdicts.items():
        if art not in scope:
            continue
        fails = [f"{f.metric}/{f.cohort}" for f in result.findings if f.article == art and f.verdict == "fail"]
        print(f"  Art. {art:>2}: {v.upper():9s} {'; '.join(fails[:4])}")
        headline = next((f for f in result.findings if f.article == art and f.metric in _HEADLINES), None)
        if headline is not None and headline.value is not None:
            print(f"           {headline.metric} = {headline.value:.3f} "
                  f"[{headline.ci_low:.3f}, {headline.ci_high:.3f}] ({headline.verdict})")  # fmt: skip
    if skipped:
        print(f"  not simulated in this scenario: {', '.join(f'Art. {a}' for a in skipped)}")
    print(f"wrote {out}/report.html, self_assessment.md, findings.json, {_tables(result.records[0])}manifest.json")
    return 0


def _cmd_list(args) -> int:
    from sim.registry import available_dispatchers, available_pricers, available_recommenders

    print("recommenders: " + ", ".join(available_recommenders()))
    print("pricers (scenarios with a [market] table): " + ", ".join(available_pricers()))
    print("dispatchers (scenarios with a [fleet] table): " + ", ".join(available_dispatchers()))
    print("wrappers (scenario tables): [recommender.diversity], [recommender.non_personalised], "
          "[recommender.hot_list], [recommender.minors_mode]")  # fmt: skip
    return 0


def _sweep(args):
    from sim.sweep.runner import run_sweep

    if args.workers is not None and args.workers < 1:
        raise _BadInput(f"--workers must be >= 1 (got {args.workers})")
    res = run_sweep(args.sweep, args.out, cluster=args.cluster, workers=args.workers, progress=_progress(args),
                    retry_failed=args.retry_failed)  # fmt: skip
    print(f"ran {res.n_run} experiments ({res.n_failed} failed), skipped {res.n_skipped} already done, "
          f"{res.wall_seconds:.1f} s")  # fmt: skip
    if res.n_failed or (len(res.experiments) and (res.experiments["status"] != "ok").any()):
        bad = res.experiments[res.experiments["status"] != "ok"]
        print(f"  {len(bad)} experiment(s) recorded as errors, e.g. {bad['experiment_id'].iloc[0]}: "
              f"{bad['error'].iloc[0]}")  # fmt: skip
    return res


def _cmd_sweep(args) -> int:
    from audits.sweeps import policy_comparison, policy_figure
    from sim.output import write_parquet
    from sim.sweep.spec import load_sweep

    spec, _ = load_sweep(args.sweep)
    res = _sweep(args)
    out = Path(args.out)
    if spec.levers and len(res.outcomes):
        table = policy_comparison(spec, res.experiments, res.outcomes)
        write_parquet(table, out / "policy.parquet", {"sweep": spec.name})
        _write_bytes(out / "policy.png", policy_figure(spec, table))
        _print_policy(spec, table)
    print(
        f"wrote {out}/experiments/, outcomes/ (Parquet datasets)"
        + (", policy.parquet, policy.png" if spec.levers else "")
    )
    return 0


def _write_bytes(path: Path, data: bytes) -> None:
    from sim.output import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def _print_policy(spec, table) -> None:
    levers = [a.column for a in spec.levers]
    for (metric, cohort), g in table.groupby(["outcome", "cohort"], sort=False):
        print(f"  {metric} ({cohort}):")
        for _, r in g.iterrows():
            setting = ", ".join(f"{c}={r[c]}" for c in levers)
            print(f"    {setting:32s} {r['mean']:9.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]  "
                  f"vs reference {r['diff']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]")  # fmt: skip


def _cmd_sensitivity(args) -> int:
    from audits.sweeps import sobol_figure, sobol_indices
    from sim.output import write_parquet
    from sim.sweep.spec import load_sweep

    spec, _ = load_sweep(args.sweep)
    if spec.design != "sobol":
        raise _BadInput(f"{args.sweep}: design = '{spec.design}'; fix: set design = \"sobol\" (and sobol_samples) "
                        "for a sensitivity analysis")  # fmt: skip
    res = _sweep(args)
    table = sobol_indices(spec, res.experiments, res.outcomes)
    out = Path(args.out)
    write_parquet(table, out / "sobol.parquet", {"sweep": spec.name})
    _write_bytes(out / "sobol.png", sobol_figure(spec, table))
    ok = table[table["error"] == ""]
    for (metric, cohort), g in ok.groupby(["outcome", "cohort"], sort=False):
        parts = ", ".join(f"{r.parameter} S1={r.S1:.2f} ST={r.ST:.2f}" for r in g.itertuples())
        print(f"  {metric} ({cohort}): {parts}")
    print(f"wrote {out}/sobol.parquet, sobol.png")
    return 0


def _cmd_replay(args) -> int:
    from audits.audit import article_verdicts, articles_in_scope
    from audits.replay import replay_audit, write_replay_outputs

    for flag, low in (("seed", 0), ("replications", 1)):
        v = getattr(args, flag)
        if v is not None and v < low:
            raise _BadInput(f"--{flag} must be >= {low} (got {v})")
    if not args.session_gap > 0:
        raise _BadInput(f"--session-gap must be > 0 minutes (got {args.session_gap})")
    out = Path(args.out) if args.out else Path("out") / f"replay-{Path(args.logs).resolve().name}"
    result = replay_audit(args.logs, args.scenario, counterfactual=args.counterfactual,
                          replications=args.replications, session_gap_minutes=args.session_gap, seed=args.seed)  # fmt: skip
    command = "recaudit " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_replay_outputs(result, out, command=command)
    s = result.summary()
    print(f"replayed {s['requests']:,} logged requests of {s['users']:,} users over {s['days']} day(s), "
          f"{len(result.records)} simulated population(s), counterfactual '{args.counterfactual}' slates, "
          f"{result.wall_seconds:.1f} s")  # fmt: skip
    print(f"  sessions the log ended while the simulated user would have gone on: "
          f"{s['logged']['truncated_session_share']:.0%} (minutes are a lower bound for them)")  # fmt: skip
    verdicts, scope = article_verdicts(result.findings), articles_in_scope(result.findings)
    for art, v in verdicts.items():
        if art in scope:
            fails = [f"{f.metric}/{f.cohort}" for f in result.findings if f.article == art and f.verdict == "fail"]
            print(f"  Art. {art:>2}: {v.upper():9s} {'; '.join(fails[:4])}")
    print(f"wrote {out}/report.html, findings.json, replay_daily.parquet, manifest.json")
    return 0


def _cmd_verify_log(args) -> int:
    from sim.decision_log import DecisionLogError, log_dirs, replay

    if args.days is not None and args.days < 1:
        raise _BadInput(f"--days must be >= 1 (got {args.days})")
    dirs = log_dirs(args.log_dir)
    if not dirs:
        raise _BadInput(f"{args.log_dir}: no complete decision log here (no retention.json, no replication=<r> "
                        "directories); fix: run with --decision-log and point to OUT/decisions")  # fmt: skip
    ok = True
    for d in dirs:
        try:
            report = replay(d, days=args.days, resimulate=not args.no_resimulate)
        except DecisionLogError as exc:
            raise _BadInput(str(exc)) from None
        print("\n".join(report.lines()))
        ok &= report.ok
    return 0 if ok else 3


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``recaudit`` console script; returns the exit code."""
    from sim.output import OutputError
    from sim.scenario import ScenarioError

    args = _parser().parse_args(argv)
    try:
        commands = {"run": _cmd_run, "audit": _cmd_audit, "list": _cmd_list, "sweep": _cmd_sweep,
                    "sensitivity": _cmd_sensitivity, "replay": _cmd_replay,
                    "verify-log": _cmd_verify_log}  # fmt: skip
        return commands[args.command](args)
    except (ScenarioError, _BadInput, OutputError) as exc:
        print(f"recaudit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command in ("sweep", "sensitivity"):
            print("recaudit: interrupted; finished experiments are kept: run the same command again to resume",
                  file=sys.stderr)  # fmt: skip
        else:
            print("recaudit: interrupted; no partial results were written", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the last resort: report an internal error
        print("recaudit: internal error (please report it with the traceback below)", file=sys.stderr)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
