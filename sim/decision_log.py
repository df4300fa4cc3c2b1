"""The platform's decision log (Art. 28): every slate, price quote and dispatch, and its replay.

Art. 28 of the Provisions asks providers to "retain network logs according to law" and to support inspections
with technical and data support; an inspector needs each algorithmic decision with its inputs, the algorithm
and version that made it, and its outputs, kept for the legal horizon, and must be able to check that the log
is faithful by re-running it (regulation-map.md row 28).

Layout of one run's log (``<decision_log.path>/replication=<r>/``), one Parquet dataset per kind, hive
partitioned by simulated day::

    kind=slate/day=0/part-00000.parquet      one row per view decision (agent-step)
    kind=quote/day=0/part-00000.parquet      one row per price quote
    kind=dispatch/day=0/part-00000.parquet   one row per delivery order (its dispatch and settlement)
    retention.json                            metadata: horizons and legal sources, row counts, versions
    manifest.json                             resolved scenario, seed, package versions, git commit

Read a kind with ``pyarrow.dataset.dataset(log_dir / "kind=slate", partitioning="hive")``
(:func:`open_kind`). Rows:

- ``slate``: ``tick, step, hour, user_idx`` (the request), ``candidates`` (int32 (n_cand,), the retrieved
  items), ``scores`` (float32 (n_cand,), the recommender's scores of them; null when not logged), ``slate``
  (int32 (slate_size,), items in rank order, -1 padded; all -1 when no slate was shown: access refused, the
  user left at a rest prompt, or nothing eligible), ``item_idx`` (the item watched, -1 none), ``minutes``.
- ``quote``: what the platform knew (``tick, user_idx, product_idx, cohort, device, promo_opt_in,
  purchases_stock, lifetime_purchases, cost, list_price, commission, fraud_hat, in_app, wtp_hat``), the quote
  (``price, disclosed``) and what came of it (``compared, outcome, blocked, paid``). Ground truth the
  platform does not see (true fraud, the user's value, surplus) and the auditor's shadow price are left out.
- ``dispatch``: the order (``order_idx, created, ready_hat, merchant, pickup_x, pickup_y, drop_x, drop_y,
  trip_km, user_idx, weather_at_creation``), the dispatch (``worker, assigned_at, started_at, deadline_minutes,
  pay, late_penalty, excuse_mask``; ``worker = -1``: never carried), the offers declined before it
  (``declines, last_decliner``), and the settlement (``status, picked_at, done_at, late_minutes, penalty,
  route_km, pickup_km``); ``finished`` is false for an order still open when the run ended. The terms of
  declined offers are not in the fleet's records (only their count and the last decliner): logging them needs a
  hook after each offer round (see STATUS.md).

Every row carries ``algorithm`` (name), ``algorithm_version`` (:func:`algorithm_fingerprint`: a hash of the
algorithm's class sources and constructor parameters) and ``algorithm_params`` (JSON). ``retention.json`` adds the
package version and git commit. Partition days: the tick's day for slates and quotes, the order's creation
day for dispatches.

Writing (:class:`DecisionLogger`, an observer attached by :class:`sim.engine.FeedWorld` when
``decision_log.enabled``): rows are buffered and written as a part file whenever ``batch_rows`` are buffered
and at every midnight, so memory stays bounded; quotes and finished orders are taken from the market's and
the fleet's own records at midnight. Everything goes into a hidden staging directory
(``.replication=<r>.partial-*``, skipped by dataset readers) that is renamed into place only after the last
day, with ``retention.json`` written last: an interrupted run leaves no complete-looking log.

Replay (:func:`replay`): re-simulate the stored scenario with the same seed and replication and compare the
decisions bit for bit, and recompute every logged slate from its logged candidates and scores with the
engine's rule (top ``slate_size`` finite scores, ties to the earlier candidate:
:func:`sim.kernels.reference._slate`).

Public objects
--------------
DecisionLogger, replay, ReplayReport, read_log, open_kind, log_dirs, algorithm_fingerprint,
scenario_fingerprint, without_decision_log, DecisionLogError, SCHEMA_VERSION, RETENTION_SOURCES
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sim.scenario import DECISION_KINDS, LEGAL_RETENTION_DAYS, Scenario, scenario_from_dict

__all__ = [
    "RETENTION_SOURCES",
    "SCHEMA_VERSION",
    "DecisionLogError",
    "DecisionLogger",
    "ReplayReport",
    "algorithm_fingerprint",
    "log_dirs",
    "open_kind",
    "read_log",
    "replay",
    "scenario_fingerprint",
    "without_decision_log",
]

SCHEMA_VERSION = 1
RETENTION_SOURCES = {
    "slate": "Provisions Art. 28 (retain network logs according to law) -> Cybersecurity Law Art. 21: network "
    "logs kept at least six months (the Aug 2021 draft of Art. 28 said so directly)",
    "quote": "E-Commerce Law Art. 31: goods, service and transaction information kept at least three years "
    "from the transaction's completion",
    "dispatch": "E-Commerce Law Art. 31: a delivery order is an e-commerce transaction record, kept at least "
    "three years from its completion",
}
QUOTE_FIELDS = (
    "tick", "user_idx", "product_idx", "cohort", "device", "promo_opt_in", "purchases_stock",
    "lifetime_purchases", "cost", "list_price", "commission", "fraud_hat", "in_app", "wtp_hat",
    "price", "disclosed", "compared", "outcome", "blocked", "paid",
)  # fmt: skip
DISPATCH_FIELDS = (
    "created", "ready_hat", "merchant", "pickup_x", "pickup_y", "drop_x", "drop_y", "trip_km", "user_idx",
    "weather_at_creation", "worker", "assigned_at", "started_at", "deadline_minutes", "pay", "late_penalty",
    "excuse_mask", "declines", "last_decliner", "status", "picked_at", "done_at", "late_minutes", "penalty",
    "route_km", "pickup_km",
)  # fmt: skip
# Fields that must be present (not null) for a row to count as logged with inputs, version and outputs.
REQUIRED_FIELDS = {
    "slate": ("user_idx", "candidates", "slate", "item_idx", "minutes", "algorithm_version"),
    "quote": ("user_idx", "product_idx", "wtp_hat", "price", "outcome", "algorithm_version"),
    "dispatch": ("order_idx", "created", "worker", "deadline_minutes", "pay", "status", "algorithm_version"),
}
KEYS = {"slate": ("step", "user_idx"), "quote": ("tick", "user_idx"), "dispatch": ("order_idx",)}
_ALGORITHM_COLUMNS = ("algorithm", "algorithm_version", "algorithm_params")
_MINUTES_PER_DAY = 1440.0


class DecisionLogError(ValueError):
    """A decision log is missing, incomplete or unreadable; the message says which and what to do."""


# ---- fingerprints ---------------------------------------------------------------------------------------------


def _jsonable(x):
    """Return a deterministic JSON-ready form of a parameter value (arrays by their hash)."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in sorted(x.items(), key=lambda kv: str(kv[0]))}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return {"array_sha256": hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()[:16],
                "shape": list(x.shape), "dtype": str(x.dtype)}  # fmt: skip
    if isinstance(x, np.generic):
        return x.item()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    if hasattr(x, "get_params"):
        return {"kind": type(x).__name__, **_jsonable(x.get_params())}
    return type(x).__qualname__


