"""One registry shape for methods and metrics: register by name, list, look up with a
did-you-mean, and let installed packages add entries through an entry-point group."""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A config or a call named something that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain sentence
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_point_group: str):
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._plugins_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            self.add(name, item)
            return item

        return add

    def add(self, name: str, item: T) -> None:
        if name in self._items and self._items[name] is not item:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = item

    def _load_plugins(self) -> None:
        # Loaded lazily, once: a broken plug-in must not break `import bench`.
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            if ep.name in self._items:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - report which plug-in failed, keep the rest
                raise RuntimeError(
                    f"plug-in {ep.name!r} ({ep.value}) in entry-point group "
                    f"{self.entry_point_group!r} failed to load: {exc}"
                ) from exc
            # A plug-in module may register itself on import; if the entry point names the
            # object directly, register it under the entry point's name.
            if ep.name not in self._items:
                self._items[ep.name] = obj

    def get(self, name: str) -> T:
        if name not in self._items:
            self._load_plugins()
        if name not in self._items:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._items))})"
            )
        return self._items[name]

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def param_type_matches(value: Any, default: Any) -> bool:
    """Whether ``value`` may replace a parameter whose default is ``default`` (None: anything;
    an int where a float is expected; never a bool for a number). One rule for configs and
    for methods' own parameter checks."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def check_params(
    what: str,
    params: dict[str, Any],
    defaults: dict[str, Any],
    *,
    choices: dict[str, tuple[Any, ...]] | None = None,
    error: type[ValueError] = ValueError,
) -> None:
    """The one parameter validator (methods, metrics and configs): every key of ``params`` is a
    parameter in ``defaults`` (else a did-you-mean), its value has the default's type
    (:func:`param_type_matches`) and, where ``choices`` lists them, is one of the allowed
    values. ``what`` names the owner in messages (``"method 'gradcam'"``)."""
    for key, value in params.items():
        if key not in defaults:
            close = difflib.get_close_matches(key, list(defaults), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise error(f"{what} has no parameter {key!r}{hint} (parameters: {', '.join(defaults) or 'none'})")
        default = defaults[key]
        if default is not None and value is not None and not param_type_matches(value, default):
            raise error(f"{what} parameter {key!r} must be {type(default).__name__}, got {value!r} ({type(value).__name__})")
        allowed = (choices or {}).get(key)
        if allowed is not None and value not in allowed:
            raise error(f"{what} parameter {key!r} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
