"""TideMQ: the shared core (protocol, routing, store, auth) of the MQTT worker and the admin API.

The worker and the API are installed as ``tidemq.worker`` and ``tidemq.api`` from the repository's
``workers/`` and ``app/`` folders (pyproject ``package-dir``). When this package is imported from a
source checkout (those folders sit next to it and no installed ``tidemq/api`` exists), the two names
resolve to the folders of *this* checkout — whichever checkout an editable install points at — so a
clone, a worktree or CI's clean copy always runs its own code.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
_SERVICES = {"tidemq.api": _HERE.parent / "app", "tidemq.worker": _HERE.parent / "workers"}


class _SourceTreeServices(importlib.abc.MetaPathFinder):
    """Finds ``tidemq.api`` / ``tidemq.worker`` in the checkout this package was imported from."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        folder = _SERVICES.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


if not (_HERE / "api").is_dir() and all((f / "__init__.py").is_file() for f in _SERVICES.values()):
    sys.meta_path.insert(0, _SourceTreeServices())
