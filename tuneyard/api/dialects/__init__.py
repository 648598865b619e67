"""The APIs this server speaks, one Dialect each, registered here by name.

A dialect is a thin module beside `native`: a router at its own prefix, translators from its
words to the services' JobRequest and from JobView back, an error renderer and status names
(see `base`). To add one, write its module and register it in `registered` below.
"""

from __future__ import annotations

from tuneyard.api.dialects import archetype, felix, fusion, native, openai_ft, training_api
from tuneyard.api.dialects.base import Dialect, DialectRegistry

__all__ = ["Dialect", "DialectRegistry", "registered"]


def registered() -> DialectRegistry:
    """Every dialect the app serves, native first; a duplicate or an overlap fails here, at start-up."""
    dialects = DialectRegistry()
    dialects.register(native.dialect())
    dialects.register(felix.dialect())
    dialects.register(archetype.dialect())
    dialects.register(fusion.dialect())
    dialects.register(openai_ft.dialect())
    dialects.register(training_api.dialect())
    return dialects
