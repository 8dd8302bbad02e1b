"""Starlette's TestClient without the import-time notice that it prefers ``httpx2`` (we pin
``httpx``, which it still supports)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

__all__ = ["TestClient"]
