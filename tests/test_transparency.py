"""Art. 16 algorithm cards: truthful cards agree, misdeclared cards fail, the measurement recovers known
weights, bad cards are refused with the key and the fix, and probing changes nothing in the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audits.audit import article_verdicts, run_audit
from audits.report import render_html
from audits.transparency import (
    CARD_SIGNALS,
    MEASURED_SIGNALS,
    normalise_card,
    signal_features,
    simulate_with_probes,
    weights_from_stats,
)
from sim.engine import simulate
from sim.platform import PluginError
from sim.scenario import ScenarioError, load_scenario, scenario_from_dict

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def _small(kind: str = "engagement", card: dict | None = None, n_users: int = 600, days: int = 2):
    data = load_scenario(SCENARIOS / "baseline.toml").with_overrides(n_users=n_users, days=days).model_dump()
    data["recommender"]["kind"] = kind
    data["recommender"]["params"] = {}
    data["catalogue"].update(n_items=1500, new_items_per_day=75)
    if card is not None:
        data["recommender"]["card"] = card
    return scenario_from_dict(data)


def _by(result, metric):
    return {f.cohort: f for f in result.findings if f.metric == metric}


def _distance(probe) -> float:
    measured = weights_from_stats(probe.stats.sum(axis=0), float(probe.dof.sum()))
    return float(0.5 * np.abs(measured - probe.declared).sum())


@pytest.fixture(scope="module")
def truthful_audit():
    return run_audit(_small(), replications=1, workers=1)


@pytest.fixture(scope="module")
def misdeclared_audit():
    # a platform that publishes "mostly your interests" while its ranking leans on engagement and explores
    card = {"signals": {"interest_match": 0.9, "engagement": 0.1}, "purpose": "show what you like"}
    return run_audit(_small(card=card), replications=1, workers=1)


def test_truthful_engagement_card_passes(truthful_audit):
    assert article_verdicts(truthful_audit.findings)[16] == "pass"
    d = _by(truthful_audit, "card_weight_distance")["all"]
    assert d.verdict == "pass" and d.ci_high < 0.05
    measured = _by(truthful_audit, "measured_signal_weight")
    # engagement and the profile match both matter, exploration leaves a random share
    assert measured["engagement"].ci_low > 0.2 and measured["interest_match"].ci_low > 0.2
    assert 0.05 < measured["random"].value < 0.3
    assert "recommender card" in measured["engagement"].note
    assert all(f.verdict == "pass" for f in _by(truthful_audit, "undeclared_signal_weight").values())


@pytest.mark.parametrize("kind, signal", [("content", "interest_match"), ("popularity", "popularity"),
                                          ("chronological", "recency"), ("random", "random")])  # fmt: skip
def test_single_signal_cards_are_measured_as_declared(kind, signal):
    rec, probe = simulate_with_probes(_small(kind, n_users=300, days=1))
    assert probe.card_source == "recommender" and probe.declared[CARD_SIGNALS.index(signal)] == 1.0
    assert probe.n_probes == 2 and probe.user_idx.size > 100
    # the first three are exact functions of their signal; the random feed's share of the four signals is
    # |b| s / s_e with b ~ N(0, s_e^2 / (s^2 dof)): about 4 / sqrt(dof) in all, 0.013 at dof = 80,000
    tol = 1e-6 if kind != "random" else 6.0 / np.sqrt(probe.dof.sum())
    assert _distance(probe) <= tol, (kind, _distance(probe), tol)


def test_misdeclared_card_fails(misdeclared_audit):
    assert article_verdicts(misdeclared_audit.findings)[16] == "fail"
    d = _by(misdeclared_audit, "card_weight_distance")["all"]
    assert d.verdict == "fail" and d.ci_low > 0.2
    assert "declared 0.100 (scenario card)" in _by(misdeclared_audit, "measured_signal_weight")["engagement"].note


def test_card_that_omits_engagement_fails_the_undeclared_line():
    res = run_audit(_small(card={"signals": {"interest_match": 1.0}}, n_users=400, days=1), workers=1)
    undeclared = _by(res, "undeclared_signal_weight")
    assert undeclared["engagement"].verdict == "fail" and undeclared["engagement"].ci_low > 0.05
    assert undeclared["interest_match"].value == 0.0 and "declared on the card" in undeclared["interest_match"].note


class LinearScorer:
    """A synthetic recommender: known coefficients on the auditor's signals plus Gaussian noise."""

    def __init__(self, coef=(2.0, 0.05, 1.5, 0.4), noise_sd=0.3, seed=0):
        self.coef = np.asarray(coef, dtype=np.float64)
        self.noise_sd = noise_sd
        self.rng = np.random.default_rng(seed)

    def fit(self, view, log):
        return self

    def score(self, user_idx, cand_idx, view):
        x = signal_features(view, np.asarray(user_idx), cand_idx)
        noise = self.rng.normal(0.0, self.noise_sd, cand_idx.shape)
        return (x @ self.coef + noise).astype(np.float32)


