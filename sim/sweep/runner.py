"""Run a sweep on a Dask cluster: resumable, failure-tolerant, deterministic.

Layout of the output directory::

    DIR/sweep.json                         the sweep, its resolved base scenario and fingerprint
    DIR/experiments/part-<batch>.parquet   one row per finished experiment (ok or error)
    DIR/outcomes/outcome=<name>/part-<batch>.parquet
                                           experiment_id, cohort, value (hive-partitioned by outcome;
                                           the partition column is not repeated inside the files)

Finished experiments are written in batches. Each file is written under a
hidden name and renamed into place, the outcome files before the experiments
file: an experiment counts as done once its experiments row exists, and on
resumption outcome files of a batch without one (a run killed between the two
writes) are removed. Re-running the same sweep into the same directory runs
only the experiments not yet done. A run that raises is recorded as an
experiments row with ``status = "error"`` and the message; the sweep goes on.

Every experiment is a pure function of its scenario, seed and replication, so
the tables do not depend on the number of workers or on where they run.

Public objects
--------------
run_sweep
    Run (or resume) a sweep; returns a :class:`SweepResult`.
run_experiment
    The task run on a worker.
read_tables
    The experiments and outcomes tables of a sweep directory as DataFrames.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from sim.output import atomic_path
from sim.scenario import ScenarioError
from sim.sweep.spec import Experiment, SweepSpec, expand, fingerprint, load_sweep

__all__ = ["SweepResult", "read_tables", "run_experiment", "run_sweep"]

FLUSH_EVERY = 8  # experiments per written batch
FLUSH_SECONDS = 20.0  # ... or at most this long between writes


@dataclass
class SweepResult:
    """What a sweep run did, and its tables."""

    out: Path
    n_experiments: int
    n_skipped: int
    n_run: int
    n_failed: int
    wall_seconds: float
    experiments: pd.DataFrame
    outcomes: pd.DataFrame


def run_experiment(exp: Experiment, outcomes: list[str], numba_threads: int = 1) -> dict:
    """Simulate one experiment and evaluate its outcomes (runs on a Dask worker).

    Returns
    -------
    dict
        ``row``: the experiments row; ``outcomes``: a list of (outcome, cohort, value).
        Errors are caught and returned as ``status = "error"`` rows.
    """
    import numba

    from audits.outcomes import outcome_value, parse_outcome
    from sim.engine import simulate
    from sim.scenario import scenario_from_dict

    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
    started = time.perf_counter()
    row = dict(experiment_id=exp.experiment_id, design_point=exp.design_point, replication=exp.replication,
               seed=exp.seed, **exp.values)  # fmt: skip
    try:
        sc = scenario_from_dict(exp.scenario, source=f"experiment {exp.experiment_id}")
        rec = simulate(sc, replication=exp.replication)
        values = []
        for text in outcomes:
            metric, cohort = parse_outcome(text)
            values.append((metric, cohort, outcome_value(rec, metric, cohort)))
        row.update(status="ok", error="")
    except Exception as exc:  # noqa: BLE001 - a failed run is data, not the end of the sweep
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
        row.update(status="error", error=f"{type(exc).__name__}: {exc}{where}")
        values = []
    row["wall_seconds"] = time.perf_counter() - started
    return {"row": row, "outcomes": values}


def _write_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def _flush(out: Path, results: list[dict]) -> None:
    if not results:
        return
    batch = f"{results[0]['row']['experiment_id']}-{uuid.uuid4().hex[:8]}"
    rows = [(r["row"]["experiment_id"], *o) for r in results for o in r["outcomes"]]
    if rows:
        frame = pd.DataFrame(rows, columns=["experiment_id", "outcome", "cohort", "value"])
        for name, part in frame.groupby("outcome", sort=True):
            table = pa.Table.from_pandas(part.drop(columns="outcome"), preserve_index=False)
            _write_atomic(table, out / "outcomes" / f"outcome={name}" / f"part-{batch}.parquet")
    exp = pd.DataFrame([r["row"] for r in results])
    _write_atomic(pa.Table.from_pandas(exp, preserve_index=False), out / "experiments" / f"part-{batch}.parquet")


def read_tables(out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (experiments, outcomes) of a sweep directory, sorted by experiment id."""
    out = Path(out)
    exp_dir, out_dir = out / "experiments", out / "outcomes"
    exps = (
        ds.dataset(exp_dir, format="parquet").to_table().to_pandas()
        if exp_dir.is_dir() and any(exp_dir.glob("part-*.parquet"))
        else pd.DataFrame(columns=["experiment_id", "status"])
    )
    if out_dir.is_dir() and any(out_dir.glob("outcome=*/part-*.parquet")):
        outs = ds.dataset(out_dir, format="parquet", partitioning="hive").to_table().to_pandas()
        outs["outcome"] = outs["outcome"].astype(str)
    else:
        outs = pd.DataFrame(columns=["experiment_id", "cohort", "value", "outcome"])
    exps = exps.sort_values("experiment_id", kind="stable").reset_index(drop=True)
    outs = outs.sort_values(["experiment_id", "outcome", "cohort"], kind="stable").reset_index(drop=True)
    return exps, outs


