"""Plugin loading: a ``package.module:Class`` setting turned into an instance, or a one-line error.

BifroMQ's extension points (auth, settings, client balancer) are Java plugins; TideMQ's
are Python classes named in the environment (``TIDEMQ_AUTH_PROVIDER``,
``TIDEMQ_SETTINGS_PROVIDER``, ``TIDEMQ_CLIENT_BALANCER``). ``load_plugin`` imports the
module, resolves the (possibly dotted) attribute, builds it with the given arguments and
checks that the instance has the methods the extension point calls. Every failure is a
``ValueError`` naming the setting, so a process refuses to start with one clear line
instead of failing on the first client.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

__all__ = ["load_plugin"]


def load_plugin(setting: str, spec: str, args: Sequence[Any], methods: Sequence[str]) -> Any:
    """``spec`` (``package.module:Class``) built as ``Class(*args)``; raises ValueError naming ``setting``."""
    module_name, _, attr = spec.strip().partition(":")
    if not module_name or not attr:
        raise ValueError(f"{setting}={spec!r}: expected package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{setting}={spec!r}: cannot import {module_name}: {exc}") from exc
    factory: Any = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ValueError(f"{setting}={spec!r}: {module_name} has no {attr}")
    if not callable(factory):
        raise ValueError(f"{setting}={spec!r}: {attr} is not callable")
    instance = factory(*args)
    for method in methods:
        if not callable(getattr(instance, method, None)):
            raise ValueError(f"{setting}={spec!r}: no {method}() method")
    return instance
