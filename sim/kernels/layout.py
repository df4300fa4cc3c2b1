"""Column layouts shared by the kernels, their twins and the engine.

``day_stats`` is a float32 array of shape (n_users, N_DAY): one row per user,
so the kernel's writes for one user stay in one cache line. ``session`` is a
float32 array of shape (n_users, N_SESSION) holding the six per-user scalars of a
view (habit, self-control, intended minutes, tick time left, streak, minutes since
the last prompt) and the unprompted-streak flag, one 32-byte row per user. ``beh`` packs the behaviour
parameters into a float64 vector read by the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from sim.scenario import Scenario

# day_stats columns (per user, reset at midnight)
MINUTES = 0  # minutes watched today
NIGHT_MINUTES = 1  # minutes watched 22:00-06:00 (CAC minors' mode curfew window)
REGRET_MINUTES = 2  # minutes beyond the user's intended daily use
VIEWS = 3
HARMFUL_VIEWS = 4
IMPRESSIONS = 5
HARMFUL_IMPRESSIONS = 6
PROMPTS = 7  # rest prompts shown
UNPROMPTED_STREAKS = 8  # times a session passed 30 min with no rest prompt in the last 30 min
BLOCKED = 9  # session starts or continuations refused by the platform (cap, curfew)
SESSIONS = 10
N_DAY = 11
DAY_COLUMNS = (
    "minutes",
    "night_minutes",
    "regret_minutes",
    "views",
    "harmful_views",
    "impressions",
    "harmful_impressions",
    "prompts",
    "unprompted_streaks",
    "blocked",
    "sessions",
)

# session block columns: float32 (n_users, N_SESSION), the per-user scalars a view reads and writes, one row per
# user (``sim.state.Users.session``; the six ``Users`` fields of SESSION_FIELDS are strided views of its columns)
S_HABIT = 0  # true_habit
S_SELF_CONTROL = 1  # true_self_control
S_INTENDED = 2  # true_intended_minutes
S_TIME_LEFT = 3  # time_left
S_STREAK = 4  # streak_minutes
S_SINCE_PROMPT = 5  # since_prompt_minutes
S_ALERTED = 6  # 1.0 once this session's unprompted streak is counted (until the next prompt or the session's end)
N_SESSION = 8  # seven used and one spare: a 32-byte row never straddles a cache line
SESSION_FIELDS = (
    "true_habit",
    "true_self_control",
    "true_intended_minutes",
    "time_left",
    "streak_minutes",
    "since_prompt_minutes",
)

# beh vector entries
TEMPERATURE = 0
MATCH_W = 1
QUALITY_W = 2
HOOK_W = 3
LEAVE_U = 4
FATIGUE_W = 5
CONT_BASE = 6
CONT_HABIT = 7
CONT_HOOK = 8
CONT_FATIGUE = 9
CONT_SELF = 10
HABIT_GAIN = 11
DRIFT = 12
PROMPT_COMPLY = 13
HAT_RATE = 14
WATCH_SLOPE = 15
WATCH_HOOK = 16
STREAK_ALERT = 17
HABIT_CUE = 18
N_BEH = 19

NIGHT_START_HOUR = 22  # CAC minors'-mode guideline (Nov 2024): no service 22:00-06:00
NIGHT_END_HOUR = 6
STREAK_ALERT_MINUTES = 30.0  # same guideline: rest reminder after 30 min of continuous use


def is_night(hour: int) -> bool:
    """Whether ``hour`` (0-23) falls in 22:00-06:00."""
    return hour >= NIGHT_START_HOUR or hour < NIGHT_END_HOUR


def pack_behaviour(sc: Scenario) -> np.ndarray:
    """Pack a scenario's behaviour settings into the kernels' float64 vector."""
    b = sc.behaviour
    beh = np.zeros(N_BEH, dtype=np.float64)
    beh[TEMPERATURE] = b.choice_temperature
    beh[MATCH_W] = b.match_weight
    beh[QUALITY_W] = b.quality_weight
    beh[HOOK_W] = b.hook_weight
    beh[LEAVE_U] = b.leave_utility
    beh[FATIGUE_W] = b.fatigue_weight
    beh[CONT_BASE] = b.continue_base
    beh[CONT_HABIT] = b.continue_habit
    beh[CONT_HOOK] = b.continue_hook
    beh[CONT_FATIGUE] = b.continue_fatigue
    beh[CONT_SELF] = b.continue_self_control
    # Habit is a leaky integral of use with half-life H days; the gain ln2/(60 H)
    # per minute makes its steady state equal to the recent hours of use per day.
    beh[HABIT_GAIN] = math.log(2.0) / (60.0 * b.habit_half_life_days)
    beh[DRIFT] = b.interest_drift
    beh[PROMPT_COMPLY] = b.rest_prompt_compliance
    beh[HAT_RATE] = 0.05  # platform profile learning rate per fully watched item
    beh[WATCH_SLOPE] = 2.0
    beh[WATCH_HOOK] = 1.0
    beh[STREAK_ALERT] = STREAK_ALERT_MINUTES
    beh[HABIT_CUE] = b.habit_cue
    return beh


def habit_decay_per_tick(sc: Scenario) -> float:
    """Multiplicative habit decay per tick for the scenario's half-life."""
    return 0.5 ** (sc.clock.tick_minutes / (1440.0 * sc.behaviour.habit_half_life_days))