def _prepare(out: Path, spec: SweepSpec, base, sweep_path: str) -> None:
    """Create or check the output directory; drop outcome files of unfinished batches."""
    fp = fingerprint(spec, base)
    meta = out / "sweep.json"
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("fingerprint") != fp:
            raise ScenarioError(
                f"{out} holds a different sweep ('{old.get('name')}', fingerprint {old.get('fingerprint')}); "
                "fix: give a new --out directory, or delete the old one"
            )
    else:
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"name": spec.name, "sweep_file": sweep_path, "fingerprint": fp,
                           "spec": spec.model_dump(), "base_scenario": base.model_dump()}, indent=2, default=str)  # fmt: skip
        with atomic_path(meta) as tmp:
            tmp.write_text(text)
    done = {p.stem.removeprefix("part-") for p in (out / "experiments").glob("part-*.parquet")}
    for p in (out / "outcomes").glob("outcome=*/part-*.parquet"):
        if p.stem.removeprefix("part-") not in done:
            p.unlink()
    for p in out.rglob(".*.tmp"):
        p.unlink()


def _warm_cache(experiments: list[Experiment]) -> None:
    """Compile (or load) every kernel once here, so workers load them from numba's cache."""
    from sim.engine import simulate
    from sim.scenario import scenario_from_dict

    for exp in experiments[:1]:
        data = json.loads(json.dumps(exp.scenario))
        data["population"]["n_users"] = min(200, data["population"]["n_users"])
        data["clock"]["days"] = 1
        try:
            simulate(scenario_from_dict(data))
        except Exception:  # noqa: BLE001 - the experiment itself will record the error
            pass


def _client(cluster: str | None, workers: int | None, processes: bool):
    from dask.distributed import Client, LocalCluster

    if cluster:
        try:
            return Client(cluster, timeout="20s"), None
        except (OSError, ValueError, TypeError) as exc:
            raise ScenarioError(
                f"--cluster {cluster}: cannot reach a Dask scheduler ({exc}); fix: start one with "
                "'dask scheduler' and 'dask worker ADDRESS', or leave --cluster out for a local cluster"
            ) from None
    n = workers or os.cpu_count() or 1
    local = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes, dashboard_address=":0",
                         silence_logs=40)  # fmt: skip
    return Client(local), local


def run_sweep(
    sweep: str | Path,
    out: str | Path,
    cluster: str | None = None,
    workers: int | None = None,
    processes: bool = True,
    progress: bool = False,
    retry_failed: bool = False,
    log=print,
    flush_every: int = FLUSH_EVERY,
) -> SweepResult:
    """Run (or resume) the sweep in file ``sweep``, writing its tables under ``out``.

    Parameters
    ----------
    sweep : path
        The sweep TOML file.
    out : path
        Output directory (created; must hold this sweep or nothing).
    cluster : str, optional
        Address of a running Dask scheduler (``tcp://host:port``); default: a local cluster.
    workers : int, optional
        Workers of the local cluster (default: one per core).
    processes : bool
        Local cluster workers as processes (default) or threads in this process.
    progress : bool
        Show a progress bar.
    retry_failed : bool
        Run again the experiments recorded as errors.
    log : callable
        Where progress lines go.
    flush_every : int
        Finished experiments per written batch (what a kill can lose at most).
    """
    started = time.perf_counter()
    spec, base = load_sweep(sweep)
    out = Path(out)
    experiments = expand(spec, base)
    try:
        _prepare(out, spec, base, str(sweep))
    except OSError as exc:
        raise ScenarioError(f"--out {out}: cannot use it as the sweep's directory ({exc}); fix: give a "
                            "writable directory path") from None  # fmt: skip
    exps_done, _ = read_tables(out)
    ok = set(exps_done.loc[exps_done["status"] == "ok", "experiment_id"]) if len(exps_done) else set()
    failed = set(exps_done.loc[exps_done["status"] != "ok", "experiment_id"]) if len(exps_done) else set()
    if retry_failed and failed:
        # forget the failed rows: rewrite the experiments parts without them
        for p in (out / "experiments").glob("part-*.parquet"):
            t = pq.read_table(p).to_pandas()
            keep = t[~t["experiment_id"].isin(failed)]
            if len(keep) < len(t):
                _write_atomic(pa.Table.from_pandas(keep, preserve_index=False), p)
        failed = set()
    skip = ok | failed
    todo = [e for e in experiments if e.experiment_id not in skip]
    log(f"sweep '{spec.name}': {len(experiments)} experiments ({len(experiments) // spec.replications} design points "
        f"x {spec.replications} replications); {len(skip)} already done, {len(todo)} to run")  # fmt: skip
    n_failed = 0
    if todo:
        if cluster:  # reach the scheduler first: fail fast on a bad address
            client, local = _client(cluster, workers, processes)
            _warm_cache(todo)
        else:  # compile before the workers start, so they load the kernels from numba's cache
            _warm_cache(todo)
            client, local = _client(cluster, workers, processes)
        bar = None
        try:
            from dask.distributed import as_completed

            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(todo), unit="exp", desc=spec.name)
            futures = client.map(run_experiment, todo, outcomes=list(spec.outcomes), pure=False)
            buffer, last = [], time.perf_counter()
            for fut in as_completed(futures):
                res = fut.result()
                fut.release()
                buffer.append(res)
                n_failed += res["row"]["status"] != "ok"
                if bar is not None:
                    bar.update(1)
                if len(buffer) >= flush_every or time.perf_counter() - last > FLUSH_SECONDS:
                    _flush(out, buffer)
                    buffer, last = [], time.perf_counter()
            _flush(out, buffer)
        finally:
            if bar is not None:
                bar.close()
            client.close()
            if local is not None:
                local.close()
    exps, outs = read_tables(out)
    return SweepResult(out=out, n_experiments=len(experiments), n_skipped=len(skip), n_run=len(todo),
                       n_failed=n_failed, wall_seconds=time.perf_counter() - started, experiments=exps,
                       outcomes=outs)  # fmt: skip
