"""Commands packed into the Redis protocol by hiredis (C) instead of redis-py's asyncio packer (Python).

redis-py's asyncio connections pack every command argument by argument in
Python; in a CONNECT storm that was about a fifth of the worker's time (a
``session_connect`` call has 21 arguments: ~70 µs in Python, ~8 µs with
``hiredis.pack_command`` on the same host). ``fast_pack(cls)`` is ``cls`` (a
redis-py asyncio connection class) with ``pack_command`` done by hiredis.

Invariant: the bytes sent are exactly redis-py's (checked by
``tests/store/test_fastpack.py``), and so are its errors: a command whose name
holds a space (``"CONFIG GET"``, which redis-py splits into two arguments),
an argument hiredis does not take (a bool, None: redis-py's ``DataError``) or
any error of hiredis goes through redis-py's own packer. Without hiredis the
class is returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_hiredis_pack: Callable[[Any], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; redis-py works without it
    _hiredis_pack = None

_classes: dict[type, type] = {}


class _HiredisPack:
    """Mixin for a redis-py asyncio connection class: ``pack_command`` by hiredis when it gives the same bytes."""

    __slots__ = ()

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0] if args else None
        if (type(head) is str and " " not in head) or (type(head) is bytes and b" " not in head):
            for arg in args:
                kind = type(arg)
                if kind is not bytes and kind is not str and kind is not int and kind is not float:
                    break
            else:
                try:
                    return [_hiredis_pack(args)]  # type: ignore[misc]  # set whenever the class exists
                except Exception:  # redis-py's packer raises its own error for it below
                    pass
        return super().pack_command(*args)  # type: ignore[misc, no-any-return]


def fast_pack(cls: type) -> type:
    """``cls`` with hiredis packing (one subclass per class, cached); ``cls`` itself without hiredis."""
    if _hiredis_pack is None:
        return cls
    fast = _classes.get(cls)
    if fast is None:
        fast = _classes[cls] = type(f"HiredisPack{cls.__name__}", (_HiredisPack, cls), {"__slots__": ()})
    return fast
