"""Replay of logged slates ("bring your own logs"): a real system's slates, shown to simulated users.

A logs directory holds two Parquet tables (each a file, or a directory of Parquet
files read as one dataset). Extra columns are ignored.

``slates.parquet``: one row per logged request (one slate shown to one user)

==========  =====================  ========  ===============================================
column      type                   required  meaning
==========  =====================  ========  ===============================================
user_id     int64 or string        yes       the logged user (pseudonymous id)
time        timestamp (any unit)   yes       when the slate was served; a time zone is
                                             converted to China Standard Time (UTC+8), a
                                             naive timestamp is read as that local time
slate       list<int64>            yes       item ids in rank order (first = top), distinct,
                                             at least one, each in the items table
cohort      string                 no        "adult", "minor" or "elderly" (null: unknown)
age         int (years, 0-120)     no        the user's age (null: unknown)
==========  =====================  ========  ===============================================

``items.parquet``: one row per item that appears in a slate (or may appear in a counterfactual)

==============  ===================  ========  ============================================
column          type                 required  meaning
==============  ===================  ========  ============================================
item_id         int64                yes       unique
embedding       list<float32> (D)    yes       content vector, the same length D (2-256) in
                                               every row; normalised to unit length here
category        int                  yes       content category (any integer ids)
length_minutes  float (minutes)      yes       full duration, in (0, 1440]
harmful         bool                 no        harmful to minors (default false)
quality         float                no        satisfaction beyond interest match (default 0)
hook            float                no        engagement bait (default: the scenario's
                                               ``catalogue.hook_mean``, plus
                                               ``harmful_hook_bonus`` for harmful items)
creator_id      int                  no        the item's creator (attention concentration)
published       timestamp            no        publication time (the chronological
                                               counterfactual needs it)
==============  ===================  ========  ============================================

Every problem found is reported as one line naming the file, the column and the
fix, all in one :class:`sim.scenario.ScenarioError` (the CLI's exit code 2).

How a log is replayed
---------------------
- **Users.** Each logged user is one simulated user, drawn from the scenario's
  population (:func:`sim.state.make_users`, one cohort at a time): a logged
  ``cohort`` (or an ``age``: under 18 is a minor) fixes the cohort, a logged age
  replaces the drawn one, and users with neither get a cohort drawn from
  ``population.shares`` (an age alone gives the cohort of its band: under 18,
  18-59, 60 and over; with both, the logged cohort wins, but a minor must be
  under 18). Interests are drawn around the mean embedding of each
  category of the items table, so users and items share one space. Each
  replication draws a new population (and new random numbers).
- **Sessions.** A user's requests with gaps of at most ``session_gap_minutes``
  form one logged session. At its first request the simulated user opens the
  app. At each request of the session the user sees the logged slate (scores
  descending by rank, so the kernel shows it in the logged order), chooses an item
  by the model's logit or leaves, watches, and decides whether to go on: exactly
  :func:`sim.kernels.feed.view_step`, as in the simulation. A user who leaves
  skips the rest of that logged session (those requests are *unused*); a user
  who would go on when the session's slates run out stops there (a *truncated*
  session: the log has nothing more to show, so minutes are a lower bound for
  such users). The platform's access gate is open (the log says the slate was
  served) and there are no rest prompts (the logs do not record them).
- **Time.** The minutes measured are the simulated users' watching (item length
  times the simulated watch share), charged to the day and hour of the logged
  request; logged dwell times, if any, are not used. The log fixes when
  opportunities happen, not the pace: consecutive requests may be closer
  together than the simulated watch of the first. Night is 22:00-06:00 of the
  request's time. Habit decays in continuous time between a user's requests
  (half-life ``behaviour.habit_half_life_days``). Day 0 is the calendar day of
  the first request; a user-day without requests counts zero minutes (a user in
  the log is taken to be observable over the whole log window).
- **Randomness.** Draws are :func:`sim.rng.uniform` keyed on (run key, the
  request's ordinal among the user's requests, user, purpose), so a replay of the
  logged slates and of a counterfactual on the same requests share their random
  numbers (common random numbers), and results do not depend on threads.

Public objects
--------------
ReplayLog, load_logs
    The validated log, and its reader.
replay_scenario
    The scenario adapted to a log (users, days, catalogue size and dimensions).
counterfactual_slates
    Slates of a declared counterfactual on the same requests.
replay
    Replay one set of slates; return a :class:`sim.record.RunRecord`.
COUNTERFACTUALS
    The counterfactual names.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.engine import _entropy_top1, _threads_for
from sim.kernels import feed
from sim.kernels import layout as L
from sim.record import RunRecord
from sim.rng import root_key, spawn_generators
from sim.scenario import COHORTS, Scenario, ScenarioError, scenario_from_dict
from sim.state import N_MINHASH, Users, _unit_rows, make_users

__all__ = [
    "COUNTERFACTUALS",
    "ITEMS_FILE",
    "SLATES_FILE",
    "ReplayLog",
    "counterfactual_slates",
    "load_logs",
    "replay",
    "replay_scenario",
]

SLATES_FILE = "slates.parquet"
ITEMS_FILE = "items.parquet"
COUNTERFACTUALS = ("uniform", "chronological", "logged")
LOCAL_TZ = "Asia/Shanghai"  # China Standard Time: night and days are read in the users' local time
MAX_DIM = 256  # population.interest_dim's upper bound


@dataclass(frozen=True)
class ReplayLog:
    """A validated log: requests sorted by (user, time), items as dense slots.

    Attributes (q = n_requests, n = n_users, m = n_items, K = longest slate, D = embedding length)
    ----------------------------------------------------------------------------------------------
    user_id : ndarray (n,)
        Logged user ids, sorted; simulated user ``u`` is ``user_id[u]``.
    user_cohort : int8 (n,)
        Logged cohort (index into :data:`sim.scenario.COHORTS`), -1 unknown.
    user_age : int16 (n,)
        Logged age (years), -1 unknown.
    req_user_idx : int64 (q,)
        The simulated user of each request.
    req_minute : float64 (q,)
        Minutes since local midnight of day 0.
    req_day : int32 (q,)
    req_hour : int8 (q,)
        Local hour of day (0-23).
    slate_idx : int32 (q, K)
        Item slots in rank order, -1 padded.
    item_id : int64 (m,)
    item_embedding : float32 (m, D)
        Unit rows.
    item_category : int32 (m,)
        Dense category index (0..C-1, in the order of ``category_id``).
    category_id : int64 (C,)
        The logged category ids.
    item_harmful_mask : bool (m,)
    item_length_minutes : float32 (m,)
    item_quality, item_hook : float32 (m,) or None
        None where the items table has no such column (the scenario's defaults apply).
    item_creator : int32 (m,) or None
        Dense creator index, None without a ``creator_id`` column.
    item_published_minute : float64 (m,) or None
        Publication time, minutes since local midnight of day 0.
    start_date : str
        Local date of day 0 (ISO).
    sources : dict of str -> str
        Path and SHA-256 of every Parquet file read (for the manifest).
    """

    user_id: np.ndarray
    user_cohort: np.ndarray
    user_age: np.ndarray
    req_user_idx: np.ndarray
    req_minute: np.ndarray
    req_day: np.ndarray
    req_hour: np.ndarray
    slate_idx: np.ndarray
    item_id: np.ndarray
    item_embedding: np.ndarray
    item_category: np.ndarray
    category_id: np.ndarray
    item_harmful_mask: np.ndarray
    item_length_minutes: np.ndarray
    item_quality: np.ndarray | None
    item_hook: np.ndarray | None
    item_creator: np.ndarray | None
    item_published_minute: np.ndarray | None
    start_date: str
    sources: dict

    @property
    def n_requests(self) -> int:
        """Number of logged requests."""
        return int(self.req_user_idx.shape[0])

    @property
    def n_users(self) -> int:
        """Number of logged users."""
        return int(self.user_id.shape[0])

    @property
    def n_items(self) -> int:
        """Number of items."""
        return int(self.item_id.shape[0])

    @property
    def n_days(self) -> int:
        """Calendar days spanned by the requests."""
        return int(self.req_day.max()) + 1

    @property
    def slate_lengths(self) -> np.ndarray:
        """Items in each logged slate, int64 (q,)."""
        return (self.slate_idx >= 0).sum(axis=1)

    def request_ordinal(self) -> np.ndarray:
        """Each request's position among its user's requests (0, 1, ...), int64 (q,)."""
        first = np.searchsorted(self.req_user_idx, self.req_user_idx, side="left")
        return np.arange(self.n_requests, dtype=np.int64) - first

    def session_start_mask(self, session_gap_minutes: float) -> np.ndarray:
        """Whether each request opens a logged session (first of the user, or after a longer gap), bool (q,)."""
        start = np.ones(self.n_requests, dtype=bool)
        same = self.req_user_idx[1:] == self.req_user_idx[:-1]
        gap = np.diff(self.req_minute)
        start[1:] = ~same | (gap > session_gap_minutes)
        return start


# -- reading and validation -----------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


def _read_table(path: Path, what: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise ScenarioError(
            f"{path}: no such file; fix: put the {what} table there as Parquet (see `python3 -m pydoc sim.replay`)"
        )
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ScenarioError(f"{path}: not a readable Parquet file or dataset ({exc}); fix: write it with "
                            "pyarrow.parquet.write_table") from None  # fmt: skip


def _type_of(field) -> str:
    return str(field.type)


def _is_int(t) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(t)


def _is_str(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _local_times(col):
    """Return a timestamp column as naive local (China Standard Time) pandas datetimes (a Series)."""
    import pandas as pd

    ts = pd.Series(col.to_pandas())
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert(LOCAL_TZ).dt.tz_localize(None)
    return ts.astype("datetime64[ns]")


def _minutes_since(ts, origin) -> np.ndarray:
    return ((ts - origin).dt.total_seconds() / 60.0).to_numpy(dtype=np.float64)


def _list_column(table, name: str):
    """Return (flat values as numpy, lengths int64 (rows,), null-row count, null-value count) of a list column."""
    import pyarrow.compute as pc

    col = table.column(name).combine_chunks()
    lengths = pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(col)
    return flat, lengths, col.null_count, flat.null_count


def load_logs(logs_dir: str | Path) -> ReplayLog:
    """Read and validate a logs directory (``slates.parquet`` and ``items.parquet``).

    Parameters
    ----------
    logs_dir : str or Path
        The directory; each table is a Parquet file or a directory of Parquet files.

    Returns
    -------
    ReplayLog

    Raises
    ------
    ScenarioError
        One line per problem: the file, the column, and the fix.
    """
    logs_dir = Path(logs_dir)
    if not logs_dir.is_dir():
        raise ScenarioError(f"{logs_dir}: no such logs directory; fix: give a directory holding {SLATES_FILE} "
                            f"and {ITEMS_FILE}")  # fmt: skip
    items_path, slates_path = logs_dir / ITEMS_FILE, logs_dir / SLATES_FILE
    items = _read_items(items_path)
    log = _read_slates(slates_path, items)
    sources = {"slates": str(slates_path), "slates_sha256": _sha256(slates_path),
               "items": str(items_path), "items_sha256": _sha256(items_path)}  # fmt: skip
    return dataclasses.replace(log, sources=sources)


def _problems_error(problems: list[str]) -> None:
    if problems:
        raise ScenarioError("\n".join(problems))


def _column_checker(table, path: Path, problems: list[str]):
    """Return ``need(name, check, kind, fix, required=True, nulls=False) -> bool`` for one table.

    ``need`` appends a one-line problem (missing required column, wrong type per ``check``,
    nulls where none are allowed) to ``problems`` and returns whether the column is usable.
    """
    names = table.schema.names

    def need(name, check, kind, fix, required=True, nulls=False):
        if name not in names:
            if required:
                problems.append(f"{path}: missing column '{name}' ({kind}); fix: add it")
            return False
        t = table.schema.field(name).type
        if not check(t):
            problems.append(f"{path}: column '{name}' has type {t}, expected {kind}; fix: {fix}")
            return False
        n_null = table.column(name).null_count
        if n_null and not nulls:
            problems.append(f"{path}: column '{name}' has {n_null} null value(s); fix: fill or drop those rows")
            return False
        return True

    return need


def _read_items(path: Path) -> dict:
    import pyarrow as pa

    table = _read_table(path, "items")
    where = f"{path}"
    problems = []

    need = _column_checker(table, path, problems)

    is_float = pa.types.is_floating
    is_num = lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)  # noqa: E731
    ok_id = need("item_id", _is_int, "int64", "cast it to int64")
    ok_emb = need("embedding", lambda t: _is_list(t) and is_num(t.value_type), "list<float32>",
                  "store one list of floats per item")  # fmt: skip
    need("category", _is_int, "int", "store integer category ids")
    ok_len = need("length_minutes", is_num, "float (minutes)", "store the duration in minutes as float32")
    ok_harm = need("harmful", pa.types.is_boolean, "bool", "store true/false", required=False)
    ok_q = need("quality", is_float, "float", "cast it to float32", required=False)
    ok_h = need("hook", is_float, "float", "cast it to float32", required=False)
    ok_cr = need("creator_id", _is_int, "int", "store integer creator ids", required=False)
    ok_pub = need("published", pa.types.is_timestamp, "timestamp", "store a timestamp (pa.timestamp('s'))",
                  required=False)  # fmt: skip
    if table.num_rows == 0:
        problems.append(f"{where}: the items table has no rows; fix: one row per item")
    _problems_error(problems)

    m = table.num_rows
    item_id = table.column("item_id").to_numpy().astype(np.int64) if ok_id else None
    if item_id is not None:
        uniq, counts = np.unique(item_id, return_counts=True)
        if (counts > 1).any():
            problems.append(f"{where}: column 'item_id' repeats {int((counts > 1).sum())} id(s) (e.g. "
                            f"{int(uniq[counts > 1][0])}); fix: one row per item")  # fmt: skip
    emb = None
    if ok_emb:
        flat, lengths, _, null_values = _list_column(table, "embedding")
        dims = np.unique(lengths)
        if null_values:
            problems.append(f"{where}: column 'embedding' has {null_values} null element(s); fix: fill them")
        elif dims.size != 1:
            problems.append(f"{where}: column 'embedding' has lists of lengths {dims[:5].tolist()}; fix: give every "
                            "item an embedding of the same length D")  # fmt: skip
        elif not 2 <= int(dims[0]) <= MAX_DIM:
            problems.append(f"{where}: column 'embedding' has length {int(dims[0])}; fix: use 2 to {MAX_DIM} "
                            "dimensions (reduce with PCA if longer)")  # fmt: skip
        else:
            emb = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(m, int(dims[0]))
            norm = np.linalg.norm(emb, axis=1)
            if not np.isfinite(emb).all():
                problems.append(f"{where}: column 'embedding' has NaN or infinite values; fix: finite floats only")
            elif (norm == 0).any():
                problems.append(f"{where}: column 'embedding' has {int((norm == 0).sum())} all-zero vector(s) (e.g. "
                                f"row {int(np.flatnonzero(norm == 0)[0])}); fix: give every item a non-zero "
                                "embedding")  # fmt: skip
            else:
                emb = _unit_rows(emb)
    length = None
    if ok_len:
        length = table.column("length_minutes").to_numpy().astype(np.float64)
        bad = ~(np.isfinite(length) & (length > 0) & (length <= 1440))
        if bad.any():
            problems.append(f"{where}: column 'length_minutes' has {int(bad.sum())} value(s) outside (0, 1440] "
                            f"(e.g. {float(length[bad][0])!r} in row {int(np.flatnonzero(bad)[0])}); fix: durations in "
                            "minutes, e.g. 0.5 for 30 s")  # fmt: skip

    def finite(name, ok):
        if not ok:
            return None
        x = table.column(name).to_numpy().astype(np.float64)
        if not np.isfinite(x).all():
            problems.append(f"{where}: column '{name}' has NaN or infinite values; fix: finite floats only")
        return x.astype(np.float32)

    quality, hook = finite("quality", ok_q), finite("hook", ok_h)
    category_id, category = np.unique(table.column("category").to_numpy().astype(np.int64), return_inverse=True)
    creator = None
    if ok_cr:
        _, creator = np.unique(table.column("creator_id").to_numpy().astype(np.int64), return_inverse=True)
        creator = creator.astype(np.int32)
    published = None
    if ok_pub:
        published = _local_times(table.column("published"))
    _problems_error(problems)
    harmful = table.column("harmful").to_numpy(zero_copy_only=False).astype(bool) if ok_harm else np.zeros(m, bool)
    return dict(
        item_id=item_id, item_embedding=emb, item_category=category.astype(np.int32), category_id=category_id,
        item_harmful_mask=harmful, item_length_minutes=length.astype(np.float32), item_quality=quality,
        item_hook=hook, item_creator=creator, published=published, path=path,
    )  # fmt: skip


def _read_slates(path: Path, items: dict) -> ReplayLog:
    import pandas as pd
    import pyarrow as pa

    table = _read_table(path, "slates")
    where = f"{path}"
    problems = []

    need = _column_checker(table, path, problems)

    need("user_id", lambda t: _is_int(t) or _is_str(t), "int64 or string", "cast it to int64 or string")
    need("time", pa.types.is_timestamp, "timestamp",
                   "store a timestamp, e.g. pa.timestamp('s', tz='Asia/Shanghai'), not text or epoch numbers")  # fmt: skip
    need("slate", lambda t: _is_list(t) and _is_int(t.value_type), "list<int64> of item ids",
                    "store each slate as a list of int64 item ids in rank order")  # fmt: skip
    ok_cohort = need("cohort", _is_str, "string", f"use one of {', '.join(COHORTS)} (or null)", False, True)
    ok_age = need("age", _is_int, "int (years)", "store ages as integers (or null)", False, True)
    if table.num_rows == 0:
        problems.append(f"{where}: the slates table has no rows; fix: one row per logged request")
    _problems_error(problems)

    q = table.num_rows
    flat, lengths, _, null_values = _list_column(table, "slate")
    if null_values:
        problems.append(f"{where}: column 'slate' has {null_values} null item id(s); fix: drop them from the lists")
    if (lengths == 0).any():
        problems.append(f"{where}: column 'slate' has {int((lengths == 0).sum())} empty or null slate(s) (e.g. row "
                        f"{int(np.flatnonzero(lengths == 0)[0])}); fix: drop requests that showed nothing")  # fmt: skip
    _problems_error(problems)

    # item ids -> slots
    values = flat.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(items["item_id"], kind="stable")
    sorted_ids = items["item_id"][order]
    pos = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    known = sorted_ids[pos] == values
    row_of = np.repeat(np.arange(q), lengths)
    if not known.all():
        bad = np.flatnonzero(~known)
        problems.append(f"{where}: column 'slate' names {bad.size} item id(s) missing from {items['path']} (e.g. "
                        f"{int(values[bad[0]])} in row {int(row_of[bad[0]])}); fix: add those items to the items "
                        "table")  # fmt: skip
        _problems_error(problems)
    k_max = int(lengths.max())
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    slate = np.full((q, k_max), -1, dtype=np.int32)
    slate[row_of, np.arange(values.size) - np.repeat(starts, lengths)] = order[pos].astype(np.int32)
    srt = np.sort(slate, axis=1)
    dup = ((srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)).any(axis=1)
    if dup.any():
        problems.append(f"{where}: column 'slate' repeats an item within {int(dup.sum())} slate(s) (e.g. row "
                        f"{int(np.flatnonzero(dup)[0])}); fix: each slate lists distinct items")  # fmt: skip

    # users, cohorts, ages
    ids = table.column("user_id")
    ids = ids.cast(pa.string()) if _is_str(ids.type) else ids
    user_id, user_idx = np.unique(ids.to_numpy(zero_copy_only=False), return_inverse=True)
    n = user_id.size
    user_cohort = np.full(n, -1, dtype=np.int8)
    user_age = np.full(n, -1, dtype=np.int16)
    if ok_cohort:
        raw = pd.Series(table.column("cohort").to_pandas(), dtype="object")
        bad = raw.notna() & ~raw.isin(COHORTS)
        if bad.any():
            problems.append(f"{where}: column 'cohort' has value {raw[bad].iloc[0]!r} (row {int(np.flatnonzero(bad)[0])}); "
                            f"fix: use one of {', '.join(COHORTS)} or null")  # fmt: skip
        else:
            code = raw.map({c: i for i, c in enumerate(COHORTS)}).fillna(-1).to_numpy(dtype=np.int64)
            _per_user(code, user_idx, user_cohort, where, "cohort", user_id, problems)
    if ok_age:
        age = pd.Series(table.column("age").to_pandas()).astype("Float64")
        bad = age.notna() & ((age < 0) | (age > 120))
        if bad.any():
            problems.append(f"{where}: column 'age' has value {int(age[bad].iloc[0])} (row {int(np.flatnonzero(bad)[0])}); "
                            "fix: ages in years, 0 to 120, or null")  # fmt: skip
        else:
            _per_user(age.fillna(-1).to_numpy(dtype=np.int64), user_idx, user_age, where, "age", user_id, problems)
    if ok_cohort and ok_age and not problems:
        both = (user_cohort >= 0) & (user_age >= 0)
        clash = both & ((user_age < 18) != (user_cohort == 1))
        if clash.any():
            u = int(np.flatnonzero(clash)[0])
            problems.append(f"{where}: columns 'cohort' and 'age' disagree for {int(clash.sum())} user(s) (e.g. user "
                            f"{user_id[u]!r}: {COHORTS[user_cohort[u]]}, age {int(user_age[u])}); fix: a minor is "
                            "under 18")  # fmt: skip
    by_age = (user_cohort < 0) & (user_age >= 0)  # the population's age bands: under 18, 18-59, 60 and over
    user_cohort[by_age] = np.where(user_age[by_age] < 18, 1, np.where(user_age[by_age] >= 60, 2, 0))

    # times (local), sorted by (user, time, row)
    ts = _local_times(table.column("time"))
    origin = ts.min().normalize()
    minute = _minutes_since(ts, origin)
    day = np.floor(minute / 1440.0).astype(np.int64)
    if day.max() >= 3650:
        problems.append(f"{where}: column 'time' spans {int(day.max()) + 1} days; fix: replay at most 3650 days")
    _problems_error(problems)
    sort = np.lexsort((np.arange(q), minute, user_idx))
    pub = items.pop("published")
    items.pop("path")
    return ReplayLog(
        user_id=user_id, user_cohort=user_cohort, user_age=user_age,
        req_user_idx=user_idx[sort].astype(np.int64), req_minute=minute[sort], req_day=day[sort].astype(np.int32),
        req_hour=ts.dt.hour.to_numpy()[sort].astype(np.int8), slate_idx=slate[sort],
        item_published_minute=None if pub is None else _minutes_since(pub, origin),
        start_date=origin.date().isoformat(), sources={}, **items,
    )  # fmt: skip


def _per_user(code, user_idx, out, where, name, user_id, problems) -> None:
    """Fill ``out[user]`` from a per-row code (-1 unknown); a user with two known values is a problem."""
    known = code >= 0
    u, c = user_idx[known], code[known]
    lo = np.full(out.size, np.iinfo(np.int64).max)
    hi = np.full(out.size, -1)
    np.minimum.at(lo, u, c)
    np.maximum.at(hi, u, c)
    clash = (hi >= 0) & (lo != hi)
    if clash.any():
        first = int(np.flatnonzero(clash)[0])
        problems.append(f"{where}: column '{name}' changes within {int(clash.sum())} user(s) (e.g. user "
                        f"{user_id[first]!r}); fix: one {name} per user_id")  # fmt: skip
        return
    out[hi >= 0] = hi[hi >= 0]


# -- the replay -----------------------------------------------------------------------------------------


def replay_scenario(scenario: Scenario, log: ReplayLog) -> Scenario:
    """Return ``scenario`` adapted to ``log``: its users, days, items, categories and embedding length.

    The market and the fleet are dropped (a replay covers the feed), and the catalogue's
    daily replacement is off (the items table is the catalogue).
    """
    data = scenario.model_dump()
    data["population"]["n_users"] = log.n_users
    data["population"]["interest_dim"] = int(log.item_embedding.shape[1])
    data["clock"]["days"] = log.n_days
    data["catalogue"]["n_items"] = max(10, log.n_items)
    data["catalogue"]["n_categories"] = int(log.category_id.size)
    data["catalogue"]["new_items_per_day"] = 0
    data["recommender"]["n_candidates"] = min(data["recommender"]["n_candidates"], max(10, log.n_items))
    data["market"] = None
    data["fleet"] = None
    data["dispatcher"] = {}
    return scenario_from_dict(data, source=f"{scenario.name} (replay)")


def _centroids(log: ReplayLog) -> np.ndarray:
    """Return the unit mean embedding of each category, float32 (C, D)."""
    c, d = log.category_id.size, log.item_embedding.shape[1]
    total = np.zeros((c, d), dtype=np.float64)
    np.add.at(total, log.item_category, log.item_embedding)
    return _unit_rows(total)


def replay_population(log: ReplayLog, scenario: Scenario, replication: int = 0) -> Users:
    """Draw the simulated users of a log (see the module docstring).

    Parameters
    ----------
    log : ReplayLog
    scenario : Scenario
        A scenario adapted by :func:`replay_scenario`.
    replication : int
        Selects the population's random streams.

    Returns
    -------
    Users
        ``log.n_users`` users, user ``u`` standing for ``log.user_id[u]``.
    """
    names = ("replay:cohorts",) + tuple(f"replay:population:{c}" for c in COHORTS)
    gens = spawn_generators(scenario.seed, names, replication)
    cohort = log.user_cohort.astype(np.int64)
    unknown = cohort < 0
    shares = np.array([scenario.population.shares.get(c, 0.0) for c in COHORTS])
    cohort[unknown] = gens["replay:cohorts"].choice(3, size=int(unknown.sum()), p=shares / shares.sum())
    centroids = _centroids(log)
    n = log.n_users
    parts: dict[str, np.ndarray] = {}
    data = scenario.model_dump()
    for c, name in enumerate(COHORTS):
        idx = np.flatnonzero(cohort == c)
        if idx.size == 0:
            continue
        data["population"]["n_users"] = int(idx.size)
        data["population"]["shares"] = {k: float(k == name) for k in COHORTS}
        sub = make_users(scenario_from_dict(data, source="<replay>"), centroids, gens[f"replay:population:{name}"])
        for f in dataclasses.fields(Users):
            if not f.init:  # the session block: Users builds it from the fields
                continue
            v = getattr(sub, f.name)
            if f.name not in parts:
                parts[f.name] = np.empty((n,) + v.shape[1:], dtype=v.dtype)
            parts[f.name][idx] = v
    users = Users(**parts)
    known_age = log.user_age >= 0
    users.age[known_age] = log.user_age[known_age]
    users.opt_out_mask[:] = False  # the logs do not say who switched personalisation off
    return users


def counterfactual_slates(log: ReplayLog, kind: str, seed: int) -> np.ndarray:
    """Slates of a declared counterfactual on the logged requests, int32 (q, K), -1 padded.

    Parameters
    ----------
    log : ReplayLog
    kind : {"uniform", "chronological", "logged"}
        ``uniform``: as many distinct items as the logged slate, each item of the items table
        equally likely. ``chronological``: the newest items published at or before the request
        (needs ``items.published``; fewer if fewer were published). ``logged``: the logged slates
        themselves (the do-nothing check).
    seed : int
        The scenario seed (``uniform`` draws; the same in every replication).
    """
    lengths = log.slate_lengths
    q, k = log.slate_idx.shape
    rank = np.arange(k)[None, :]
    if kind == "logged":
        return log.slate_idx.copy()
    if kind == "uniform":
        rng = spawn_generators(seed, ("replay:counterfactual:uniform",))["replay:counterfactual:uniform"]
        m = log.n_items
        width = min(k, m)
        out = rng.integers(0, m, size=(q, width))
        while True:  # redraw repeated items (distinct items per slate), row by row in a fixed order
            srt = np.sort(out, axis=1)
            dup_rows = np.flatnonzero((srt[:, 1:] == srt[:, :-1]).any(axis=1))
            if dup_rows.size == 0:
                break
            for r in dup_rows:
                row = out[r]
                seen = np.zeros(row.size, dtype=bool)
                _, first = np.unique(row, return_index=True)
                seen[first] = True
                row[~seen] = rng.integers(0, m, size=int((~seen).sum()))
        slate = np.full((q, k), -1, dtype=np.int32)
        slate[:, :width] = out
        slate[rank >= np.minimum(lengths, width)[:, None]] = -1
        return slate
    if kind == "chronological":
        if log.item_published_minute is None:
            raise ScenarioError(f"{log.sources.get('items', ITEMS_FILE)}: the chronological counterfactual needs a "
                                "'published' timestamp column; fix: add it, or use --counterfactual uniform")  # fmt: skip
        by_time = np.lexsort((log.item_id, log.item_published_minute))
        pos = np.searchsorted(log.item_published_minute[by_time], log.req_minute, side="right")
        j = pos[:, None] - 1 - rank
        slate = np.where((j >= 0) & (rank < lengths[:, None]), by_time[np.maximum(j, 0)], -1).astype(np.int32)
        return slate
    raise ScenarioError(f"counterfactual '{kind}' is not known; fix: use one of {', '.join(COUNTERFACTUALS)}")


def replay(
    log: ReplayLog,
    scenario: Scenario,
    slate_idx: np.ndarray | None = None,
    replication: int = 0,
    session_gap_minutes: float = 30.0,
    label: str = "logged",
) -> RunRecord:
    """Show ``slate_idx`` (default: the logged slates) at the logged requests to simulated users.

    Parameters
    ----------
    log : ReplayLog
    scenario : Scenario
        A scenario adapted by :func:`replay_scenario` (behaviour, population, seed).
    slate_idx : int32 (q, K'), optional
        Item slots in rank order for each request of ``log`` (its order), -1 padded.
    replication : int
        Population and random-number replication.
    session_gap_minutes : float
        A longer gap between two requests of a user starts a new logged session.
    label : str
        Recorded as the record's ``recommender``.

    Returns
    -------
    RunRecord
        Per-user-day counters over ``log.n_days`` days (day 0: ``log.start_date``); ``extra``
        holds the replay's diagnostics: ``requests`` (logged), ``views`` (used), ``sessions``,
        ``truncated_sessions``, ``sessions_by_cohort`` / ``truncated_by_cohort`` (3,), and
        ``true_habit`` (float32 (n,), hours a day: the habit stock after each user's last request).
    """
    sc = scenario
    slate = log.slate_idx if slate_idx is None else np.ascontiguousarray(slate_idx, dtype=np.int32)
    if slate.ndim != 2 or slate.shape[0] != log.n_requests or slate.size == 0:
        raise ValueError(f"slate_idx must have shape (n_requests={log.n_requests}, K); got {slate.shape}")
    if slate.max() >= log.n_items or slate.min() < -1:
        raise ValueError("slate_idx holds item slots outside [-1, n_items)")
    if sc.population.n_users != log.n_users or sc.population.interest_dim != log.item_embedding.shape[1]:
        raise ValueError("scenario is not adapted to the log; fix: pass replay_scenario(scenario, log)")
    users = replay_population(log, sc, replication)
    key = root_key(sc.seed, replication)
    beh = L.pack_behaviour(sc)
    cat = sc.catalogue
    n, m, dim, n_cat = log.n_users, log.n_items, log.item_embedding.shape[1], log.category_id.size
    n_days, k = log.n_days, slate.shape[1]
    harmful = log.item_harmful_mask
    quality = log.item_quality if log.item_quality is not None else np.zeros(m, dtype=np.float32)
    hook = (log.item_hook if log.item_hook is not None
            else (cat.hook_mean + cat.harmful_hook_bonus * harmful).astype(np.float32))  # fmt: skip
    creator = log.item_creator
    creator_minutes = np.zeros(int(creator.max()) + 1, dtype=np.float64) if creator is not None else None

    day_stats = np.zeros((n, L.N_DAY), dtype=np.float32)
    cat_counts = np.zeros((n, n_cat), dtype=np.uint32)  # logged slates may be of any size
    imp_emb_sum = np.zeros((n, dim), dtype=np.float32)
    minhash = np.full((n, N_MINHASH), np.iinfo(np.uint32).max, dtype=np.uint32)
    item_minhash = feed.item_signatures(log.item_id, N_MINHASH)
    user_hat = np.zeros((n, dim), dtype=np.float32)  # the platform's profile: unused by logged slates
    user_days = np.zeros((n_days, n, L.N_DAY), dtype=np.float32)
    feed_days = np.full((n_days, n, 2), np.nan, dtype=np.float32)
    hourly = np.zeros((3, 24), dtype=np.float64)
    cur_day = np.full(n, -1, dtype=np.int64)
    last_minute = np.full(n, np.nan)
    minutes_per_halving = 1440.0 * sc.behaviour.habit_half_life_days
    sessions = np.zeros(3, dtype=np.int64)
    truncated = np.zeros(3, dtype=np.int64)
    views = 0

    def flush(u_idx):
        d = cur_day[u_idx]
        user_days[d, u_idx] = day_stats[u_idx]
        ent, top1 = _entropy_top1(cat_counts[u_idx])
        feed_days[d, u_idx, 0] = ent
        feed_days[d, u_idx, 1] = top1
        day_stats[u_idx] = 0.0
        cat_counts[u_idx] = 0

    ordinal = log.request_ordinal()
    start_mask = log.session_start_mask(session_gap_minutes)
    night_mask = (log.req_hour >= L.NIGHT_START_HOUR) | (log.req_hour < L.NIGHT_END_HOUR)
    by_ordinal = np.argsort(ordinal, kind="stable")
    bounds = np.searchsorted(ordinal[by_ordinal], np.arange(int(ordinal.max()) + 2))
    rank_score = (k - np.arange(k)).astype(np.float32)
    for step in range(bounds.size - 1):
        rows = by_ordinal[bounds[step] : bounds[step + 1]]  # each user's step-th request: one row per user
        u_all = log.req_user_idx[rows]
        new_day = (log.req_day[rows] > cur_day[u_all]) & (cur_day[u_all] >= 0)
        flush(u_all[new_day])
        cur_day[u_all] = log.req_day[rows]
        opened = u_all[start_mask[rows]]
        np.add.at(truncated, users.cohort[opened[users.in_session_mask[opened]]], 1)
        np.add.at(sessions, users.cohort[opened], 1)
        users.in_session_mask[opened] = True
        users.streak_minutes[opened] = 0.0
        users.since_prompt_minutes[opened] = 0.0
        users.session[opened, L.S_ALERTED] = 0.0
        day_stats[opened, L.SESSIONS] += 1.0
        go = users.in_session_mask[u_all]
        rows, u_act = rows[go], u_all[go]
        dt = np.nan_to_num(log.req_minute[rows] - last_minute[u_act])
        users.true_habit[u_act] = (users.true_habit[u_act] * 0.5 ** (dt / minutes_per_halving)).astype(np.float32)
        last_minute[u_act] = log.req_minute[rows]
        users.time_left[u_act] = np.inf  # the log, not a tick budget, says when requests happen
        for night in (False, True):
            sel = night_mask[rows] == night
            if not sel.any():
                continue
            r_sel, active = rows[sel], np.ascontiguousarray(u_act[sel], dtype=np.int64)
            n_act = active.size
            cand = np.ascontiguousarray(slate[r_sel])
            scores = np.where(cand >= 0, rank_score[None, :], np.float32(-np.inf)).astype(np.float32)
            inf = np.full(n_act, np.inf, dtype=np.float32)
            out_item = np.empty(n_act, dtype=np.int32)
            out_min = np.empty(n_act, dtype=np.float32)
            out_slate = np.empty((n_act, k), dtype=np.int32)
            with _threads_for(n_act):
                feed.view_step(
                    key, step, night, active, cand, scores, inf, inf, k, beh,
                    log.item_embedding, log.item_category, harmful, quality, hook, log.item_length_minutes,
                    item_minhash, users.true_interest, users.session, users.in_session_mask, user_hat,
                    day_stats, cat_counts, imp_emb_sum, minhash,
                    out_item, out_min, out_slate,
                )  # fmt: skip
            views += n_act
            watched = out_item >= 0
            cell = users.cohort[active[watched]].astype(np.int64) * 24 + log.req_hour[r_sel[watched]]
            hourly += np.bincount(cell, weights=out_min[watched], minlength=72).reshape(3, 24)
            if creator_minutes is not None:
                creator_minutes += np.bincount(creator[out_item[watched]], weights=out_min[watched],
                                               minlength=creator_minutes.size)  # fmt: skip
    seen = np.flatnonzero(cur_day >= 0)
    flush(seen)
    np.add.at(truncated, users.cohort[seen[users.in_session_mask[seen]]], 1)
    return RunRecord(
        scenario=sc, replication=replication, recommender=label, recommender_params={},
        cohort=users.cohort, age=users.age, opt_out_mask=users.opt_out_mask,
        true_intended_minutes=np.ascontiguousarray(users.true_intended_minutes),  # a column of the session block
        user_days=user_days, feed_days=feed_days,
        hourly_minutes=hourly, true_interest0=users.true_interest0, true_interest=users.true_interest,
        imp_emb_sum=imp_emb_sum, minhash=minhash, agent_steps=views, creator_minutes=creator_minutes,
        extra=dict(requests=log.n_requests, views=views, sessions=int(sessions.sum()),
                   truncated_sessions=int(truncated.sum()), sessions_by_cohort=sessions.tolist(),
                   truncated_by_cohort=truncated.tolist(), session_gap_minutes=float(session_gap_minutes),
                   true_habit=users.true_habit.copy()),
    )  # fmt: skip
