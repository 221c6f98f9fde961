"""Roster's version: ``roster --version``, ``/health``, the start-up line and the OpenAPI document.

Read from the installed package's metadata (pyproject.toml's ``version``; a PyInstaller binary
carries that metadata too). Where there is none (running from a source tree that was never
installed, or a frozen build without it), :data:`FALLBACK` is used; tests/unit/test_cli.py keeps
it equal to pyproject.toml's.
"""

from __future__ import annotations

import functools
from importlib import metadata

#: the version when the package metadata cannot be read; keep in step with pyproject.toml
FALLBACK = "0.1.0"
DISTRIBUTION = "roster"


@functools.cache
def version() -> str:
    try:
        found = metadata.version(DISTRIBUTION)
    except (metadata.PackageNotFoundError, OSError, ValueError):
        return FALLBACK
    # a damaged dist-info can lack the field (the call then returns None despite its type)
    return found if isinstance(found, str) and found else FALLBACK
