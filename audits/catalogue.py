"""The article catalogue: which metric evidences which article, against which line.

The catalogue is data (``audits/thresholds.toml``); this module only loads it.

Public objects
--------------
Catalogue, MetricSpec, load_catalogue
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Catalogue", "MetricSpec", "load_catalogue", "RULES"]

RULES = ("max", "min", "zero", "equivalence", "info")
_DEFAULT = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class MetricSpec:
    """One catalogue line: a metric of an article, its cohorts, rule, threshold and source."""

    article: int
    metric: str
    cohorts: tuple[str, ...]
    rule: str
    threshold: float | None
    unit: str
    source: str
    description: str
    center: float = 0.0


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue: article titles, metric lines, caps and definitions."""

    titles: dict[int, str]
    metrics: tuple[MetricSpec, ...]
    caps: dict
    definitions: dict
    spending_caps: dict

    def cap_minutes(self, age):
        """Daily cap (minutes) for each age (years); ``inf`` for adults."""
        import numpy as np

        age = np.asarray(age)
        cap = np.full(age.shape, np.inf)
        cap[age < 18] = self.caps["under_18_minutes"]
        cap[age < 16] = self.caps["under_16_minutes"]
        cap[age < 8] = self.caps["under_8_minutes"]
        return cap

    def payment_caps(self, age):
        """Per-payment and monthly spending caps (yuan) for each age; ``inf`` for adults."""
        import numpy as np

        sc = self.spending_caps
        age = np.asarray(age)
        pay, month = np.full(age.shape, np.inf), np.full(age.shape, np.inf)
        pay[age < 18], month[age < 18] = sc["under_18_payment"], sc["under_18_month"]
        pay[age < 16], month[age < 16] = sc["under_16_payment"], sc["under_16_month"]
        return pay, month


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load and check the catalogue file (default: the packaged ``thresholds.toml``)."""
    data = tomllib.loads(Path(path or _DEFAULT).read_text(encoding="utf-8"))
    titles = {int(k): v["title"] for k, v in data["articles"].items()}
    specs = []
    for i, m in enumerate(data["metrics"]):
        if m["rule"] not in RULES:
            raise ValueError(f"thresholds.toml metrics[{i}]: rule {m['rule']!r} not in {RULES}")
        if m["rule"] != "info" and "threshold" not in m:
            raise ValueError(f"thresholds.toml metrics[{i}] ({m['metric']}): rule {m['rule']} needs a threshold")
        if int(m["article"]) not in titles:
            raise ValueError(f"thresholds.toml metrics[{i}]: article {m['article']} has no [articles] title")
        specs.append(
            MetricSpec(
                article=int(m["article"]),
                metric=m["metric"],
                cohorts=tuple(m["cohorts"]),
                rule=m["rule"],
                threshold=m.get("threshold"),
                unit=m["unit"],
                source=m["source"],
                description=m["description"],
                center=float(m.get("center", 0.0)),
            )
        )
    return Catalogue(
        titles=titles,
        metrics=tuple(specs),
        caps=data["caps"],
        definitions=data["definitions"],
        spending_caps=data["spending_caps"],
    )
