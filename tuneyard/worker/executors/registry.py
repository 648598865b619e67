"""Executors by name: `Settings.executor` picks one from an explicit list, never by import path.

A new executor is a module beside `local.py` implementing the protocols in `executors/__init__.py`,
and one `register` line in `shipped_executors()` below.
"""

from __future__ import annotations

from collections.abc import Callable

from tuneyard.errors import SettingsError
from tuneyard.settings import ENV_PREFIX, Settings
from tuneyard.worker.executors import Executor
from tuneyard.worker.executors.local import LocalExecutor

ExecutorFactory = Callable[[Settings], Executor]
"""Builds an executor from the settings; called once per worker pool (or lone worker)."""

SETTING = ENV_PREFIX + "EXECUTOR"


class ExecutorRegistry:
    """Factories by name. A name is registered once: a second registration is refused, not merged."""

    def __init__(self) -> None:
        self._factories: dict[str, ExecutorFactory] = {}

    def register(self, name: str, factory: ExecutorFactory) -> None:
        if name in self._factories:
            raise ValueError(f"executor {name!r} is already registered")
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def make(self, settings: Settings) -> Executor:
        """The executor `settings.executor` names; SettingsError naming the setting if none does."""
        factory = self._factories.get(settings.executor)
        if factory is None:
            known = ", ".join(self.names()) or "none"
            raise SettingsError(SETTING, f"{settings.executor!r} is not a registered executor (registered: {known})")
        return factory(settings)


def shipped_executors() -> ExecutorRegistry:
    """The executors tuneyard ships. One whose library is optional (ray) imports it inside its
    factory, so that only choosing it needs the library installed."""
    registry = ExecutorRegistry()
    registry.register("local", lambda settings: LocalExecutor())
    registry.register("ray", _ray_executor)
    return registry


def _ray_executor(settings: Settings) -> Executor:
    """The Ray executor, connected to `settings.ray_address`; Ray is imported here, on choosing it."""
    try:
        from tuneyard.worker.executors.ray_cluster import RayExecutor
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] != "ray":
            raise  # a missing module of tuneyard's own is a bug, not a missing extra
        raise SettingsError(SETTING, "the ray executor needs Ray with Ray Train, which is not installed here: "
                                     "pip install 'tuneyard[ray]'") from None
    return RayExecutor(settings.ray_address)


def make_executor(settings: Settings, registry: ExecutorRegistry | None = None) -> Executor:
    """The executor the settings name, from `registry` (the shipped executors by default)."""
    return (registry or shipped_executors()).make(settings)
