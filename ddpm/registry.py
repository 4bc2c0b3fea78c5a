"""The one registry helper behind every extension point (schedules, samplers, trackers, storages, ...).

A registry maps a name to an implementation; adding one is the implementation plus one registry line:

    SCHEDULES: Registry[ScheduleFn] = Registry("schedule")

    @SCHEDULES.register("linear", uses=("beta_1", "beta_T"))      # keyword arguments: metadata of the entry
    def linear(T, beta_1, beta_T): ...

``REG.meta_of("uses")`` is a live read-only mapping name -> that metadata value; ``REG.lookup(name, where)``
is the entry, or a one-line ConfigError naming the key, the value and the allowed names.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, TypeVar

from ddpm.errors import ConfigError

T = TypeVar("T")


class Registry(dict[str, T]):
    """name -> implementation; ``stamp_name``: set each entry's ``name`` attribute to its registry name."""

    def __init__(self, kind: str, stamp_name: bool = False) -> None:
        super().__init__()
        self.kind, self.stamp_name = kind, stamp_name
        self.meta: dict[str, dict[str, Any]] = {}

    def add(self, name: str, obj: T, **meta: Any) -> T:
        if self.stamp_name:
            obj.name = name  # type: ignore[attr-defined]
        self[name], self.meta[name] = obj, meta
        return obj

    def register(self, *names: str, **meta: Any) -> Callable[[T], T]:
        """Decorator registering the decorated object under ``names`` (several: aliases of one object)."""
        def deco(obj: T) -> T:
            for name in names:
                self.add(name, obj, **meta)
            return obj
        return deco

    def add_named(self, obj: T) -> T:
        """Register a spec object under its own ``name`` attribute."""
        return self.add(obj.name, obj)  # type: ignore[attr-defined]

    def lookup(self, name: str, where: str = "") -> T:
        if name not in self:
            raise ConfigError(f"{where or self.kind} = {name!r}: unknown; valid: {', '.join(sorted(self))}")
        return self[name]

    def meta_of(self, key: str) -> Mapping[str, Any]:
        return _MetaView(self, key)


class _MetaView(Mapping[str, Any]):
    def __init__(self, registry: Registry, key: str) -> None:
        self._registry, self._key = registry, key

    def __getitem__(self, name: str) -> Any:
        return self._registry.meta[name][self._key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._registry)

    def __len__(self) -> int:
        return len(self._registry)
