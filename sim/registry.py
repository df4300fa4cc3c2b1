"""One door for algorithms: built-in names, ``module:Class`` paths, entry points, classes.

Public objects
--------------
resolve_recommender_class
    Name, ``module:Class``, entry-point name or class -> the class.
make_recommender
    Build the full recommender (base plus the scenario's wrappers).
available_recommenders
    Built-in and installed names.
ENTRY_POINT_GROUP
    ``recaudit.recommenders``.
resolve_pricer_class, make_pricer, available_pricers, PRICER_ENTRY_POINT_GROUP
    The same for pricers (group ``recaudit.pricers``).
resolve_dispatcher_class, make_dispatcher, available_dispatchers, DISPATCHER_ENTRY_POINT_GROUP
    The same for dispatchers (group ``recaudit.dispatchers``).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from importlib.metadata import entry_points

from sim.builtin.dispatchers import BASE_DISPATCHERS
from sim.builtin.pricers import BASE_PRICERS
from sim.builtin.recommenders import (
    BASE_RECOMMENDERS,
    DiversityReranker,
    HotListFeed,
    MinorsMode,
    NonPersonalised,
    TagTargeting,
)
from sim.platform import PluginError
from sim.scenario import DispatcherSettings, PricerSettings, RecommenderSettings

__all__ = [
    "DISPATCHER_ENTRY_POINT_GROUP",
    "available_dispatchers",
    "make_dispatcher",
    "resolve_dispatcher_class",
    "ENTRY_POINT_GROUP",
    "PRICER_ENTRY_POINT_GROUP",
    "available_pricers",
    "make_pricer",
    "resolve_pricer_class",
    "available_recommenders",
    "make_recommender",
    "resolve_recommender_class",
]

ENTRY_POINT_GROUP = "recaudit.recommenders"
PRICER_ENTRY_POINT_GROUP = "recaudit.pricers"
DISPATCHER_ENTRY_POINT_GROUP = "recaudit.dispatchers"


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_recommenders() -> list[str]:
    """Names usable as ``recommender.kind``: built-ins, then installed plugins."""
    return list(BASE_RECOMMENDERS) + sorted(set(_entry_points()) - set(BASE_RECOMMENDERS))


def _resolve(kind, builtins: dict, installed, role: str, available):
    """Return the class for a name, ``module:Class`` path, entry-point name or class."""
    if inspect.isclass(kind):
        return kind
    if not isinstance(kind, str):
        raise PluginError(f"{role}.kind must be a name or 'module:Class', not {type(kind).__name__}")
    if kind in builtins:
        return builtins[kind]
    if ":" in kind:
        mod_name, _, cls_name = kind.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
            raise PluginError(
                f"{role}.kind = '{kind}': cannot import module '{mod_name}' ({exc}); "
                "fix: make the module importable (installed, or on PYTHONPATH)"
            ) from None
        cls = getattr(mod, cls_name, None)
        if cls is None or not inspect.isclass(cls):
            raise PluginError(f"{role}.kind = '{kind}': module '{mod_name}' has no class '{cls_name}'")
        return cls
    eps = installed()
    if kind in eps:
        try:
            return eps[kind].load()
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"{role} plugin '{kind}' failed to load: {exc}", stacklevel=3)
            raise PluginError(f"{role} '{kind}' (entry point) failed to load: {exc}") from None
    raise PluginError(
        f"{role}.kind = '{kind}' is unknown; choose one of {', '.join(available())}, or give 'module:Class'"
    )


def resolve_recommender_class(kind):
    """Return the recommender class for a name, ``module:Class`` path or class.

    Raises
    ------
    PluginError
        If the name is unknown or the import fails; the message lists the choices.
    """
    return _resolve(kind, BASE_RECOMMENDERS, _entry_points, "recommender", available_recommenders)


def available_pricers() -> list[str]:
    """Names usable as ``pricer.kind``: built-ins, then installed plugins."""
    return list(BASE_PRICERS) + sorted(set(_pricer_entry_points()) - set(BASE_PRICERS))


def _pricer_entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=PRICER_ENTRY_POINT_GROUP)}


def resolve_pricer_class(kind):
    """Return the pricer class for a name, ``module:Class`` path, entry point or class."""
    return _resolve(kind, BASE_PRICERS, _pricer_entry_points, "pricer", available_pricers)


def make_pricer(settings: PricerSettings | str | type | object):
    """Build a pricer from its settings, a name, a class, or return an instance as it is.

    Raises
    ------
    PluginError
        Unknown name, bad parameters, or an object without ``fit``/``quote``.
    """
    if isinstance(settings, str):
        settings = PricerSettings(kind=settings)
    if inspect.isclass(settings):
        cls, params, label = settings, {}, settings.__name__
    elif isinstance(settings, PricerSettings):
        cls, params, label = resolve_pricer_class(settings.kind), dict(settings.params), settings.kind
    else:
        obj, label = settings, type(settings).__name__
        _check_methods(obj, label, "pricer", ("fit", "quote"), _PRICER_PROTOCOL)
        return obj
    return _construct(cls, params, label, role="pricer", methods=("fit", "quote"), protocol=_PRICER_PROTOCOL)


def available_dispatchers() -> list[str]:
    """Names usable as ``dispatcher.kind``: built-ins, then installed plugins."""
    return list(BASE_DISPATCHERS) + sorted(set(_dispatcher_entry_points()) - set(BASE_DISPATCHERS))


def _dispatcher_entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group=DISPATCHER_ENTRY_POINT_GROUP)}


def resolve_dispatcher_class(kind):
    """Return the dispatcher class for a name, ``module:Class`` path, entry point or class."""
    return _resolve(kind, BASE_DISPATCHERS, _dispatcher_entry_points, "dispatcher", available_dispatchers)


_DISPATCHER_PROTOCOL = "fit(view, log) -> self and dispatch(order_idx, view) -> sim.fleet.view.Dispatch"


def make_dispatcher(settings: DispatcherSettings | str | type | object):
    """Build a dispatcher from its settings, a name, a class, or return an instance as it is.

    Raises
    ------
    PluginError
        Unknown name, bad parameters, or an object without ``fit``/``dispatch``.
    """
    if isinstance(settings, str):
        settings = DispatcherSettings(kind=settings)
    methods = ("fit", "dispatch")
    if inspect.isclass(settings):
        return _construct(settings, {}, settings.__name__, role="dispatcher", methods=methods,
                          protocol=_DISPATCHER_PROTOCOL)  # fmt: skip
    if isinstance(settings, DispatcherSettings):
        cls = resolve_dispatcher_class(settings.kind)
        return _construct(cls, dict(settings.params), settings.kind, role="dispatcher", methods=methods,
                          protocol=_DISPATCHER_PROTOCOL)  # fmt: skip
    _check_methods(settings, type(settings).__name__, "dispatcher", methods, _DISPATCHER_PROTOCOL)
    return settings


_PRICER_PROTOCOL = "fit(view, log) -> self and quote(user_idx, product_idx, view) -> prices (n_batch,)"
_RECOMMENDER_PROTOCOL = "fit(view, log) -> self and score(user_idx, cand_idx, view) -> float32 (n_batch, n_cand)"


def _check_methods(obj, label, role, methods, protocol):
    for meth in methods:
        if not callable(getattr(obj, meth, None)):
            raise PluginError(f"{role} '{label}' has no {meth}() method; fix: implement the protocol {protocol}")


def _construct(cls, params: dict, label: str, role="recommender", methods=("fit", "score"), protocol=None):
    try:
        obj = cls(**params)
    except (TypeError, ValueError) as exc:
        sig = inspect.signature(cls)
        raise PluginError(
            f"{role} '{label}': bad params {sorted(params)} ({exc}); it accepts: "
            f"{', '.join(p for p in sig.parameters) or 'no parameters'}"
        ) from None
    _check_methods(obj, label, role, methods, protocol or _RECOMMENDER_PROTOCOL)
    return obj


def make_recommender(settings: RecommenderSettings | str | type | object, base=None):
    """Build a recommender with the wrappers its settings ask for.

    Parameters
    ----------
    settings : RecommenderSettings, str, class or instance
        A string or class is built with no parameters and no wrappers; an
        instance is returned as it is.
    base : object, optional
        With ``RecommenderSettings``: use this instance as the base recommender
        instead of ``settings.kind``, and wrap it as the settings ask.
    """
    if inspect.isclass(settings):
        return _construct(settings, {}, settings.__name__)
    if isinstance(settings, str):
        settings = RecommenderSettings(kind=settings)
    if not isinstance(settings, RecommenderSettings):
        return settings
    if base is not None:
        rec = base
    else:
        cls = resolve_recommender_class(settings.kind)
        rec = _construct(cls, dict(settings.params), settings.kind)
    if settings.tags is not None:  # interest tags and tag targeting (Art. 10, 17): the innermost wrapper
        rec = TagTargeting(inner=rec, **settings.tags.model_dump())
    if settings.diversity is not None:
        rec = DiversityReranker(inner=rec, **settings.diversity.model_dump())
    if settings.non_personalised is not None:
        fallback = BASE_RECOMMENDERS[settings.non_personalised.fallback]()
        rec = NonPersonalised(inner=rec, fallback=fallback)
    if settings.hot_list is not None and settings.hot_list.feed_slots > 0:  # the hot list in the feed (Art. 14)
        rec = HotListFeed(inner=rec, slots=settings.hot_list.feed_slots)
    if settings.minors_mode is not None:
        rec = MinorsMode(inner=rec, **settings.minors_mode.model_dump(exclude=set(settings.minors_mode.PAYMENT_FIELDS)))
    return rec
