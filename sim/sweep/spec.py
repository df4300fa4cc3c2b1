"""Sweep files: a base scenario, axes of levers and uncertainties, outcomes, replications.

A sweep file is TOML::

    name = "minors_cap_sweep"
    base = "minors_mode.toml"          # a scenario, relative to the sweep file
    replications = 3
    outcomes = ["minutes_per_day:minor", "night_minutes_per_day:minor"]
    design = "grid"                    # or "sobol" (uncertainties sampled by Saltelli's scheme)

    [overrides]                        # dotted scenario paths set before the axes
    "population.n_users" = 1000

    [[axes]]
    path = "recommender.minors_mode.cap_under_16_minutes"
    role = "lever"
    values = [40, 60, 90]

    [[axes]]
    path = "behaviour.minor.self_control_mean"
    role = "uncertainty"
    range = [0.25, 0.45]
    samples = 3                        # grid: evenly spaced points of the range

The first value of every lever is the reference setting: the policy comparison
(:func:`audits.sweeps.policy_comparison`) reports differences from it.

Experiments are the design points (every combination of lever values, times
every uncertainty point) times the replications. Replication ``r`` of every
design point uses the same seed and replication index, so levers are compared
on the same populations and random numbers (common random numbers).

Public objects
--------------
Axis, SweepSpec, Experiment
load_sweep
    Read and validate a sweep file (bad input raises :class:`sim.scenario.ScenarioError`).
expand
    The experiments of a sweep, in a fixed order with stable ids.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, ValidationError, model_validator

from sim.scenario import (
    Scenario,
    ScenarioError,
    _format_error,
    _Settings,
    load_scenario,
    read_toml,
    scenario_from_dict,
    set_path,
)

__all__ = ["RESERVED_COLUMNS", "Axis", "Experiment", "SweepSpec", "expand", "load_sweep"]

# columns of the experiments and outcomes tables: an axis may not be named like one
RESERVED_COLUMNS = frozenset({"experiment_id", "design_point", "replication", "seed", "status", "error",
                              "wall_seconds", "outcome", "cohort", "value"})  # fmt: skip


class Axis(_Settings):
    """One swept setting: a dotted scenario path, its role, and its values or range."""

    path: str
    role: Literal["lever", "uncertainty"]
    values: list[Any] | None = None
    range: tuple[float, float] | None = None
    samples: Annotated[int, Field(ge=1, le=10_000)] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if (self.values is None) == (self.range is None):
            raise ValueError(f"axis '{self.path}': give either values = [...] or range = [low, high]")
        if self.values is not None and not self.values:
            raise ValueError(f"axis '{self.path}': values is empty")
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"axis '{self.path}': range must be [low, high] with low < high")
        return self

    @property
    def column(self) -> str:
        """Column name of the axis in the experiments table."""
        return self.name or self.path.replace(".", "__")

    def grid_values(self) -> list:
        """Values on a grid design (a range gives ``samples`` evenly spaced points, default 3).

        Numbers are all floats when any value is a float, so an axis column has one type.
        """
        if self.values is not None:
            vals = list(self.values)
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
            if numeric and any(isinstance(v, float) for v in vals):
                vals = [float(v) for v in vals]
            return vals
        return [float(v) for v in np.linspace(self.range[0], self.range[1], self.samples or 3)]


class SweepSpec(_Settings):
    """A validated sweep file (see the module docstring)."""

    name: str
    base: str
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)] | None = None
    replications: Annotated[int, Field(ge=1, le=10_000)] = 1
    design: Literal["grid", "sobol"] = "grid"
    sobol_samples: Annotated[int, Field(ge=2, le=1_000_000)] = 16
    outcomes: list[str] = Field(min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)
    axes: list[Axis] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self):
        cols = [a.column for a in self.axes]
        if len(set(cols)) != len(cols):
            raise ValueError("two axes have the same column name; give one of them name = '...'")
        paths = [a.path for a in self.axes]
        dup = sorted({p for p in paths if paths.count(p) > 1})
        if dup:
            raise ValueError(f"two axes set the same setting ({', '.join(dup)}); fix: one axis per setting")
        clash = sorted(set(cols) & RESERVED_COLUMNS)
        if clash:
            raise ValueError(
                f"axis column name(s) {', '.join(clash)} are used by the result tables; fix: give the axis "
                "name = '...' (the scenario seed is set by the sweep's seed, not by an axis)"
            )
        if self.design == "sobol":
            bad = [a.path for a in self.axes if a.role == "uncertainty" and a.range is None]
            if bad or not any(a.role == "uncertainty" for a in self.axes):
                raise ValueError(
                    "design = 'sobol' needs every uncertainty axis to have a range = [low, high] "
                    f"(and at least one uncertainty); fix: {', '.join(bad) or 'add an uncertainty axis'}"
                )
        return self

    @property
    def levers(self) -> list[Axis]:
        """The lever axes, in file order."""
        return [a for a in self.axes if a.role == "lever"]

    @property
    def uncertainties(self) -> list[Axis]:
        """The uncertainty axes, in file order."""
        return [a for a in self.axes if a.role == "uncertainty"]


@dataclass(frozen=True)
class Experiment:
    """One run of a sweep: a design point and a replication."""

    experiment_id: str
    design_point: int
    replication: int
    seed: int
    values: dict  # axis column -> value
    scenario: dict  # the resolved scenario mapping (validated in the worker)


def load_sweep(path: str | Path) -> tuple[SweepSpec, Scenario]:
    """Read a sweep file and its base scenario; check every axis value against the scenario schema.

    Raises
    ------
    ScenarioError
        Missing file, bad TOML, unknown keys, an axis path that is not a setting, a value the
        setting does not accept, or an unknown outcome; the message names the file and the key.
    """
    from audits.outcomes import parse_outcome

    path = Path(path)
    data = read_toml(path, "sweep", "scenarios/*_sweep.toml")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e, str(path)).replace("unknown key", "unknown sweep key") for e in exc.errors()]
        lines = [ln.split("; did you mean")[0] if "sweep key" in ln else ln for ln in lines]
        raise ScenarioError("\n".join(lines)) from None
    for o in spec.outcomes:
        try:
            parse_outcome(o)
        except ValueError as exc:
            raise ScenarioError(f"{path}: outcomes: {exc}") from None
    base = load_scenario(path.parent / spec.base)
    data = base.model_dump()
    for key, value in spec.overrides.items():
        set_path(data, key, value, f"{path}: overrides")
    base = scenario_from_dict(data, source=f"{path} (base with overrides)")
    for axis in spec.axes:
        values = axis.grid_values() if axis.values is not None else list(axis.range)
        for v in values:
            trial = copy.deepcopy(data)
            set_path(trial, axis.path, v, f"{path}: axes '{axis.path}'")
            try:
                scenario_from_dict(trial, source=f"{path}: axes '{axis.path}' = {v!r}")
            except ScenarioError as exc:
                # a value may be invalid only in combination; a type error or bad path is always fatal
                if "must be" in str(exc) or "unknown key" in str(exc):
                    raise
    return spec, base


def _design_points(spec: SweepSpec) -> list[dict]:
    levers = spec.levers
    lever_grid = list(itertools.product(*[a.grid_values() for a in levers])) or [()]
    unc = spec.uncertainties
    if spec.design == "grid":
        unc_points = list(itertools.product(*[a.grid_values() for a in unc])) or [()]
    else:
        from SALib.sample import sobol

        problem = {"num_vars": len(unc), "names": [a.column for a in unc], "bounds": [list(a.range) for a in unc]}
        seed = spec.seed if spec.seed is not None else 0
        unc_points = [tuple(float(x) for x in row) for row in sobol.sample(problem, spec.sobol_samples, seed=seed)]
    points = []
    for lv in lever_grid:
        for uv in unc_points:
            points.append({a.column: v for a, v in zip(levers + unc, (*lv, *uv), strict=True)})
    return points


def expand(spec: SweepSpec, base: Scenario) -> list[Experiment]:
    """Every experiment of the sweep, in a fixed order (design point, then replication)."""
    seed = spec.seed if spec.seed is not None else base.seed
    data0 = base.model_dump()
    out = []
    for i, values in enumerate(_design_points(spec)):
        data = copy.deepcopy(data0)
        data["seed"] = seed
        for axis in spec.axes:
            set_path(data, axis.path, values[axis.column], "sweep")
        for r in range(spec.replications):
            out.append(Experiment(f"p{i:05d}-r{r:03d}", i, r, seed, values, data))
    return out


def fingerprint(spec: SweepSpec, base: Scenario) -> str:
    """Return a hash of the sweep and its resolved base (a resumed sweep must match it)."""
    text = json.dumps([spec.model_dump(), base.model_dump()], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
