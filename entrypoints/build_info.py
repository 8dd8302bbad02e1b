"""Which build is running: the installed version and, when the build knew it, the git commit.

The commit comes from ``LIVESELL_BUILD_COMMIT`` (the Dockerfile sets it from its build argument of
the same name, or from Railway's ``RAILWAY_GIT_COMMIT_SHA``), else ``RAILWAY_GIT_COMMIT_SHA`` at
run time. Neither is required: an unknown commit is reported as unknown, never an error.
Kept free of heavy imports: ``livesell --version`` reads it.
"""

from __future__ import annotations

import os
import re
from importlib import metadata

DISTRIBUTION = "livesell"
UNKNOWN_VERSION = "0+unknown"
COMMIT_VARIABLES = ("LIVESELL_BUILD_COMMIT", "RAILWAY_GIT_COMMIT_SHA")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,40}$")


def version() -> str:
    """The installed distribution's version (``0+unknown`` when livesell is not installed)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


def commit() -> str | None:
    """The build's git commit (lower case, at most 40 hex digits), or None when unknown or not a
    commit id (a value that is not hex is ignored rather than printed)."""
    for name in COMMIT_VARIABLES:
        value = os.environ.get(name, "").strip()
        if _COMMIT.match(value):
            return value.lower()
    return None


def describe() -> str:
    """``livesell 0.1.0 (commit 5938c75e1d2a)`` or ``livesell 0.1.0 (commit unknown)``."""
    sha = commit()
    return f"{DISTRIBUTION} {version()} (commit {sha[:12] if sha else 'unknown'})"


def log_context() -> dict[str, str | None]:
    """The fields every service's start-up line carries: ``version`` and ``commit``."""
    return {"version": version(), "commit": commit()}
