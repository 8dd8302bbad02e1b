"""Our top-level packages come from this repository: the old PyPI package ``entrypoints`` (or any
stray install) cannot shadow one of them silently."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["domain", "ports", "application", "adapters", "entrypoints"])
def test_each_top_level_package_resolves_to_this_repository(package: str) -> None:
    module = importlib.import_module(package)

    assert module.__file__ is not None, f"{package} is a namespace package, not ours"
    assert REPOSITORY / package / "__init__.py" == Path(module.__file__).resolve()
