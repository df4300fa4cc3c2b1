"""Analyses of a finished sweep: policy comparison by lever, and Sobol sensitivity indices.

Public objects
--------------
policy_comparison
    Outcome means by lever setting with confidence intervals, and paired
    differences from the reference setting (common random numbers: the same
    uncertainty point and replication).
policy_figure
    One panel per outcome: mean and interval by lever setting (PNG bytes).
sobol_indices
    First-order and total Sobol indices of each outcome over the uncertain
    parameters (SALib; needs a ``design = "sobol"`` sweep), per lever setting.
sobol_figure
    Bar chart of the indices (PNG bytes).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from scipy import stats

from sim.sweep.spec import SweepSpec

__all__ = ["policy_comparison", "policy_figure", "sobol_figure", "sobol_indices"]


def _joined(spec: SweepSpec, experiments: pd.DataFrame, outcomes: pd.DataFrame) -> pd.DataFrame:
    ok = experiments[experiments["status"] == "ok"]
    cols = ["experiment_id", "design_point", "replication"] + [a.column for a in spec.axes]
    return outcomes.merge(ok[cols], on="experiment_id", how="inner")


def _t_interval(x: np.ndarray, confidence: float) -> tuple[float, float, float]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    m = float(x.mean())
    if x.size < 2:
        return (m, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return (m, m - half, m + half)


def policy_comparison(
    spec: SweepSpec, experiments: pd.DataFrame, outcomes: pd.DataFrame, confidence: float = 0.95
) -> pd.DataFrame:
    """Outcomes by lever setting, with intervals and paired differences from the reference setting.

    The reference setting is the first value of every lever. Means and intervals are over the
    uncertainty points and replications of a setting (t-intervals); differences are paired on
    (uncertainty point, replication), which share populations and random numbers.

    Returns
    -------
    pandas.DataFrame
        One row per (outcome, cohort, lever setting): the lever columns, ``n``, ``mean``,
        ``ci_low``, ``ci_high``, ``diff``, ``diff_ci_low``, ``diff_ci_high`` (vs the reference).
    """
    levers = [a.column for a in spec.levers]
    unc = [a.column for a in spec.uncertainties]
    data = _joined(spec, experiments, outcomes)
    ref = {a.column: a.grid_values()[0] for a in spec.levers}
    rows = []
    for (metric, cohort), grp in data.groupby(["outcome", "cohort"], sort=True):
        keyed = grp.set_index(unc + ["replication"]) if unc else grp.set_index(["replication"])
        ref_mask = np.all([grp[c].to_numpy() == ref[c] for c in levers], axis=0) if levers else np.ones(len(grp), bool)
        ref_vals = keyed[ref_mask]["value"]
        for setting, g in grp.groupby(levers, sort=True) if levers else [((), grp)]:
            setting = setting if isinstance(setting, tuple) else (setting,)
            mean, lo, hi = _t_interval(g["value"].to_numpy(dtype=float), confidence)
            own = (g.set_index(unc + ["replication"]) if unc else g.set_index(["replication"]))["value"]
            paired = (own - ref_vals.reindex(own.index)).to_numpy(dtype=float)
            d, dlo, dhi = _t_interval(paired, confidence)
            rows.append(dict(outcome=metric, cohort=cohort, **dict(zip(levers, setting, strict=True)), n=len(g),
                             mean=mean, ci_low=lo, ci_high=hi, diff=d, diff_ci_low=dlo, diff_ci_high=dhi))  # fmt: skip
    return pd.DataFrame(rows)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def policy_figure(spec: SweepSpec, table: pd.DataFrame) -> bytes:
    """Mean and interval of every outcome by lever setting (one panel per outcome and cohort)."""
    from audits.figures import _figure

    levers = [a.column for a in spec.levers]
    keys = list(table.groupby(["outcome", "cohort"], sort=False).groups)
    ncol = 2 if len(keys) > 1 else 1
    nrow = math.ceil(len(keys) / ncol)
    fig, axes = _figure((5.2 * ncol, 2.8 * nrow), nrow, ncol, squeeze=False)
    for ax, (metric, cohort) in zip(axes.ravel(), keys, strict=False):
        t = table[(table["outcome"] == metric) & (table["cohort"] == cohort)]
        labels = [", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in row) for row in t[levers].to_numpy()]
        x = np.arange(len(t))
        yerr = np.vstack([t["mean"] - t["ci_low"], t["ci_high"] - t["mean"]])
        ax.errorbar(x, t["mean"], yerr=np.nan_to_num(yerr), fmt="o-", capsize=3)
        ax.set_xticks(x, labels, fontsize=8)
        ax.set_xlabel(", ".join(levers), fontsize=8)
        ax.set_title(f"{metric} ({cohort})", fontsize=9)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"{spec.name}: outcomes by lever (mean, 95% interval over uncertainty x replications)", fontsize=10)
    return _png(fig)


def sobol_indices(spec: SweepSpec, experiments: pd.DataFrame, outcomes: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Sobol indices (SALib) of each outcome over the uncertain parameters, per lever setting.

    The model output of a design point is the mean over its finished replications (failed
    ones are left out). A design point with no value (all its replications failed, or the
    outcome is undefined) gives a row with an ``error`` instead of indices.

    Returns
    -------
    pandas.DataFrame
        One row per (lever setting, outcome, cohort, parameter): ``S1``, ``S1_conf``, ``ST``, ``ST_conf``.
    """
    from SALib.analyze import sobol

    if spec.design != "sobol":
        raise ValueError(f"sweep '{spec.name}' has design = '{spec.design}'; Sobol indices need design = 'sobol'")
    unc = spec.uncertainties
    levers = [a.column for a in spec.levers]
    problem = {"num_vars": len(unc), "names": [a.column for a in unc], "bounds": [list(a.range) for a in unc]}
    n_unc_points = spec.sobol_samples * (2 * len(unc) + 2)
    data = _joined(spec, experiments, outcomes)
    per_point = data.groupby(["outcome", "cohort", "design_point"])["value"].mean()
    n_settings = max(1, int(np.prod([len(a.grid_values()) for a in spec.levers])))
    rows = []
    for (metric, cohort), series in per_point.groupby(level=[0, 1]):
        series = series.droplevel([0, 1])
        for s in range(n_settings):
            idx = np.arange(s * n_unc_points, (s + 1) * n_unc_points)
            first = data[data["design_point"] == idx[0]]
            setting = {c: first[c].iloc[0] for c in levers} if len(first) else {}
            y = series.reindex(idx).to_numpy(dtype=float)
            base = dict(outcome=metric, cohort=cohort, **setting)
            if not np.isfinite(y).all():
                n_bad = int((~np.isfinite(y)).sum())
                rows.append(dict(base, parameter="", error=f"{n_bad} design points without a value "
                                 "(experiments failed, or the outcome is undefined for this cohort)"))  # fmt: skip
                continue
            res = sobol.analyze(problem, y, calc_second_order=True, seed=seed)
            for j, name in enumerate(problem["names"]):
                rows.append(dict(base, parameter=name, S1=float(res["S1"][j]), S1_conf=float(res["S1_conf"][j]),
                                 ST=float(res["ST"][j]), ST_conf=float(res["ST_conf"][j]), error=""))  # fmt: skip
    columns = ["outcome", "cohort", *levers, "parameter", "S1", "S1_conf", "ST", "ST_conf", "error"]
    return pd.DataFrame(rows, columns=columns)


