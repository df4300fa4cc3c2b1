import sys

import numpy as np
import pytest

import sim.registry as registry
from sim import scenario_from_dict, simulate
from sim.builtin.recommenders import MinorsMode, NonPersonalised
from sim.platform import PluginError
from sim.registry import make_recommender


class MyRec:
    """A user's own recommender: prefers short items (reads only platform data)."""

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def fit(self, view, log):
        return self

    def score(self, user_idx, cand_idx, view):
        return (-self.weight * view.item_length_minutes[cand_idx]).astype(np.float32)


class _EP:
    def __init__(self, name, obj):
        self.name, self._obj = name, obj

    def load(self):
        return self._obj


def test_module_class_path_in_scenario(monkeypatch):
    monkeypatch.setitem(sys.modules, "my_plugins", sys.modules[__name__])
    sc = scenario_from_dict(
        {"population": {"n_users": 200}, "clock": {"days": 1},
         "recommender": {"kind": "my_plugins:MyRec", "params": {"weight": 2.0}}}
    )  # fmt: skip
    rec = make_recommender(sc.recommender)
    assert isinstance(rec, MyRec) and rec.weight == 2.0
    record = simulate(sc)
    assert record.day_column("views").sum() > 0


def test_entry_point_by_name(monkeypatch):
    monkeypatch.setattr(registry, "_entry_points", lambda: {"shortfirst": _EP("shortfirst", MyRec)})
    assert "shortfirst" in registry.available_recommenders()
    assert isinstance(make_recommender("shortfirst"), MyRec)


def test_class_and_instance_in_python():
    assert isinstance(make_recommender(MyRec), MyRec)
    inst = MyRec()
    assert make_recommender(inst) is inst


def test_wrappers_are_applied_in_order():
    sc = scenario_from_dict({"recommender": {"kind": "content", "non_personalised": {}, "minors_mode": {}}})
    rec = make_recommender(sc.recommender)
    assert isinstance(rec, MinorsMode) and isinstance(rec.inner, NonPersonalised)


def test_unknown_name_lists_choices():
    with pytest.raises(PluginError, match="engagement"):
        make_recommender("nope")
