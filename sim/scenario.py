"""Typed, validated scenario settings and the TOML loader.

A scenario is a TOML file (see ``scenarios/``) validated into a frozen
:class:`Scenario`. Every table rejects unknown keys; wrong types and
impossible values are reported with the dotted key path and a fix, through
:class:`ScenarioError` (the CLI turns it into a one-line message and exit
code 2).

Public objects
--------------
Scenario, ClockSettings, PopulationSettings, CatalogueSettings,
BehaviourSettings, CohortBehaviour, RecommenderSettings, DiversitySettings,
NonPersonalisedSettings, MinorsModeSettings, MarketSettings, MarketCohort,
PricerSettings, FleetSettings, WorkerSettings, DispatcherSettings, AuditSettings,
CardSettings, DecisionLogSettings, TagSettings, TagTargetingSettings
    The typed settings tree.
load_scenario
    Read and validate a TOML file.
scenario_from_dict
    Validate an already-parsed mapping (notebooks, sweeps).
ScenarioError
    The one error type for bad input.
COHORTS
    Cohort names in their integer order.
CARD_SIGNALS
    The ranking signals an algorithm card (Art. 16) may declare.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

__all__ = [
    "COHORTS",
    "AuditSettings",
    "BehaviourSettings",
    "BotSettings",
    "CARD_SIGNALS",
    "CardSettings",
    "CatalogueSettings",
    "DECISION_KINDS",
    "DecisionLogSettings",
    "LEGAL_RETENTION_DAYS",
    "ClockSettings",
    "CohortBehaviour",
    "MarketCohort",
    "MarketSettings",
    "PricerSettings",
    "DiversitySettings",
    "DispatcherSettings",
    "FilingSettings",
    "FleetSettings",
    "HotListSettings",
    "WorkerSettings",
    "MinorsModeSettings",
    "NonPersonalisedSettings",
    "PopulationSettings",
    "RecommenderSettings",
    "Scenario",
    "ScenarioError",
    "TagSettings",
    "TagTargetingSettings",
    "load_scenario",
    "scenario_from_dict",
]

COHORTS = ("adult", "minor", "elderly")
# Ranking signals an algorithm card can declare (Art. 16), each computable by an auditor from the platform's
# view (see audits/transparency.py for their definitions); "random" is randomisation and whatever else the
# others do not explain.
CARD_SIGNALS = ("interest_match", "popularity", "engagement", "recency", "random")

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
PosFloat = Annotated[float, Field(gt=0.0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]


class ScenarioError(ValueError):
    """A scenario (or a plugin named in it) is invalid; the message says where and how to fix it."""


# TOML has booleans: a string or a number where a switch belongs is a mistake, not "yes" (pydantic's lax mode
# would read "yes", "on" and 1 as true)
Bool = Annotated[bool, Strict()]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ClockSettings(_Settings):
    """Simulated time: ticks of ``tick_minutes`` minutes, ``days`` days."""

    tick_minutes: Literal[5, 10, 15, 20, 30, 60] = 15
    days: Annotated[int, Field(ge=1, le=3650)] = 7


class PopulationSettings(_Settings):
    """Who the users are.

    ``n_users = 0`` runs no feed (a scenario of the delivery fleet alone, its
    orders from a demand profile). ``shares`` are the cohort proportions (they must sum to 1). Minors' ages
    are drawn uniformly from ``minor_age_min..minor_age_max`` (years); the
    minors' caps differ under 8, 8-15 and 16-17.
    """

    n_users: Annotated[int, Field(ge=0, le=200_000_000)] = 20_000
    shares: dict[Literal["adult", "minor", "elderly"], Prob] = Field(
        default_factory=lambda: {"adult": 0.70, "minor": 0.15, "elderly": 0.15}
    )
    minor_age_min: Annotated[int, Field(ge=3, le=17)] = 6
    minor_age_max: Annotated[int, Field(ge=3, le=17)] = 17
    opt_out_share: Prob = 0.05
    interest_dim: Annotated[int, Field(ge=2, le=256)] = 16
    stance_spread: Annotated[float, Field(ge=0.0, le=5.0)] = 0.3  # users' initial stance (with catalogue stances)

    @model_validator(mode="after")
    def _check(self):
        total = sum(self.shares.get(c, 0.0) for c in COHORTS)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(
                f"shares must sum to 1 (they sum to {total:g}); fix: adjust adult/minor/elderly so they add up to 1"
            )
        if self.minor_age_min > self.minor_age_max:
            raise ValueError("minor_age_min must not exceed minor_age_max")
        return self


class CatalogueSettings(_Settings):
    """The items: a rolling catalogue of ``n_items`` slots; the oldest are replaced daily."""

    n_items: Annotated[int, Field(ge=10, le=50_000_000)] = 5_000
    n_categories: Annotated[int, Field(ge=1, le=1000)] = 20
    new_items_per_day: Annotated[int, Field(ge=0)] = 250
    harmful_share: Prob = 0.05
    hook_mean: Annotated[float, Field(ge=0.0, le=5.0)] = 0.3
    harmful_hook_bonus: Annotated[float, Field(ge=0.0, le=5.0)] = 0.4
    mean_item_minutes: Annotated[float, Field(ge=0.05, le=120.0)] = 0.8
    category_spread: Annotated[float, Field(ge=0.0, le=5.0)] = 0.5
    # Stances (polarisation, a societal measure): a share of items takes a side (+ or -) on one contested
    # issue, the first axis of the embedding space; users' stance is their interest along that axis and
    # drifts with what they watch (the interest drift). 0 = no stances (the axis is then an ordinary one).
    stance_share: Prob = 0.0
    stance_strength: Annotated[float, Field(ge=0.0, le=5.0)] = 1.0

    @model_validator(mode="after")
    def _check(self):
        if self.new_items_per_day > self.n_items:
            raise ValueError(f"new_items_per_day ({self.new_items_per_day}) exceeds n_items ({self.n_items})")
        return self


class CohortBehaviour(_Settings):
    """Behaviour parameters of one cohort (see ``docs`` in each scenario file).

    Attributes
    ----------
    opens_per_day : float
        Expected app openings a day at zero habit, spread over the hours by
        the cohort's activity profile.
    intended_minutes : float
        Median intended daily use (minutes); use beyond it is "regret".
    self_control_mean : float
        Mean of the Beta-distributed self-control parameter in [0, 1].
    night_owl_share : float
        Share of the cohort whose activity profile keeps late-night hours.
    """

    opens_per_day: Annotated[float, Field(ge=0.0, le=200.0)]
    intended_minutes: Annotated[float, Field(gt=0.0, le=1440.0)]
    self_control_mean: Annotated[float, Field(gt=0.0, lt=1.0)]
    night_owl_share: Prob = 0.1


class BehaviourSettings(_Settings):
    """How users choose, watch, continue, form habits and drift."""

    adult: CohortBehaviour = CohortBehaviour(
        opens_per_day=9.5, intended_minutes=130.0, self_control_mean=0.55, night_owl_share=0.15
    )
    minor: CohortBehaviour = CohortBehaviour(
        opens_per_day=7.0, intended_minutes=60.0, self_control_mean=0.35, night_owl_share=0.25
    )
    elderly: CohortBehaviour = CohortBehaviour(
        opens_per_day=7.0, intended_minutes=100.0, self_control_mean=0.6, night_owl_share=0.05
    )
    choice_temperature: PosFloat = 0.5
    match_weight: NonNegFloat = 2.0
    quality_weight: NonNegFloat = 1.0
    hook_weight: NonNegFloat = 1.0
    leave_utility: float = 0.6
    fatigue_weight: NonNegFloat = 0.6
    continue_base: float = 3.25
    continue_habit: NonNegFloat = 0.2
    continue_hook: NonNegFloat = 0.8
    continue_fatigue: NonNegFloat = 0.5
    continue_self_control: NonNegFloat = 2.0
    habit_half_life_days: PosFloat = 3.0
    habit_cue: NonNegFloat = 0.1
    interest_drift: Annotated[float, Field(ge=0.0, le=1.0)] = 0.002
    rest_prompt_compliance: Prob = 0.6


class DiversitySettings(_Settings):
    """MMR re-ranking (Art. 12): ``relevance_weight`` = lambda in MMR."""

    relevance_weight: Prob = 0.7


class NonPersonalisedSettings(_Settings):
    """Art. 17 wrapper: opted-out users get a non-personal ranking."""

    fallback: Literal["popularity", "chronological", "random"] = "popularity"


class MinorsModeSettings(_Settings):
    """Art. 18 minors' mode.

    Defaults from the CAC minors'-mode guideline (final Nov 2024): under 16
    at most 60 min a day, 16-17 at most 120 min, rest reminder after 30 min
    of continuous use, no service 22:00-06:00; the under-8 40-min band is
    from the Aug 2023 draft (see ``shared/reference/regulation-map.md`` §2).
    """

    cap_under_8_minutes: Annotated[float, Field(ge=0.0, le=1440.0)] = 40.0
    cap_under_16_minutes: Annotated[float, Field(ge=0.0, le=1440.0)] = 60.0
    cap_under_18_minutes: Annotated[float, Field(ge=0.0, le=1440.0)] = 120.0
    curfew_start_hour: Annotated[int, Field(ge=0, le=23)] = 22
    curfew_end_hour: Annotated[int, Field(ge=0, le=23)] = 6
    rest_prompt_after_minutes: Annotated[float, Field(gt=0.0)] = 30.0
    filter_harmful: Bool = True
    # Payment limits (yuan) for minors, enforced by the market's payment step while
    # minors' mode is on. NPPA 2019 notice (still cited on spending; regulation-map.md §2):
    # under 16 at most 50 a payment and 200 a month, 16-17 at most 100 and 400.
    payment_cap_under_16: Annotated[float, Field(ge=0.0)] = 50.0
    monthly_cap_under_16: Annotated[float, Field(ge=0.0)] = 200.0
    payment_cap_under_18: Annotated[float, Field(ge=0.0)] = 100.0
    monthly_cap_under_18: Annotated[float, Field(ge=0.0)] = 400.0

    #: fields that configure the market's payment step, not the feed wrapper
    PAYMENT_FIELDS: ClassVar[tuple[str, ...]] = (
        "payment_cap_under_16",
        "monthly_cap_under_16",
        "payment_cap_under_18",
        "monthly_cap_under_18",
    )


class CardSettings(_Settings):
    """The algorithm card the platform publishes (Art. 16): its main ranking signals and their weights.

    ``signals`` maps signals of :data:`CARD_SIGNALS` to declared relative weights (non-negative; the audit
    normalises them to shares). A weight is the share of the variation of the ranking score (within a
    candidate set) the signal accounts for, on standardised signals: see ``audits/transparency.py``. A card
    given here is what the audit holds the platform to, in place of any card the recommender declares
    itself (a scenario can so describe a platform whose disclosure differs from what it does).
    """

    signals: dict[Literal[CARD_SIGNALS], NonNegFloat]
    purpose: str = ""
    description: str = ""

    @model_validator(mode="after")
    def _check(self):
        if not self.signals or sum(self.signals.values()) <= 0:
            raise ValueError(
                "signals must give at least one positive weight; fix: e.g. signals = { interest_match = 0.7, "
                f"engagement = 0.3 }} (signals: {', '.join(CARD_SIGNALS)})"
            )
        return self


class HotListSettings(_Settings):
    """The platform's hot list (热榜; Art. 14 and Qinglang 2024 item 2): the top items by recent engagement.

    Recomputed after every tick from the interactions the platform counted (fake ones that got through
    included): the ``size`` items with the most ``signal`` (views or watch minutes) in the last
    ``window_hours``, kept as a log (``hotlist.parquet``). The hot list reaches users through the feed:
    ``feed_slots`` positions at the top of each slate go to hot-listed items among the user's
    candidates, best-ranked first (0: the list is published but does not place items in the feed).
    The defaults are recaudit choices (a short list on a two-hour window), not any platform's published
    values. See :mod:`sim.hotlist`.
    """

    size: Annotated[int, Field(ge=1, le=1000)] = 20
    window_hours: Annotated[float, Field(gt=0.0, le=168.0)] = 2.0
    signal: Literal["views", "minutes"] = "views"
    feed_slots: Annotated[int, Field(ge=0, le=100)] = 1


class TagTargetingSettings(_Settings):
    """The platform's interest tags and the tag-targeting boost (Art. 10 and 17; :class:`sim.builtin.recommenders.TagTargeting`).

    The platform keeps, per user, decayed watched minutes by item category (half-life ``half_life_days``); the
    user's *tags* are their top ``n_tags`` categories holding at least ``min_share`` of those minutes.
    Candidates in a tagged category get ``boost`` standard deviations (of the row's scores) added to their
    score. ``use_harmful_tags = false`` (the compliant setting, Art. 10) never writes a category on the
    scenario's harmful-tag list (``[tags] harmful_categories``) into a profile; ``honour_deletion = true``
    stops using a tag the user deleted ``deletion_delay_days`` after the request (0, the compliant setting:
    at once, Art. 17 "stop immediately"); ``honour_deletion = false`` hides the tag from the user but keeps it in
    the profile and keeps targeting with it.
    """

    boost: NonNegFloat = 1.0
    n_tags: Annotated[int, Field(ge=1, le=1000)] = 3
    min_share: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    half_life_days: PosFloat = 3.0
    use_harmful_tags: Bool = False
    honour_deletion: Bool = True
    deletion_delay_days: NonNegFloat = 0.0


class TagSettings(_Settings):
    """The world's side of tags (Art. 10 and 17): the harmful-tag list and users who delete a tag.

    ``harmful_categories`` is the harmful-tag list: item categories whose tags must not be written into user
    profiles or drive pushes (Art. 10; Qinglang 2024 item 1). At ``delete_hour`` on ``delete_day`` (days from
    0) each user with at least one tag shown to them deletes their top tag with probability ``delete_share``
    (Art. 17: users may select or delete targeting tags). ``attribute`` runs the auditor's attribution of slate
    items to tags (the audit switches it off in its counterfactual worlds, which it changes in no way). See
    :mod:`sim.tags`.
    """

    harmful_categories: list[Annotated[int, Field(ge=0)]] = Field(default_factory=list)
    delete_share: Prob = 0.0
    delete_day: Annotated[int, Field(ge=0)] = 1
    delete_hour: Annotated[int, Field(ge=0, le=23)] = 12
    attribute: Bool = True


class RecommenderSettings(_Settings):
    """Which recommender drives the feed, and its wrappers.

    ``kind`` is a built-in name (see ``recaudit list``), ``module:Class``, or
    the name of an entry point in the group ``recaudit.recommenders``.
    ``params`` are passed to its constructor as keywords. Wrappers, when their
    table is present, apply in the order diversity, non_personalised,
    minors_mode (outermost). ``card``, when present, is the algorithm card
    the platform publishes (Art. 16; :class:`CardSettings`). ``hot_list``, when
    present, runs a hot list whose items take the first ``feed_slots`` slate
    positions (a wrapper between non_personalised and minors_mode;
    :class:`HotListSettings`).
    ``tags``, when present, keeps interest tags per user and boosts candidates in
    the user's tagged categories (the innermost wrapper, around the base
    recommender; :class:`TagTargetingSettings`, Art. 10 and 17).
    """

    kind: str = "engagement"
    params: dict[str, Any] = Field(default_factory=dict)
    n_candidates: Annotated[int, Field(ge=1, le=10_000)] = 100
    slate_size: Annotated[int, Field(ge=1, le=100)] = 10
    diversity: DiversitySettings | None = None
    non_personalised: NonPersonalisedSettings | None = None
    minors_mode: MinorsModeSettings | None = None
    card: CardSettings | None = None
    hot_list: HotListSettings | None = None
    tags: TagTargetingSettings | None = None  # interest tags and tag targeting (Art. 10, 17)

    @model_validator(mode="after")
    def _check(self):
        if self.slate_size > self.n_candidates:
            raise ValueError(f"slate_size ({self.slate_size}) exceeds n_candidates ({self.n_candidates})")
        if self.hot_list is not None and self.hot_list.feed_slots > self.slate_size:
            raise ValueError(
                f"hot_list.feed_slots ({self.hot_list.feed_slots}) exceeds slate_size ({self.slate_size}); "
                "fix: give the hot list at most slate_size positions"
            )
        return self


class MarketCohort(_Settings):
    """Shopping traits of one cohort.

    Attributes
    ----------
    income_month : float
        Median monthly disposable income (yuan; pocket money for minors).
        Incomes are log-normal around it with ``income_sigma``.
    budget_share : float
        Share of income the user means to spend on the platform in a month.
    search_mean : float
        Mean probability that a brand-new customer compares prices elsewhere
        before buying (Beta-distributed); loyalty lowers it.
    fraud_susceptibility_mean : float
        Mean susceptibility to fraudulent offers in [0, 1] (Beta-distributed).
    price_sensitivity : float
        Median slope of the purchase logit per unit of price relative to the
        list price (log-normal, sd 0.3 in logs).
    """

    income_month: PosFloat
    budget_share: Prob
    search_mean: Annotated[float, Field(gt=0.0, lt=1.0)]
    fraud_susceptibility_mean: Annotated[float, Field(gt=0.0, lt=1.0)]
    price_sensitivity: PosFloat = 6.0


class MarketSettings(_Settings):
    """The consumer market: products, offers in the feed and the store, purchases.

    Shopping occasions come from store visits (``store_visits_per_day``,
    spread over the day by the cohort's activity profile) and from sponsored
    slots in the feed (``offers_per_feed_minute``): the more a user scrolls, the
    more offers they see. Each occasion shows one product, chosen by the
    platform's ``targeting`` among ``n_offer_candidates`` drawn at random, at
    the price the pricer quotes. See ``sim/market/`` for the purchase model.

    ``quote_log`` keeps every quote with its inputs and outcome in the run's record and writes
    ``quotes.parquet`` (90 B a quote in memory, ~2 quotes a user-day); without it the run keeps per-user
    sums of the quotes only (:class:`sim.market.summary.QuoteSummary`), which is all the audit needs.
    """

    quote_log: Bool = False
    n_products: Annotated[int, Field(ge=2, le=10_000_000)] = 500
    cost_median: PosFloat = 30.0
    cost_sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.7
    list_markup: Annotated[float, Field(ge=0.0, le=10.0)] = 0.3
    fraud_share: Prob = 0.03
    in_app_share: Prob = 0.1
    commission: Prob = 0.1
    fraud_commission: Prob = 0.15
    store_visits_per_day: Annotated[float, Field(ge=0.0, le=100.0)] = 0.3
    offers_per_feed_minute: Annotated[float, Field(ge=0.0, le=10.0)] = 0.01
    n_offer_candidates: Annotated[int, Field(ge=1, le=1000)] = 20
    targeting: Literal["revenue", "relevance", "random"] = "relevance"
    fraud_filter_recall: Prob = 0.0
    value_ratio: PosFloat = 0.5
    wtp_sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.35
    taste_weight: Annotated[float, Field(ge=0.0, le=5.0)] = 1.0
    wtp_hat_error: Annotated[float, Field(ge=0.0, le=3.0)] = 0.3
    income_sigma: Annotated[float, Field(ge=0.0, le=3.0)] = 0.5
    income_elasticity: Annotated[float, Field(ge=0.0, le=2.0)] = 0.3
    over_budget_weight: NonNegFloat = 2.0
    fraud_appeal: NonNegFloat = 3.0
    minor_in_app_appeal: NonNegFloat = 1.0
    loyalty_scale: PosFloat = 4.0
    loyalty_half_life_days: PosFloat = 30.0
    prior_purchases_mean: NonNegFloat = 6.0
    new_customer_share: Prob = 0.2
    ios_share: Prob = 0.3
    promo_opt_in_share: Prob = 0.4
    outside_markup: Annotated[float, Field(ge=0.0, le=10.0)] = 0.0
    adult: MarketCohort = MarketCohort(
        income_month=6000.0, budget_share=0.12, search_mean=0.5, fraud_susceptibility_mean=0.03
    )
    minor: MarketCohort = MarketCohort(
        income_month=400.0, budget_share=0.5, search_mean=0.3, fraud_susceptibility_mean=0.1
    )
    elderly: MarketCohort = MarketCohort(
        income_month=3500.0, budget_share=0.1, search_mean=0.3, fraud_susceptibility_mean=0.4
    )


class PricerSettings(_Settings):
    """Which pricer quotes prices.

    ``kind`` is a built-in name (see ``recaudit list``), ``module:Class`` or an
    entry point in ``recaudit.pricers``; ``params`` go to its constructor.
    """

    kind: str = "uniform"
    params: dict[str, Any] = Field(default_factory=dict)


class WorkerSettings(_Settings):
    """The couriers' traits and choices (the population of the fleet).

    Attributes
    ----------
    speed_kmh_mean, speed_kmh_sd : float
        E-bike riding speed (km/h), normal across workers, clipped to 8-30.
    target_earnings_mean : float
        Median daily net earnings (yuan) a worker aims for (income targeting:
        a worker who has not reached it keeps working, skips breaks and rest
        days). Log-normal with ``target_earnings_sigma``. Default 330 yuan/day:
        Meituan's high-frequency riders earned 5,720-10,865 yuan a month in
        Q3 2024 over at least 22 days (regulation-map.md §9, #5).
    max_online_hours_mean : float
        Mean of the longest day a worker will work (hours), normal with sd 1.5,
        clipped to 4-16.
    start_hour_min, start_hour_max : float
        Workers log on at a time drawn uniformly in this range (hours of day)...
    late_shift_share, late_start_hour_min, late_start_hour_max : float
        ...except this share, who start in the afternoon for the dinner peak.
    reservation_pay_per_hour : float
        Median pay rate (yuan per hour of the offered order) at which a
        worker accepts an offer with probability ``accept_at_reservation``.
    accept_slope : float
        Slope of the acceptance logit in the offered pay rate relative to the
        reservation rate.
    rest_streak_days_mean : float
        Mean number of consecutive working days after which a worker who met
        their earnings target rests (5-7 typical).
    rest_target_share : float
        Share of the daily target a worker must have averaged over the streak
        to afford a rest day.
    break_after_hours_mean : float
        Mean continuous hours after which a worker on schedule takes a voluntary break.
    break_minutes : float
        Length of a voluntary break (0: none; at least 20 minutes, the pause that ends a stretch).
    cost_per_km : float
        Vehicle cost per km ridden (yuan: electricity, wear, battery rental share).
    daily_cost : float
        Fixed cost of a day worked (yuan: phone data, insurance, battery swap plan).
    surge_response_premium : float
        Median premium of the platform's current pay per hour over its recent average (a one-day
        exponential average) at which an offline courier logs on before their start hour (from 06:00);
        log-normal across couriers (sd 0.5 in logs). Drivers' supply responds to surge pay (Chen &
        Sheldon, "Dynamic pricing in a labor market", 2016); the size here is a modelling choice.
    fatigue_half_life_hours : float
        Fatigue builds toward 1 with continuous work at this half-life and
        halves over the same time at rest; it slows riding by up to
        ``fatigue_slowdown``.
    """

    speed_kmh_mean: Annotated[float, Field(ge=5.0, le=40.0)] = 18.0
    speed_kmh_sd: Annotated[float, Field(ge=0.0, le=10.0)] = 2.0
    target_earnings_mean: PosFloat = 330.0
    target_earnings_sigma: Annotated[float, Field(ge=0.0, le=2.0)] = 0.25
    max_online_hours_mean: Annotated[float, Field(ge=1.0, le=20.0)] = 11.0
    # couriers stop taking orders at 23:00, so a shift must start before
    start_hour_min: Annotated[float, Field(ge=0.0, lt=23.0)] = 8.0
    start_hour_max: Annotated[float, Field(ge=0.0, lt=23.0)] = 11.0
    late_shift_share: Prob = 0.4
    late_start_hour_min: Annotated[float, Field(ge=0.0, lt=23.0)] = 14.0
    late_start_hour_max: Annotated[float, Field(ge=0.0, lt=23.0)] = 16.5
    reservation_pay_per_hour: PosFloat = 22.0
    accept_slope: NonNegFloat = 4.0
    accept_at_reservation: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.7
    rest_streak_days_mean: Annotated[float, Field(ge=1.0, le=14.0)] = 6.0
    rest_target_share: Annotated[float, Field(ge=0.0, le=2.0)] = 0.9
    break_after_hours_mean: Annotated[float, Field(gt=0.0, le=24.0)] = 3.5
    break_minutes: Annotated[float, Field(ge=0.0, le=240.0)] = 30.0
    cost_per_km: NonNegFloat = 0.12
    daily_cost: NonNegFloat = 8.0
    surge_response_premium: PosFloat = 0.3
    fatigue_half_life_hours: PosFloat = 3.0
    fatigue_slowdown: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.15

    @model_validator(mode="after")
    def _check(self):
        if self.start_hour_min > self.start_hour_max or self.late_start_hour_min > self.late_start_hour_max:
            raise ValueError(
                "start_hour_min (late_start_hour_min) must not exceed start_hour_max (late_start_hour_max)"
            )
        return self


class FleetSettings(_Settings):
    """The delivery fleet: a city, merchants, orders and couriers (Art. 20).

    The city is a square of ``city_km`` km with ``n_merchants`` merchants
    clustered around ``n_centres`` centres; customers live within
    ``delivery_radius_km`` of the merchant they order from; distances are
    Manhattan (street grid). Orders come from a meal-time demand profile
    (``orders = "profile"``: ``orders_per_day``, with ``demand_profile = "meals"``
    peaks at lunch and dinner, with ``"flat"`` a constant rate) or
    from the market's purchases (``orders = "market"``: a share
    ``delivery_share`` of platform purchases is delivered). The fleet moves in
    steps of ``step_minutes`` inside each tick. Weather events slow every
    courier (``weather_speed_factor``) and raise demand, for
    ``weather_hours_mean`` hours, ``weather_events_per_week`` times a week:
    delays no courier can control.

    ``geography = false`` replaces travel by an exponential service time of
    mean ``service_minutes_mean`` per order and ``shifts = "always_on"`` keeps
    every courier online and accepting: together they make the fleet an M/M/c
    queue (the queueing-theory tests).

    ``min_hourly_wage`` is the local minimum hourly wage the Art. 20 audit
    compares net hourly pay with; ``min_wage_source`` cites it. Default: the
    Beijing part-time hourly minimum, 27.7 yuan (regulation-map.md §3).
    """

    n_workers: Annotated[int, Field(ge=1, le=20_000_000)] = 300
    n_merchants: Annotated[int, Field(ge=1, le=10_000_000)] = 300
    n_centres: Annotated[int, Field(ge=1, le=1000)] = 4
    city_km: Annotated[float, Field(gt=0.0, le=500.0)] = 10.0
    step_minutes: Annotated[float, Field(gt=0.0, le=15.0)] = 1.0
    orders: Literal["profile", "market"] = "profile"
    demand_profile: Literal["meals", "flat"] = "meals"
    orders_per_day: NonNegFloat = 5000.0
    delivery_share: Prob = 0.5
    delivery_radius_km: Annotated[float, Field(gt=0.0, le=100.0)] = 2.5
    prep_minutes_mean: NonNegFloat = 10.0
    handling_minutes: NonNegFloat = 2.0
    patience_minutes: PosFloat = 45.0
    max_batch: Annotated[int, Field(ge=1, le=8)] = 3
    geography: Bool = True
    service_minutes_mean: PosFloat = 30.0
    shifts: Literal["behavioural", "always_on"] = "behavioural"
    weather_events_per_week: Annotated[float, Field(ge=0.0, le=50.0)] = 2.0
    weather_hours_mean: Annotated[float, Field(gt=0.0, le=24.0)] = 3.0
    weather_speed_factor: Annotated[float, Field(gt=0.0, le=1.0)] = 0.6
    weather_demand_factor: Annotated[float, Field(ge=0.0, le=5.0)] = 1.3
    min_hourly_wage: PosFloat = 27.7
    min_wage_source: str = (
        "Beijing part-time hourly minimum wage (cited in the Zhejiang Univ. rider survey, 2025; regulation-map.md §3)"
    )
    workers: WorkerSettings = WorkerSettings()

    @model_validator(mode="after")
    def _check(self):
        if self.orders == "profile" and self.orders_per_day <= 0:
            raise ValueError("orders_per_day must be positive when orders = 'profile'")
        if self.patience_minutes < 2 * self.step_minutes:
            raise ValueError(
                f"patience_minutes ({self.patience_minutes:g}) is shorter than two fleet steps "
                f"({self.step_minutes:g} min each): orders would be cancelled before their first offer; "
                "fix: raise patience_minutes or lower step_minutes"
            )
        if self.delivery_radius_km > self.city_km:
            raise ValueError(
                f"delivery_radius_km ({self.delivery_radius_km:g}) exceeds city_km ({self.city_km:g}); "
                "fix: a radius within the city"
            )
        return self


class DispatcherSettings(_Settings):
    """Which dispatcher assigns orders, sets deadlines and pay (scenarios with a ``[fleet]``).

    ``kind`` is a built-in name (see ``recaudit list``), ``module:Class`` or an
    entry point in ``recaudit.dispatchers``; ``params`` go to its constructor.
    """

    kind: str = "nearest"
    params: dict[str, Any] = Field(default_factory=dict)


class BotSettings(_Settings):
    """Bot accounts that fake engagement for a campaign's targets (Art. 14: fake accounts, fake likes and views).

    From ``start_day`` at ``start_hour`` (for ``duration_hours``, default to the end of the run) each of
    ``n_bots`` accounts makes ``views_per_bot_hour`` fake views an hour (on average; a tick's count is
    rounded up or down at random so the mean is exact), each of one of the campaign's targets, chosen
    uniformly, watching ``watch_share`` of the item's length, with an impression. Targets are
    ``n_targets`` items, or all items of ``n_targets`` creators (``target``), chosen at the start by
    ``choose``: ``random`` (uniformly), ``newest`` (the most recently uploaded items, or their creators) or
    ``harmful`` (items labelled harmful to minors, or their creators). The platform catches each fake view
    independently with probability ``detection_rate`` (its filter's recall) and drops it; the rest enter the
    platform's counts, its recommender's training log and the hot list. ``n_bots = 0`` keeps the targets
    and the measurements without any fake view (the audit's bot-free counterfactual). The defaults (a small
    campaign of 50 accounts at 4 views an hour on one item) are recaudit choices. See :mod:`sim.bots`.
    """

    n_bots: Annotated[int, Field(ge=0, le=1_000_000)] = 50
    target: Literal["items", "creators"] = "items"
    n_targets: Annotated[int, Field(ge=1, le=1000)] = 1
    choose: Literal["random", "newest", "harmful"] = "newest"
    start_day: Annotated[int, Field(ge=0)] = 1
    start_hour: Annotated[int, Field(ge=0, le=23)] = 8
    duration_hours: PosFloat | None = None
    # at most one fake view a second per account (keeps a tick's events per account under 4,096; sim/bots.py)
    views_per_bot_hour: Annotated[float, Field(gt=0.0, le=3600.0)] = 4.0
    watch_share: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    detection_rate: Prob = 0.0


ALGORITHM_TYPES = ("generation_synthesis", "personalised_push", "ranking_selection", "search_filtering",
                   "dispatch_decision")  # fmt: skip


class FilingSettings(_Settings):
    """What the Art. 24 filing says about the service (for the draft self-assessment).

    ``algorithm_type`` is one of the five types of Art. 2 of the Provisions:
    generation and synthesis, personalised push, ranking and selection, search
    and filtering, dispatch and decision-making.
    """

    provider: str = "(provider name)"
    service_name: str = "(service name)"
    service_form: str = "app"
    application_field: str = "short video"
    algorithm_type: Literal[ALGORITHM_TYPES] = "personalised_push"


DECISION_KINDS = ("slate", "quote", "dispatch")
# Legal minimum retention of each kind of decision log, in days (regulation-map.md row 28): recommendation
# logs are network logs (Provisions Art. 28 "retain network logs according to law" -> Cybersecurity Law Art. 21:
# at least six months, 180 days); price quotes and delivery orders are transaction records (E-Commerce Law
# Art. 31: at least three years from the transaction's completion, 1,095 days).
LEGAL_RETENTION_DAYS = {"slate": 180, "quote": 1095, "dispatch": 1095}


class DecisionLogSettings(_Settings):
    """The platform's decision log (Art. 28): what it records and how long it keeps it.

    With ``enabled``, every slate, price quote and dispatch of the kinds in ``kinds`` is written as
    partitioned Parquet under ``path/replication=<r>/`` (see :mod:`sim.decision_log`); ``path`` is
    relative to the working directory (the CLI's ``--decision-log`` puts it in the output directory).
    ``candidates`` and ``scores`` log the ranking's inputs (scores need the unfused path: the same results,
    slower). ``retention_days`` is the horizon the platform declares per kind (defaults: the legal minima,
    :data:`LEGAL_RETENTION_DAYS`). ``batch_rows`` bounds the rows held in memory before a part file is
    written. ``replay_days`` is how many days the audit re-simulates to check the log reproduces.
    ``enabled`` left unset means the scenario does not model the platform's logging: Art. 28 is then not
    assessed; ``enabled = false`` declares a platform that keeps no log (Art. 28 fails).
    """

    enabled: Bool | None = None
    path: str = "decisions"
    kinds: list[Literal[DECISION_KINDS]] = Field(default_factory=lambda: list(DECISION_KINDS))
    candidates: Bool = True
    scores: Bool = True
    retention_days: dict[Literal[DECISION_KINDS], Annotated[int, Field(ge=1, le=36_500)]] = Field(
        default_factory=lambda: dict(LEGAL_RETENTION_DAYS)
    )
    batch_rows: Annotated[int, Field(ge=1_000, le=10_000_000)] = 50_000
    replay_days: Annotated[int, Field(ge=1, le=3650)] = 1

    @model_validator(mode="before")
    @classmethod
    def _fill_retention(cls, data):
        if isinstance(data, dict) and isinstance(data.get("retention_days"), dict):
            data = {**data, "retention_days": {**LEGAL_RETENTION_DAYS, **data["retention_days"]}}
        return data

    @model_validator(mode="after")
    def _check(self):
        if not self.kinds:
            raise ValueError("kinds is empty; fix: list some of 'slate', 'quote', 'dispatch', or set enabled = false")
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"kinds lists a kind twice ({self.kinds}); fix: list each kind once")
        if self.scores and not self.candidates:
            raise ValueError("scores = true needs candidates = true (scores are per candidate); fix: log both")
        if not self.path.strip():
            raise ValueError("path is empty; fix: a directory, e.g. path = 'out/decisions'")
        return self


class AuditSettings(_Settings):
    """How ``recaudit audit`` compares: counterfactual recommender and pricer, replications.

    The counterfactual world runs ``counterfactual`` as the base recommender,
    ``counterfactual_pricer`` as the pricer and ``counterfactual_dispatcher``
    as the dispatcher (default: rest-respecting with take-the-middle
    deadlines), with the same seed.
    """

    counterfactual: str = "chronological"
    counterfactual_pricer: str = "uniform"
    counterfactual_dispatcher: str = "rest_respecting"
    replications: Annotated[int, Field(ge=1, le=1000)] = 1
    bootstrap_samples: Annotated[int, Field(ge=50, le=100_000)] = 400
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95


class Scenario(_Settings):
    """A complete, validated scenario."""

    name: str = "unnamed"
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 20220301
    clock: ClockSettings = ClockSettings()
    population: PopulationSettings = PopulationSettings()
    catalogue: CatalogueSettings = CatalogueSettings()
    behaviour: BehaviourSettings = BehaviourSettings()
    recommender: RecommenderSettings = RecommenderSettings()
    market: MarketSettings | None = None
    pricer: PricerSettings = PricerSettings()
    fleet: FleetSettings | None = None
    dispatcher: DispatcherSettings = DispatcherSettings()
    bots: BotSettings | None = None
    tags: TagSettings | None = None
    audit: AuditSettings = AuditSettings()
    filing: FilingSettings = FilingSettings()
    decision_log: DecisionLogSettings = DecisionLogSettings()

    @model_validator(mode="after")
    def _check(self):
        if self.population.n_users == 0:
            if self.fleet is None:
                raise ValueError(
                    "population.n_users = 0 leaves nothing to simulate; fix: give users, or add a [fleet] table"
                )
            if self.market is not None or self.fleet.orders == "market":
                raise ValueError(
                    "population.n_users = 0 has no shoppers; fix: give users, or set fleet.orders = 'profile' "
                    "and remove the [market] table"
                )
        if self.fleet is None and (self.dispatcher.kind != "nearest" or self.dispatcher.params):
            raise ValueError(
                "a [dispatcher] is set but the scenario has no delivery fleet; fix: add a [fleet] table or remove "
                "[dispatcher]"
            )
        if self.fleet is not None:
            if self.fleet.orders == "market" and self.market is None:
                raise ValueError("fleet.orders = 'market' needs a [market] table; fix: add one, or use 'profile'")
            steps = self.clock.tick_minutes / self.fleet.step_minutes
            if abs(steps - round(steps)) > 1e-9:
                raise ValueError(
                    f"fleet.step_minutes ({self.fleet.step_minutes:g}) must divide clock.tick_minutes "
                    f"({self.clock.tick_minutes}); fix: e.g. 0.25, 0.5, 1 or 5"
                )
        if self.recommender.n_candidates > self.catalogue.n_items:
            raise ValueError(
                f"recommender.n_candidates ({self.recommender.n_candidates}) exceeds "
                f"catalogue.n_items ({self.catalogue.n_items})"
            )
        self._check_manipulation()
        self._check_tags()
        return self

    def _check_tags(self) -> None:
        """Check the [tags] and [recommender.tags] tables against the rest of the scenario (Art. 10, 17)."""
        tg, tt, n_cat = self.tags, self.recommender.tags, self.catalogue.n_categories
        if tt is not None and tt.n_tags > n_cat:
            raise ValueError(f"recommender.tags.n_tags ({tt.n_tags}) exceeds catalogue.n_categories ({n_cat}); "
                             f"fix: n_tags at most {n_cat}")  # fmt: skip
        if tg is None:
            return
        if tt is None:
            raise ValueError("tags: a [tags] table (harmful-tag list, tag deletions) needs a platform that keeps "
                             "tags; fix: add a [recommender.tags] table, or remove [tags]")  # fmt: skip
        bad = [c for c in tg.harmful_categories if c >= n_cat]
        if bad:
            raise ValueError(f"tags.harmful_categories: {bad} not below catalogue.n_categories ({n_cat}); fix: "
                             f"categories 0..{n_cat - 1}")  # fmt: skip
        if len(set(tg.harmful_categories)) != len(tg.harmful_categories):
            raise ValueError(f"tags.harmful_categories lists a category twice ({tg.harmful_categories}); fix: list "
                             "each once")  # fmt: skip
        if tg.delete_share > 0 and tg.delete_day == 0 and tg.delete_hour == 0:
            raise ValueError("tags: a deletion at the start of the run (delete_day = 0, delete_hour = 0) finds no tags "
                             "to delete; fix: delete_hour at least 1, or delete_day at least 1")  # fmt: skip
        if tg.delete_share > 0 and tg.delete_day >= self.clock.days:
            raise ValueError(f"tags.delete_day ({tg.delete_day}) is not before the end of the run (clock.days = "
                             f"{self.clock.days}, days count from 0); fix: delete_day at most {self.clock.days - 1}")  # fmt: skip

    def _check_manipulation(self) -> None:
        """Check the [bots] and [recommender.hot_list] tables against the rest of the scenario (Art. 14)."""
        hl, b = self.recommender.hot_list, self.bots
        if hl is not None:
            if hl.size > self.catalogue.n_items:
                raise ValueError(
                    f"recommender.hot_list.size ({hl.size}) exceeds catalogue.n_items ({self.catalogue.n_items}); "
                    "fix: a shorter hot list"
                )
            if hl.window_hours * 60.0 < self.clock.tick_minutes:
                raise ValueError(
                    f"recommender.hot_list.window_hours ({hl.window_hours:g}) is shorter than one tick "
                    f"({self.clock.tick_minutes} min); fix: a window of at least {self.clock.tick_minutes / 60:g} h"
                )
        if b is None:
            return
        if self.population.n_users == 0:
            raise ValueError("bots: a [bots] table needs a feed; fix: give population.n_users, or remove [bots]")
        if b.start_day >= self.clock.days:
            raise ValueError(
                f"bots.start_day ({b.start_day}) is not before the end of the run (clock.days = {self.clock.days}, "
                f"days count from 0); fix: start_day at most {self.clock.days - 1}"
            )
        n_units = self.catalogue.n_items if b.target == "items" else max(1, self.catalogue.n_items // 20)
        if b.n_targets > n_units:
            raise ValueError(
                f"bots.n_targets ({b.n_targets}) exceeds the number of {b.target} ({n_units}, one creator per 20 "
                "item slots); fix: fewer targets"
            )
        if b.choose == "harmful" and self.catalogue.harmful_share <= 0:
            raise ValueError(
                "bots.choose = 'harmful' but catalogue.harmful_share = 0 (no harmful items); fix: choose "
                "'random' or 'newest', or raise catalogue.harmful_share"
            )

    def with_overrides(
        self,
        *,
        n_users: int | None = None,
        days: int | None = None,
        seed: int | None = None,
        recommender_kind: str | None = None,
        pricer_kind: str | None = None,
        dispatcher_kind: str | None = None,
        quote_log: bool | None = None,
    ) -> Scenario:
        """Return a copy with the CLI's overrides applied (cohort shares are kept).

        Raises
        ------
        ValueError
            If ``quote_log`` is true for a scenario without a market.
        """
        data = self.model_dump()
        if quote_log is not None and self.market is not None:
            data["market"]["quote_log"] = bool(quote_log)
        elif quote_log:
            raise ValueError("the scenario has no market (no [market] table), so there are no quotes to log")
        if n_users is not None:
            data["population"]["n_users"] = n_users
        if days is not None:
            data["clock"]["days"] = days
        if seed is not None:
            data["seed"] = seed
        if recommender_kind is not None:
            data["recommender"]["kind"] = recommender_kind
            data["recommender"]["params"] = {}
        if pricer_kind is not None:
            data["pricer"]["kind"] = pricer_kind
            data["pricer"]["params"] = {}
        if dispatcher_kind is not None and self.fleet is not None:
            data["dispatcher"]["kind"] = dispatcher_kind
            data["dispatcher"]["params"] = {}
        return scenario_from_dict(data, source="<overrides>")

    def with_values(self, values: dict[str, Any], source: str = "<overrides>", add_tables: bool = False) -> Scenario:
        """Return a copy with the settings at dotted paths replaced, validated as a scenario file is.

        ``sc.with_values({"decision_log.enabled": False, "bots.n_bots": 0})``. A table on the path that
        the scenario lacks (``None``, e.g. ``[market]``) is an error, or is added with its defaults
        with ``add_tables``.

        Raises
        ------
        ScenarioError
            If a path is not a setting or a value is invalid (the message names it, as for a scenario file).
        """
        data = self.model_dump()
        for path, value in values.items():
            set_path(data, path, value, source, add_tables=add_tables)
        return scenario_from_dict(data, source=source)

    @property
    def ticks_per_day(self) -> int:
        """Ticks in one simulated day."""
        return 1440 // self.clock.tick_minutes


def set_path(data: dict, path: str, value, where: str, add_tables: bool = False) -> None:
    """Set the setting at dotted ``path`` (e.g. ``"recommender.params.alpha"``) in a scenario's dict.

    ``where`` starts the error messages (a file, a sweep axis). A table on the path the scenario lacks
    (``None``) is an error, or is added empty (its defaults) with ``add_tables``. Keys under ``params``
    (a plugin's) may be new; any other key must exist.

    Raises
    ------
    ScenarioError
        If the path is not a scenario setting.
    """
    keys = path.split(".")
    node = data
    for i, k in enumerate(keys[:-1]):
        if not isinstance(node, dict) or k not in node:
            raise ScenarioError(f"{where}: '{path}' is not a scenario setting ('{'.'.join(keys[: i + 1])}' is unknown)")
        if node[k] is None:
            if not add_tables:
                raise ScenarioError(
                    f"{where}: '{path}': the base scenario has no [{'.'.join(keys[: i + 1])}] table; "
                    "fix: add the table to the base scenario"
                )
            node[k] = {}
        node = node[k]
    if not isinstance(node, dict) or (keys[-1] not in node and keys[-2:-1] != ["params"] and node):
        raise ScenarioError(f"{where}: '{path}' is not a scenario setting")
    node[keys[-1]] = value


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Return the field names valid at ``loc`` (for "did you mean")."""
    cls: Any = model
    for part in loc:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return []
        field = cls.model_fields.get(str(part))
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        cls = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return []


def _format_error(err: dict, source: str) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = err["type"]
    got = err.get("input")
    if kind == "extra_forbidden":
        valid = _fields_at(Scenario, loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"valid keys here: {', '.join(valid)}"
        return f"{source}: unknown key '{path}'; {hint}"
    if kind == "literal_error" and loc and loc[-1] == "[key]":  # a dict key outside its allowed names
        choices = err.get("ctx", {}).get("expected", "")
        allowed = [c.strip().strip("'") for c in choices.replace(" or ", ", ").split(",") if c.strip()]
        guess = difflib.get_close_matches(str(got), allowed, n=1)
        hint = f"did you mean '{guess[0]}'?" if guess else f"valid keys here: {', '.join(allowed)}"
        return f"{source}: unknown key '{'.'.join(str(p) for p in loc[:-1])}'; {hint}"
    if kind == "literal_error":
        return f"{source}: {path}: {err['msg'].replace('Input should be', 'must be')} (got {got!r})"
    if kind == "value_error":
        msg = err["msg"].removeprefix("Value error, ")
        return f"{source}: {path}: {msg}"
    msg = err["msg"].replace("Input should be", "must be")
    return f"{source}: {path}: {msg} (got {got!r}); fix the value in the file"


def scenario_from_dict(data: dict, source: str = "<dict>") -> Scenario:
    """Validate a parsed mapping into a :class:`Scenario`.

    Raises
    ------
    ScenarioError
        With one line per problem: the source, the key path, and the fix.
    """
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        lines = [_format_error(e, source) for e in exc.errors()]
        raise ScenarioError("\n".join(lines)) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario TOML file and validate it.

    Raises
    ------
    ScenarioError
        If the file is missing, is not valid TOML, or fails validation.
    """
    path = Path(path)
    return scenario_from_dict(read_toml(path, "scenario", "scenarios/"), source=str(path))


def read_toml(path: Path, kind: str = "scenario", where: str = "scenarios/") -> dict:
    """Parse a TOML file; a missing, non-UTF-8 or malformed file raises :class:`ScenarioError`."""
    if not path.is_file():
        raise ScenarioError(f"{path}: no such {kind} file; fix: check the path (see {where})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a UTF-8 text file") from None