def sobol_figure(spec: SweepSpec, table: pd.DataFrame) -> bytes:
    """First-order and total indices by parameter, one panel per outcome (first lever setting)."""
    from audits.figures import _figure

    t = table[table["error"] == ""]
    levers = [a.column for a in spec.levers]
    if levers and len(t):
        first = t[levers].iloc[0]
        t = t[np.all([t[c] == first[c] for c in levers], axis=0)]
    keys = list(t.groupby(["outcome", "cohort"], sort=False).groups)
    ncol = 2 if len(keys) > 1 else 1
    nrow = max(1, math.ceil(len(keys) / ncol))
    fig, axes = _figure((5.2 * ncol, 2.8 * nrow), nrow, ncol, squeeze=False)
    for ax, (metric, cohort) in zip(axes.ravel(), keys, strict=False):
        g = t[(t["outcome"] == metric) & (t["cohort"] == cohort)]
        x = np.arange(len(g))
        ax.bar(x - 0.2, g["S1"], 0.4, yerr=g["S1_conf"], label="first order", capsize=2)
        ax.bar(x + 0.2, g["ST"], 0.4, yerr=g["ST_conf"], label="total", capsize=2)
        ax.set_xticks(x, g["parameter"], fontsize=8)
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]))
        ax.set_title(f"{metric} ({cohort})", fontsize=9)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    fig.suptitle(f"{spec.name}: Sobol indices (SALib; 95% bootstrap intervals)", fontsize=10)
    return _png(fig)
