"""Writing results: atomic output directories and the run manifest.

Files are first written into a hidden staging directory next to the target,
then moved into place one by one with :func:`os.replace` (atomic on POSIX).
A run that fails or is interrupted before the move leaves nothing in the
target directory but what was there before.

Public objects
--------------
staged_output, manifest, write_parquet, write_json
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import pandas as pd

__all__ = ["OUTPUT_NAMES", "OutputError", "atomic_path", "manifest", "staged_output", "write_json", "write_parquet"]

_PACKAGES = ("recaudit", "numpy", "numba", "pandas", "pyarrow", "scipy", "mesa", "matplotlib", "pydantic")


# Every file a recaudit command may write; on success the ones this command did not write are
# removed, so a directory never mixes the results of two runs.
OUTPUT_NAMES = (
    "metrics.parquet", "users.parquet", "hourly.parquet", "quotes.parquet", "deliveries.parquet",
    "worker_days.parquet", "manifest.json", "findings.json", "report.html", "self_assessment.md",
    "hotlist.parquet", "replay_daily.parquet",
)  # fmt: skip


class OutputError(OSError):
    """The output directory cannot be created or written."""


@contextlib.contextmanager
def staged_output(out_dir: str | Path):
    """Yield a staging directory; on success move its files into ``out_dir``.

    On any exception (including KeyboardInterrupt) the staging directory is
    removed and ``out_dir`` is left untouched. On success, recaudit outputs of an
    earlier run that this run did not write are removed (see ``OUTPUT_NAMES``).
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".recaudit-staging-", dir=out))
    except OSError as exc:
        raise OutputError(f"cannot write to output directory '{out}': {exc.strerror or exc}") from None
    try:
        yield stage
        written = {f.name for f in stage.iterdir()}
        for name in OUTPUT_NAMES:
            if name not in written and (out / name).is_file():
                (out / name).unlink()
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a hidden temporary path beside ``path``; on success move it onto ``path`` (atomic on POSIX).

    Readers never see a half-written file: they see the old file, or the new one. A temporary
    left by a crash starts with a dot, so dataset readers (pyarrow) skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pd.DataFrame, path: Path, metadata_json: dict | None = None) -> None:
    """Write a DataFrame as Parquet (pyarrow), with optional JSON metadata in the schema; atomic (temp + rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=False)
    if metadata_json is not None:
        meta = dict(table.schema.metadata or {})
        meta[b"recaudit"] = json.dumps(metadata_json, default=str).encode()
        table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


BATCH_ROWS = 1 << 20  # rows per batch of a table written with write_parquet_batches (users.parquet)


def write_parquet_batches(frames, path: Path, metadata_json: dict | None = None) -> None:
    """Write an iterable of DataFrames (same columns and dtypes) as one Parquet file, batch by batch.

    Only one batch is in memory at a time; atomic (temp + rename) like :func:`write_parquet`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    with atomic_path(path) as tmp:
        try:
            for df in frames:
                table = pa.Table.from_pandas(df, preserve_index=False)
                if writer is None:
                    meta = dict(table.schema.metadata or {})
                    if metadata_json is not None:
                        meta[b"recaudit"] = json.dumps(metadata_json, default=str).encode()
                    schema = table.schema.with_metadata(meta)
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table.cast(schema))
        finally:
            if writer is not None:
                writer.close()


def write_json(obj, path: Path) -> None:
    """Write JSON (UTF-8, indented)."""
    Path(path).write_text(json.dumps(obj, indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")


def _git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=5,
        )  # fmt: skip
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def manifest(scenario, *, command: str, seed: int, replications: int = 1, extra: dict | None = None) -> dict:
    """Return the manifest of an output: resolved scenario, seed, versions, git commit, command."""
    versions = {"python": sys.version.split()[0]}
    for p in _PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "command": command,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "replications": replications,
        "git_commit": _git_commit(),
        "versions": versions,
        "scenario": scenario.model_dump(mode="json"),
        **(extra or {}),
    }