def _class_sources(obj, seen: set) -> list[str]:
    """Source text of the classes behind ``obj`` and of the algorithms it wraps (``base`` and the like)."""
    out = []
    for cls in type(obj).__mro__:
        if cls is object or cls in seen:
            continue
        seen.add(cls)
        try:
            out.append(inspect.getsource(cls))
        except (OSError, TypeError):  # classes without source (built in, or defined interactively)
            out.append(f"{cls.__module__}.{cls.__qualname__}")
    for v in vars(obj).values() if hasattr(obj, "__dict__") else ():
        if any(callable(getattr(v, m, None)) for m in ("score", "quote", "dispatch")) and not isinstance(v, type):
            out += _class_sources(v, seen)
    return out


def algorithm_fingerprint(obj, name: str) -> dict:
    """Describe an algorithm instance and its version.

    Parameters
    ----------
    obj : object
        A recommender, pricer or dispatcher.
    name : str
        Its label in the run (the scenario's ``kind`` or the class name).

    Returns
    -------
    dict
        ``name``, ``class`` (module:qualname), ``params`` (constructor parameters, JSON-ready),
        ``source_sha256`` (hash of the source of its classes and of the algorithms it wraps) and
        ``version``: the first 16 hex digits of the SHA-256 of the class path, parameters and sources. Two
        runs with the same code and parameters get the same version; a learned state is not part of it
        (replay checks that).
    """
    params = _jsonable(obj.get_params()) if hasattr(obj, "get_params") else {}
    sources = "\n".join(_class_sources(obj, set()))
    src_hash = hashlib.sha256(sources.encode()).hexdigest()
    cls = f"{type(obj).__module__}:{type(obj).__qualname__}"
    text = json.dumps({"class": cls, "params": params, "source": src_hash}, sort_keys=True)
    return {"name": name, "class": cls, "params": params, "source_sha256": src_hash,
            "version": hashlib.sha256(text.encode()).hexdigest()[:16]}  # fmt: skip


