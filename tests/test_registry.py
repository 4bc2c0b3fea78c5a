"""The one registry helper (ddpm/registry.py) and the registries built on it."""
from __future__ import annotations

import pytest

from ddpm.errors import ConfigError
from ddpm.registry import Registry


def test_register_aliases_metadata_and_lookup() -> None:
    reg: Registry = Registry("widget")

    @reg.register("a", "b", cost=3)
    def f() -> int:
        return 1

    assert reg["a"] is f and reg["b"] is f and dict(reg.meta_of("cost")) == {"a": 3, "b": 3}
    assert reg.lookup("a", "x.widget") is f
    with pytest.raises(ConfigError, match=r"^x.widget = 'c': unknown; valid: a, b$"):
        reg.lookup("c", "x.widget")
    view = reg.meta_of("cost")
    reg.add("c", f, cost=5)
    assert view["c"] == 5 and len(view) == 3   # a live view: later registrations show


def test_stamp_name_and_named_specs() -> None:
    classes: Registry = Registry("thing", stamp_name=True)

    @classes.register("fancy")
    class Thing:
        name = "base"

    assert Thing.name == "fancy"

    class Spec:
        def __init__(self, name: str) -> None:
            self.name = name

    specs: Registry = Registry("spec")
    s = specs.add_named(Spec("mnist"))
    assert specs["mnist"] is s


def test_the_public_registries_keep_their_names() -> None:
    from ddpm.schedules import SCHEDULE_PARAMS, SCHEDULES, register_schedule
    from ddpm.sweeps.samplers import OPTUNA_SAMPLERS, SAMPLER_CLASSES

    assert set(SCHEDULE_PARAMS) == set(SCHEDULES) and SCHEDULE_PARAMS["cosine"] == ()
    assert set(SAMPLER_CLASSES) == set(OPTUNA_SAMPLERS) >= {"tpe", "random", "grid"}

    @register_schedule("test-constant", uses=("beta_1",))
    def constant(T: int, beta_1: float, beta_T: float):  # pragma: no cover - registered, not run
        raise NotImplementedError
    try:
        assert SCHEDULES["test-constant"] is constant and SCHEDULE_PARAMS["test-constant"] == ("beta_1",)
    finally:
        del SCHEDULES["test-constant"]