def test_measurement_recovers_the_weights_of_a_linear_scorer():
    scorer = LinearScorer()
    _, probe = simulate_with_probes(_small(n_users=400, days=2), recommender=scorer)
    assert probe.declared is None  # the scorer declares no card
    stats, dof = probe.stats.sum(axis=0), float(probe.dof.sum())
    k = len(MEASURED_SIGNALS)
    sd = np.sqrt(np.diag(stats[:k, :k]) / dof)  # the signals' within-set sd in the probed sets
    truth = np.append(np.abs(scorer.coef) * sd, scorer.noise_sd)
    truth /= truth.sum()
    measured = weights_from_stats(stats, dof)
    # least squares: Var(b) = noise_sd^2 (S_xx)^-1, so a contribution |b_j| s_j has standard error
    # s_j noise_sd sqrt(inv_jj); in shares divide by the total. Allow 5 standard errors, and 5 / sqrt(dof)
    # for the residual share (its relative error is about 1 / sqrt(2 dof)).
    inv = np.linalg.inv(stats[:k, :k])
    total = np.abs(scorer.coef) @ sd + scorer.noise_sd
    se = np.append(sd * scorer.noise_sd * np.sqrt(np.diag(inv)), scorer.noise_sd / np.sqrt(2 * dof)) / total
    assert np.all(np.abs(measured - truth) <= 5 * se + 1e-9), (measured, truth, se)
    assert truth.min() > 0.02  # every signal has a visible share, so the check is not vacuous


def test_weights_of_constant_or_exact_scores():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, len(MEASURED_SIGNALS)))
    z = np.column_stack([x, x @ np.array([1.0, 0.0, -3.0, 0.0])])
    w = weights_from_stats(z.T @ z, 4999.0)
    np.testing.assert_allclose(w, np.array([1.0, 0.0, 3.0, 0.0, 0.0]) / 4.0, atol=0.02)
    z[:, -1] = 0.0  # a scorer that ties everything has no weights
    assert np.isnan(weights_from_stats(z.T @ z, 4999.0)).all()


def test_probing_leaves_the_run_unchanged():
    sc = _small(n_users=300, days=1)
    probed, probe = simulate_with_probes(sc)
    plain = simulate(sc)
    np.testing.assert_array_equal(probed.user_days, plain.user_days)
    np.testing.assert_array_equal(probed.minhash, plain.minhash)
    assert probe.user_idx.size > 0 and not np.isin(probe.user_idx, np.flatnonzero(plain.opt_out_mask)).any()


@pytest.mark.parametrize(
    "card, message",
    [
        ({"signals": {"engagment": 0.5}}, "unknown key 'recommender.card.signals.engagment'; did you mean 'engagement'?"),
        ({"signals": {"popularity": -1.0}}, "recommender.card.signals.popularity: must be greater than or equal to 0"),
        ({"signals": {"popularity": 0.0}}, "recommender.card: signals must give at least one positive weight; fix:"),
        ({"signals": {"popularity": 1.0}, "purpos": "x"}, "unknown key 'recommender.card.purpos'; did you mean"),
        ({"purpose": "x"}, "recommender.card.signals: Field required"),
    ],
)  # fmt: skip
def test_bad_scenario_card_is_refused(card, message):
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict({"recommender": {"card": card}}, source="s.toml")
    assert str(err.value).startswith("s.toml: ") and message in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "card, message",
    [
        ({"signals": {"quality": 1.0}}, "unknown signal 'quality'"),
        ({"signals": {"recency": float("nan")}}, "must be finite and >= 0"),
        ({"signals": {"recency": "high"}}, "not a number"),
        ({"signals": {"recency": 0.0}}, "every weight is 0"),
        ([("recency", 1.0)], "no 'signals' mapping"),
    ],
)
def test_bad_recommender_card_is_refused(card, message):
    with pytest.raises(PluginError, match=message):
        normalise_card(card, "recommender 'x': algorithm_card()")


class NoCard(LinearScorer):
    pass


class BrokenCard(LinearScorer):
    def algorithm_card(self, view):
        return {"signals": {"interest_match": 1.0, "clicks": 1.0}}


def test_recommender_without_card_is_undefined_and_broken_card_is_an_error():
    sc = _small(n_users=300, days=1)
    res = run_audit(sc, recommender=NoCard(), workers=1)
    d = _by(res, "card_weight_distance")["all"]
    assert d.verdict == "undefined" and "declares no algorithm card" in d.note and "[recommender.card]" in d.note
    assert _by(res, "measured_signal_weight")["engagement"].value is not None  # measured all the same
    with pytest.raises(PluginError, match="algorithm_card\\(\\): unknown signal 'clicks'"):
        run_audit(sc, recommender=BrokenCard(), workers=1)


def test_report_has_the_art16_section(misdeclared_audit):
    page = render_html(misdeclared_audit)
    section = page[page.index("<h2 id='art16'>") :]
    section = section[: section.index("<h2", 5)]
    assert section.count("<img") == 1 and "card_weight_distance" in section and "show what you like" in section
    from audits.self_assessment import render_self_assessment

    md = render_self_assessment(misdeclared_audit)
    assert "Algorithm card (Art. 16, declared by the scenario)" in md
    assert next(line for line in md.splitlines() if line.startswith("| 16 |")).count("**fail**") == 1


def test_fleet_only_scenario_leaves_art16_out():
    data = {"population": {"n_users": 0}, "clock": {"days": 1}, "fleet": {"n_workers": 20, "orders_per_day": 400}}
    res = run_audit(scenario_from_dict(data), workers=1)
    from audits.audit import articles_in_scope

    assert 16 not in articles_in_scope(res.findings)
    assert all(f.verdict == "undefined" for f in res.findings if f.article == 16)