def _scenario_dump(scenario: Scenario) -> dict:
    data = scenario.model_dump(mode="json")
    data.pop("decision_log", None)
    return data


def scenario_fingerprint(scenario: Scenario) -> str:
    """SHA-256 (hex) of the resolved scenario without its ``[decision_log]`` table (where and what to log)."""
    return hashlib.sha256(json.dumps(_scenario_dump(scenario), sort_keys=True).encode()).hexdigest()


def without_decision_log(scenario: Scenario) -> Scenario:
    """Return ``scenario`` with its decision log switched off (an audit's counterfactual runs keep none)."""
    if not scenario.decision_log.enabled:
        return scenario
    return scenario.with_values({"decision_log.enabled": False}, source="<without decision log>")


# ---- writing ------------------------------------------------------------------------------------------------


def _fixed_list(values: np.ndarray | None, n_rows: int, width: int, pa_type):
    import pyarrow as pa

    typ = pa.list_(pa_type, width)
    if values is None:
        return pa.nulls(n_rows, type=typ)
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(values).reshape(-1)), width)


def _constant_strings(n: int, value: str):
    import pyarrow as pa

    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), pa.array([value]))


class DecisionLogger:
    """Observer writing a :class:`sim.engine.FeedWorld`'s decisions (see the module docstring).

    Parameters
    ----------
    world : sim.engine.FeedWorld
        The world to log; attach with ``world.add_observer(logger)``. When scores are to be logged, the
        world's fused ranking is switched off (the same results, bit for bit: ``tests/test_engine.py``).

    Attributes
    ----------
    final_dir : Path
        Where the complete log appears after the last day.
    stage_dir : Path
        The hidden staging directory written during the run.
    rows : dict of str -> int
        Rows written so far per kind.
    closed : bool
        True once the log is complete and in place.
    """

    def __init__(self, world):
        sc = world.scenario
        self.settings = st = sc.decision_log
        self.scenario = sc
        self.replication = world.replication
        self.kinds = tuple(k for k in DECISION_KINDS if k in st.kinds)
        if st.scores and "slate" in self.kinds:
            world.fused = False  # scores exist only on the score() path
        self.fused = world.fused
        self.ticks_per_day = sc.ticks_per_day
        self.n_days = sc.clock.days
        root = Path(st.path)
        self.final_dir = root / f"replication={world.replication}"
        root.mkdir(parents=True, exist_ok=True)
        self.stage_dir = root / f".replication={world.replication}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stage_dir.mkdir()
        self.created = time.time()
        self.algorithms = {}
        if sc.population.n_users:
            self.algorithms["slate"] = algorithm_fingerprint(world.recommender, world.recommender_label)
        if world.market is not None:
            self.algorithms["quote"] = algorithm_fingerprint(world.market.pricer, world.market.pricer_label)
        if world.fleet is not None:
            self.algorithms["dispatch"] = algorithm_fingerprint(world.fleet.dispatcher, world.fleet.label)
        self.rows = dict.fromkeys(DECISION_KINDS, 0)
        self.hours = {k: np.zeros(24, dtype=np.int64) for k in DECISION_KINDS}
        self.days_written = {k: set() for k in DECISION_KINDS}
        self._seq: dict[tuple[str, int], int] = {}
        self._slate_buf: list[tuple] = []
        self._slate_rows = 0
        self._quote_pos = 0
        self._order_logged = np.zeros(0, dtype=np.bool_)
        self.closed = False

    # -- hooks ------------------------------------------------------------------------------------------
    def on_substep(self, world, sub) -> None:
        """Buffer the sub-step's view decisions (copies: the arrays are the kernels' buffers)."""
        if "slate" not in self.kinds:
            return
        st = self.settings
        cand = sub.candidates().copy() if st.candidates else None
        scores = sub.scores.copy() if st.scores and sub.scores is not None else None
        self._slate_buf.append((sub.tick, sub.step, sub.hour, sub.active_idx.copy(), cand, scores,
                                sub.out_slate.copy(), sub.out_item.copy(), sub.out_minutes.copy()))  # fmt: skip
        self._slate_rows += sub.active_idx.size
        if self._slate_rows >= st.batch_rows:
            self._flush_slates(world)

    def on_day_end(self, world, day: int) -> None:
        """Write the day's buffered views, quotes and finished orders; after the last day, close the log."""
        self._flush_slates(world)
        self._write_quotes(world)
        self._write_orders(world, final=False)
        if day == self.n_days - 1:
            self.close(world)

    # -- writers ----------------------------------------------------------------------------------------
    def _algorithm_columns(self, kind: str, n: int) -> dict:
        a = self.algorithms[kind]
        return {"algorithm": _constant_strings(n, a["name"]), "algorithm_version": _constant_strings(n, a["version"]),
                "algorithm_params": _constant_strings(n, json.dumps(a["params"], sort_keys=True))}  # fmt: skip

    def _write(self, kind: str, day: int, columns: dict) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(columns)
        seq = self._seq.get((kind, day), 0)
        self._seq[(kind, day)] = seq + 1
        part = self.stage_dir / f"kind={kind}" / f"day={day}" / f"part-{seq:05d}.parquet"
        part.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, part, compression="zstd")
        self.rows[kind] += table.num_rows
        self.days_written[kind].add(day)

    def _flush_slates(self, world) -> None:
        import pyarrow as pa

        if not self._slate_buf:
            return
        buf, self._slate_buf, self._slate_rows = self._slate_buf, [], 0
        n_rows = [b[3].size for b in buf]
        n = int(sum(n_rows))
        cat = np.concatenate
        tick = cat([np.full(m, b[0], dtype=np.int32) for b, m in zip(buf, n_rows, strict=True)])
        hour = cat([np.full(m, b[2], dtype=np.int8) for b, m in zip(buf, n_rows, strict=True)])
        n_cand, k = world.scenario.recommender.n_candidates, world.scenario.recommender.slate_size
        cand = cat([b[4] for b in buf]) if buf[0][4] is not None else None
        scores = cat([b[5] for b in buf]) if all(b[5] is not None for b in buf) else None
        cols = {
            "tick": pa.array(tick),
            "step": pa.array(cat([np.full(m, b[1], dtype=np.int64) for b, m in zip(buf, n_rows, strict=True)])),
            "hour": pa.array(hour),
            "user_idx": pa.array(cat([b[3] for b in buf]).astype(np.int64)),
            "candidates": _fixed_list(cand, n, n_cand, pa.int32()),
            "scores": _fixed_list(scores, n, n_cand, pa.float32()),
            "slate": _fixed_list(cat([b[6] for b in buf]), n, k, pa.int32()),
            "item_idx": pa.array(cat([b[7] for b in buf])),
            "minutes": pa.array(cat([b[8] for b in buf])),
            **self._algorithm_columns("slate", n),
        }
        days = tick // self.ticks_per_day
        self.hours["slate"] += np.bincount(hour, minlength=24)
        for d in np.unique(days):  # one day per buffer (flushed at midnight); kept general
            sel = np.flatnonzero(days == d)
            self._write("slate", int(d), {c: v.take(pa.array(sel)) for c, v in cols.items()})

    def _write_quotes(self, world) -> None:
        import pyarrow as pa

        market = world.market
        if market is None or "quote" not in self.kinds:
            return
        n_total = market.n_quotes  # the quotes logged since the last write
        if n_total == self._quote_pos:
            return
        cols = market.quotes_from(self._quote_pos, QUOTE_FIELDS)
        self._quote_pos = n_total
        market.release_quotes()  # written: the market need not hold them any longer (unless it keeps its log)
        n = cols["tick"].size
        if n == 0:
            return
        tick = cols["tick"].astype(np.int64)
        hour = (tick % self.ticks_per_day) * world.scenario.clock.tick_minutes // 60
        self.hours["quote"] += np.bincount(hour, minlength=24)
        days = tick // self.ticks_per_day
        table = {c: pa.array(v) for c, v in cols.items()} | self._algorithm_columns("quote", n)
        for d in np.unique(days):
            sel = pa.array(np.flatnonzero(days == d))
            self._write("quote", int(d), {c: v.take(sel) for c, v in table.items()})

    def _write_orders(self, world, final: bool) -> None:
        import pyarrow as pa

        from sim.fleet.state import O_CANCELLED, O_DELIVERED

        fleet = world.fleet
        if fleet is None or "dispatch" not in self.kinds:
            return
        o = fleet.orders
        n = o.n
        if self._order_logged.size < n:
            self._order_logged = np.concatenate([self._order_logged, np.zeros(n - self._order_logged.size, bool)])
        status = o.status[:n]
        finished = (status == O_DELIVERED) | (status == O_CANCELLED)
        take = ~self._order_logged[:n] & (finished | final)
        idx = np.flatnonzero(take)
        if idx.size == 0:
            return
        self._order_logged[idx] = True
        cols = {"order_idx": pa.array(idx.astype(np.int64))}
        cols |= {c: pa.array(getattr(o, c)[idx]) for c in DISPATCH_FIELDS}
        cols["finished"] = pa.array(finished[idx])
        cols |= self._algorithm_columns("dispatch", idx.size)
        created = o.created[idx]
        self.hours["dispatch"] += np.bincount(((created % _MINUTES_PER_DAY) // 60).astype(np.int64), minlength=24)
        days = (created // _MINUTES_PER_DAY).astype(np.int64)
        for d in np.unique(days):
            sel = pa.array(np.flatnonzero(days == d))
            self._write("dispatch", int(d), {c: v.take(sel) for c, v in cols.items()})

    # -- completion -------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """Return the content of ``retention.json`` (see :func:`read_log`)."""
        from sim.output import manifest

        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created))
        man = manifest(self.scenario, command="decision log", seed=self.scenario.seed)
        kinds = {}
        for kind in self.kinds:
            if kind not in self.algorithms:
                continue  # not simulated (no market, no fleet, no feed users)
            days = self.settings.retention_days[kind]
            kinds[kind] = {
                "rows": self.rows[kind],
                "days": sorted(self.days_written[kind]),
                "retention_days": days,
                "retain_until_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created + days * 86400)),
                "legal_minimum_days": LEGAL_RETENTION_DAYS[kind],
                "legal_source": RETENTION_SOURCES[kind],
                "rows_by_hour": self.hours[kind].tolist(),
                "algorithm": self.algorithms[kind],
                "keys": list(KEYS[kind]),
            }
        return {
            "schema_version": SCHEMA_VERSION,
            "complete": True,
            "created_utc": created,
            "replication": self.replication,
            "seed": self.scenario.seed,
            "scenario_name": self.scenario.name,
            "scenario_fingerprint": scenario_fingerprint(self.scenario),
            "days_simulated": self.n_days,
            "fused": self.fused,
            "settings": self.settings.model_dump(mode="json"),
            "package_version": man["versions"].get("recaudit"),
            "git_commit": man["git_commit"],
            "manifest": "manifest.json",
            "kinds": kinds,
        }

    def close(self, world) -> Path:
        """Write what is left and the metadata, then move the log into place (atomic rename); return its path."""
        from sim.output import manifest, write_json

        if self.closed:
            return self.final_dir
        self._flush_slates(world)
        self._write_quotes(world)
        self._write_orders(world, final=True)
        meta = self.metadata()
        man = manifest(self.scenario, command="decision log", seed=self.scenario.seed,
                       extra={"replication": self.replication})  # fmt: skip
        write_json(man, self.stage_dir / "manifest.json")
        write_json(meta, self.stage_dir / "retention.json")  # last: its presence marks the files complete
        old = None
        if self.final_dir.exists():
            old = self.final_dir.with_name(f".{self.final_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(self.final_dir, old)
        os.replace(self.stage_dir, self.final_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.final_dir.parent.glob(f".{self.final_dir.name}.partial-*"):
            with contextlib.suppress(OSError):  # an interrupted earlier run's staging
                if stale.stat().st_mtime < self.created:
                    shutil.rmtree(stale)
        self.closed = True
        return self.final_dir


# ---- reading --------------------------------------------------------------------------------------------------


def read_log(log_dir: str | Path) -> dict:
    """Return the metadata of a complete decision log (``retention.json``).

    Raises
    ------
    DecisionLogError
        If the directory holds no complete log (missing or incomplete ``retention.json``, another schema).
    """
    log_dir = Path(log_dir)
    meta_path = log_dir / "retention.json"
    if not meta_path.is_file():
        raise DecisionLogError(
            f"{log_dir}: no complete decision log (no retention.json); fix: point to a replication=<r> directory "
            "written by a finished run with [decision_log] enabled = true (or --decision-log)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DecisionLogError(f"{meta_path}: unreadable ({exc}); the log cannot be trusted") from None
    if not meta.get("complete"):
        raise DecisionLogError(f"{meta_path}: the log is not marked complete")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise DecisionLogError(
            f"{meta_path}: schema version {meta.get('schema_version')} (this recaudit reads {SCHEMA_VERSION})"
        )
    return meta


def log_dirs(path: str | Path) -> list[Path]:
    """Return the run logs at ``path``: itself if it is one, else its ``replication=*`` children (sorted)."""
    path = Path(path)
    if (path / "retention.json").is_file():
        return [path]
    found = sorted(p for p in path.glob("replication=*") if p.is_dir())
    return sorted(found, key=lambda p: int(p.name.split("=", 1)[1]) if p.name.split("=", 1)[1].isdigit() else 0)


def open_kind(log_dir: str | Path, kind: str):
    """Return the ``pyarrow.dataset.Dataset`` of one kind of decision (``day`` from the partitions), or None."""
    import pyarrow.dataset as ds

    where = Path(log_dir) / f"kind={kind}"
    if not where.is_dir():
        return None
    return ds.dataset(where, format="parquet", partitioning="hive")


def _fixed_values(col, width: int) -> np.ndarray:
    """Values of a fixed-size-list array as (n, width); null rows are zeros (their null flag is kept apart)."""
    n = len(col)
    vals = np.zeros((n, width), dtype=col.type.value_type.to_pandas_dtype())
    valid = ~np.asarray(col.is_null())
    if valid.any():
        vals[valid] = np.asarray(col.filter(valid).flatten()).reshape(-1, width)
    return vals


def _columns_np(table) -> dict[str, np.ndarray]:
    """Columns of a table as numpy arrays (fixed-size lists as 2-D), each with a ``<name>#null`` mask."""
    import pyarrow as pa

    out = {}
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col, pa.ChunkedArray):
            col = col.combine_chunks()
        if isinstance(col, pa.DictionaryArray):
            col = col.dictionary_decode()
        out[name + "#null"] = np.asarray(col.is_null())
        if pa.types.is_fixed_size_list(col.type):
            out[name] = _fixed_values(col, col.type.list_size)
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[name] = np.asarray(col.fill_null("").to_pylist(), dtype=object)
        else:
            out[name] = (col.fill_null(0) if col.null_count else col).to_numpy(zero_copy_only=False)
    return out


def count_complete(log_dir: str | Path, kind: str) -> tuple[int, int]:
    """Return (rows, rows with every field of :data:`REQUIRED_FIELDS` present) of one kind in a log."""
    import pyarrow.compute as pc

    dset = open_kind(log_dir, kind)
    if dset is None:
        return 0, 0
    names = set(dset.schema.names)
    need = REQUIRED_FIELDS[kind]
    rows = complete = 0
    for batch in dset.to_batches(columns=[c for c in need if c in names]):
        rows += batch.num_rows
        if any(c not in names for c in need):
            continue  # a required field is not in the log at all
        ok = None
        for c in need:
            valid = pc.is_valid(batch.column(c))
            ok = valid if ok is None else pc.and_(ok, valid)
        complete += int(pc.sum(ok).as_py() or 0)
    return rows, complete


# ---- replay ---------------------------------------------------------------------------------------------------


@dataclass
class KindCheck:
    """Re-simulation of one kind of decision against its log.

    Attributes
    ----------
    kind : str
    logged : int
        Logged rows in the replayed window.
    mismatched : int
        Logged rows not reproduced bit for bit (a differing field, a missing or a duplicated key).
    missing, extra : int
        Logged keys the re-run did not produce; keys the re-run produced that the log lacks.
    columns : dict of str -> int
        Rows differing, by column.
    examples : list of dict
        Up to five mismatched rows: their key and the columns that differ.
    """

    kind: str
    logged: int = 0
    mismatched: int = 0
    missing: int = 0
    extra: int = 0
    columns: dict = field(default_factory=dict)
    examples: list = field(default_factory=list)


@dataclass
class ReplayReport:
    """What :func:`replay` found.

    Attributes
    ----------
    log_dir : Path
    days : int
        Days re-simulated (0: none).
    resimulated : dict of str -> KindCheck
    recomputed : dict
        ``checked`` (slates recomputed from logged candidates and scores), ``mismatched``, ``skipped`` (rows
        without logged scores, or with no slate shown although some score was finite: the access gate or a
        rest prompt ended the session, which only re-simulation checks).
    notes : list of str
    """

    log_dir: Path
    days: int = 0
    resimulated: dict = field(default_factory=dict)
    recomputed: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every checked decision reproduced."""
        return all(c.mismatched == 0 and c.extra == 0 for c in self.resimulated.values()) and not self.recomputed.get(
            "mismatched", 0
        )

    def mismatch_share(self, kind: str) -> float:
        """Share of a kind's checked decisions that did not reproduce (NaN when none was checked)."""
        checked = bad = 0
        c = self.resimulated.get(kind)
        if c is not None:
            checked += c.logged + c.extra
            bad += c.mismatched + c.extra
        if kind == "slate" and self.recomputed:
            checked += self.recomputed["checked"]
            bad += self.recomputed["mismatched"]
        return bad / checked if checked else float("nan")

    def lines(self) -> list[str]:
        """Human-readable summary, one line per check."""
        out = [f"{self.log_dir}: " + ("every checked decision reproduces" if self.ok else "MISMATCHES FOUND")]
        for c in self.resimulated.values():
            line = (f"  re-simulated {self.days} day(s), {c.kind}: {c.logged:,} logged, {c.mismatched:,} not "
                    f"reproduced ({c.missing:,} missing), {c.extra:,} not in the log")  # fmt: skip
            if c.columns:
                line += "; differing: " + ", ".join(f"{k} ({v})" for k, v in sorted(c.columns.items()))
            out.append(line)
            out += [f"    e.g. {ex}" for ex in c.examples]
        if self.recomputed:
            r = self.recomputed
            out.append(f"  recomputed slates from logged candidates and scores: {r['checked']:,} checked, "
                       f"{r['mismatched']:,} differ, {r['skipped']:,} not recomputable from the log")  # fmt: skip
            out += [f"    e.g. {ex}" for ex in r.get("examples", [])]
        out += [f"  note: {n}" for n in self.notes]
        return out


def _row_keys(cols: dict, kind: str, n_users: int) -> np.ndarray:
    if kind == "slate":
        return cols["step"].astype(np.int64) * (n_users + 1) + cols["user_idx"].astype(np.int64)
    if kind == "quote":
        return cols["tick"].astype(np.int64) * (n_users + 1) + cols["user_idx"].astype(np.int64)
    return cols["order_idx"].astype(np.int64)


def _differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row: whether two aligned columns differ bit for bit (floats by their bits)."""
    if a.dtype != b.dtype or a.shape[1:] != b.shape[1:]:
        return np.ones(a.shape[0], dtype=bool)
    if a.dtype.kind == "f":
        a, b = a.view(f"u{a.itemsize}"), b.view(f"u{b.itemsize}")
    d = a != b
    return d.reshape(d.shape[0], -1).any(axis=1) if d.ndim > 1 else d


def _compare(kind: str, logged, replayed, n_users: int) -> KindCheck:
    a, b = _columns_np(logged), _columns_np(replayed)
    check = KindCheck(kind, logged=logged.num_rows)
    ka, kb = _row_keys(a, kind, n_users), _row_keys(b, kind, n_users)
    uniq_a, first_a, count_a = np.unique(ka, return_index=True, return_counts=True)
    dup = int((count_a - 1).sum())  # a duplicated logged key is a row that was not produced
    common, ia, ib = np.intersect1d(ka, kb, assume_unique=False, return_indices=True)
    check.missing = int(uniq_a.size - common.size)
    check.extra = int(np.setdiff1d(kb, ka).size)
    bad = np.zeros(common.size, dtype=bool)
    names = sorted({n for n in a if not n.endswith("#null")} | {n for n in b if not n.endswith("#null")})
    per_col: dict[str, np.ndarray] = {}
    for n in names:
        if n not in a or n not in b:
            d = np.ones(common.size, dtype=bool)
        else:
            d = _differs(a[n][ia], b[n][ib]) | (a[n + "#null"][ia] != b[n + "#null"][ib])
        if d.any():
            per_col[n] = d
            bad |= d
    check.columns = {n: int(d.sum()) for n, d in per_col.items()}
    check.mismatched = int(bad.sum()) + check.missing + dup
    for j in np.flatnonzero(bad)[:5]:
        key = {c: int(a[c][ia[j]]) for c in KEYS[kind]}
        check.examples.append({**key, "differs": [n for n, d in per_col.items() if d[j]]})
    if check.missing:
        gone = np.setdiff1d(uniq_a, common)[: max(0, 5 - len(check.examples))]
        pos = first_a[np.searchsorted(uniq_a, gone)]
        check.examples += [{**{c: int(a[c][p]) for c in KEYS[kind]}, "differs": ["(not reproduced)"]} for p in pos]
    return check


def _window(table, kind: str, days: int, full: bool, margin_minutes: float):
    """Rows of a log table a re-run of ``days`` days must reproduce."""
    import pyarrow.compute as pc

    if full or table.num_rows == 0:
        return table
    if kind != "dispatch":
        return table.filter(pc.less(table.column("day"), days))
    # an order is settled within the window when it finished a fleet step before the last midnight
    horizon = days * _MINUTES_PER_DAY - margin_minutes
    return table.filter(pc.and_(table.column("finished"), pc.less(table.column("done_at"), horizon)))


def recompute_slates(log_dir: str | Path, max_examples: int = 5) -> dict:
    """Recompute every logged slate from its logged candidates and scores (the engine's top-k rule).

    Returns
    -------
    dict
        ``checked``, ``mismatched``, ``skipped`` (see :class:`ReplayReport`) and ``examples``
        (``step``, ``user_idx`` of up to ``max_examples`` differing rows).
    """
    read_log(log_dir)  # refuses an incomplete log
    out = {"checked": 0, "mismatched": 0, "skipped": 0, "examples": []}
    dset = open_kind(log_dir, "slate")
    if dset is None:
        return out
    for batch in dset.to_batches(columns=["step", "user_idx", "candidates", "scores", "slate"]):
        cols = _columns_np(batch)
        slate = cols["slate"]
        k = slate.shape[1]
        have = ~cols["scores#null"] & ~cols["candidates#null"]
        out["skipped"] += int((~have).sum())
        if not have.any():
            continue
        scores, cand, slate = cols["scores"][have], cols["candidates"][have], slate[have]
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # ties to the earlier candidate
        top_s = np.take_along_axis(scores, order, axis=1)
        again = np.where(top_s > -np.inf, np.take_along_axis(cand, order, axis=1), -1).astype(slate.dtype)
        shown = slate[:, 0] >= 0
        none_eligible = ~(scores > -np.inf).any(axis=1)
        checkable = shown | none_eligible  # an empty slate with eligible items: the gate or a prompt (re-simulate)
        out["skipped"] += int((~checkable).sum())
        differ = checkable & (again != slate).any(axis=1)
        out["checked"] += int(checkable.sum())
        out["mismatched"] += int(differ.sum())
        for j in np.flatnonzero(differ)[: max(0, max_examples - len(out["examples"]))]:
            out["examples"].append({"step": int(cols["step"][have][j]), "user_idx": int(cols["user_idx"][have][j]),
                                    "differs": ["slate (recomputed from scores)"]})  # fmt: skip
    return out


def replay(log_dir: str | Path, days: int | None = None, recompute: bool = True, resimulate: bool = True):
    """Check that a decision log reproduces.

    Parameters
    ----------
    log_dir : str or Path
        One run's log (``.../replication=<r>``).
    days : int, optional
        Re-simulate the first ``days`` days (default: the whole run) and compare every decision logged in
        them: slates and quotes of those days, orders settled by their end. Fewer days cost less; the
        re-run is the same world stopped early, so what it produced must equal the log bit for bit.
    recompute : bool
        Also recompute every logged slate from its logged candidates and scores.
    resimulate : bool
        Re-simulate from the scenario, seed and replication stored with the log.

    Returns
    -------
    ReplayReport

    Raises
    ------
    DecisionLogError
        If the log is incomplete, or its stored scenario does not match its fingerprint.
    """
    import pyarrow as pa

    from sim.engine import FeedWorld

    log_dir = Path(log_dir)
    meta = read_log(log_dir)
    report = ReplayReport(log_dir=log_dir)
    if recompute and "slate" in meta["kinds"]:
        report.recomputed = recompute_slates(log_dir)
        if report.recomputed["checked"] == 0:
            report.notes.append("no slate could be recomputed from the log (scores not logged)")
    if not resimulate:
        return report
    man = json.loads((log_dir / "manifest.json").read_text(encoding="utf-8"))
    sc = scenario_from_dict(man["scenario"], source=f"{log_dir}/manifest.json")
    if scenario_fingerprint(sc) != meta["scenario_fingerprint"]:
        raise DecisionLogError(f"{log_dir}: the stored scenario does not match the log's fingerprint")
    n_days = sc.clock.days
    days = n_days if days is None else max(1, min(int(days), n_days))
    full = days == n_days
    report.days = days
    with tempfile.TemporaryDirectory(prefix="recaudit-replay-") as tmp:
        logged = sc.with_values({"decision_log.enabled": True, "decision_log.path": tmp}, source="<replay>")
        world = FeedWorld(logged, replication=int(meta["replication"]))
        logger = world.decision_log
        while world.tick < days * world.ticks_per_day:
            world.step()
        again_dir = logger.final_dir if full else logger.stage_dir
        margin = sc.fleet.step_minutes if sc.fleet is not None else 0.0
        for kind, info in meta["kinds"].items():
            if info["algorithm"]["version"] != logger.algorithms.get(kind, {}).get("version"):
                report.notes.append(f"{kind}: the log's algorithm version {info['algorithm']['version']} differs "
                                    f"from the re-run's {logger.algorithms.get(kind, {}).get('version')}")  # fmt: skip
            logged_ds, again_ds = open_kind(log_dir, kind), open_kind(again_dir, kind)
            logged = logged_ds.to_table() if logged_ds is not None else None
            again = again_ds.to_table() if again_ds is not None else None
            if logged is None and again is None:
                report.resimulated[kind] = KindCheck(kind)
                continue
            schema = (logged if logged is not None else again).schema
            logged = _window(logged if logged is not None else schema.empty_table(), kind, days, full, margin)
            again = _window(again if again is not None else pa.Table.from_batches([], schema), kind, days, full,
                            margin)  # fmt: skip
            report.resimulated[kind] = _compare(kind, logged, again, sc.population.n_users)
    return report
