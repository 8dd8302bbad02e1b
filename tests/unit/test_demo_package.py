"""The demo is not production: ``livesell simulate`` imports ``entrypoints.demo`` only when it
runs, and without the demo extra (fakeredis) the embedded engine is refused in one line. That no
production module imports either is import-linter's contract (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from entrypoints.cli import main


def _modules_after(*argv: str) -> set[str]:
    script = (
        "import sys\n"
        "from entrypoints.cli import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "sys.stderr.write('\\n'.join(sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    return set(done.stderr.split())  # stdout holds the help, which names fakeredis


class TestTheDemoPackage:
    def test_simulate_s_help_imports_no_demo_module_nor_fakeredis(self) -> None:
        imported = _modules_after("simulate", "--help")

        assert set() == {m for m in imported if m.startswith(("entrypoints.demo", "fakeredis"))}

    def test_without_the_demo_extra_the_embedded_engine_is_refused_in_one_line(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setitem(sys.modules, "fakeredis", None)  # import fakeredis then fails
        monkeypatch.delitem(sys.modules, "entrypoints.demo.embedded", raising=False)

        code = main(["simulate", "--engine", "embedded", "--no-progress"])

        err = capsys.readouterr().err
        assert 2 == code
        assert [
            "livesell simulate: the embedded engine needs fakeredis, from the demo extra: "
            "pip install 'livesell[demo]'"
        ] == err.splitlines()
