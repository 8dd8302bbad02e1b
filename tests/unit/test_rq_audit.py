"""The threaded engine mirrors RQ's internals in one module, audited against one ``rq`` release
(issue 14 §5, ADR 0007).

``adapters.rq.lifecycle`` is the only module of the engine that touches RQ's private members;
each of its functions names the RQ method it mirrors (``lifecycle.MIRRORS``). These tests fail
when the installed ``rq`` is not the audited release, when the lock file pins another one, when
a mirrored method or a private member the lifecycle relies on is gone, and when another engine
module starts touching RQ's private members.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

import fakeredis
import rq.job
from rq.job import Job
from rq.worker import Worker

from adapters.rq import lifecycle

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "adapters" / "rq"
LIFECYCLE = ENGINE / "lifecycle.py"
AUDITED_SUBCLASS_MEMBERS = {
    "registration.py": {
        "_set_connection",  # Registration overrides SimpleWorker._set_connection
        "_queue_names",  # LeasedScheduler.tick mirrors RQScheduler.acquire_locks
        "_acquired_locks",
        "_scheduled_job_registries",
    }
}
"""RQ private members that engine classes subclassing RQ's own reach through ``self``."""
RQ_CLASSES = {"Job": Job, "Worker": Worker}


def what_to_reaudit() -> str:
    mirrors = "\n".join(
        f"  lifecycle.{name}: {rq_method}" for name, rq_method in lifecycle.MIRRORS.items()
    )
    subclasses = "\n".join(
        f"  adapters/rq/{module}: {', '.join(sorted(members))}"
        for module, members in AUDITED_SUBCLASS_MEMBERS.items()
    )
    return (
        f"adapters.rq.lifecycle was audited against rq {lifecycle.AUDITED_RQ_VERSION}. Compare each"
        f" function with the rq method it mirrors in the new release:\n{mirrors}\nand the RQ"
        f" private members the engine's RQ subclasses use:\n{subclasses}\nthen set"
        " lifecycle.AUDITED_RQ_VERSION."
    )


def private_members_used(source: str) -> set[str]:
    """``x._name`` for any ``x`` but ``self``/``cls``, and ``_names`` imported from ``rq``."""
    used = set()
    for node in ast.walk(ast.parse(source)):
        on_itself = isinstance(node, ast.Attribute) and _is_self(node.value)
        if isinstance(node, ast.Attribute) and _private(node.attr) and not on_itself:
            used.add(ast.unparse(node))
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rq":
            used.update(f"{node.module}.{a.name}" for a in node.names if _private(a.name))
    return used


def rq_subclass_private_members(source: str) -> set[str]:
    """``self._name`` (and methods named ``_name``) in classes whose bases come from ``rq``."""
    tree = ast.parse(source)
    from_rq = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rq"
        for alias in node.names
    }
    used = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        if not any(isinstance(base, ast.Name) and base.id in from_rq for base in cls.bases):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.FunctionDef) and _private(node.name):
                used.add(node.name)
            if (
                isinstance(node, ast.Attribute)
                and _private(node.attr)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                used.add(node.attr)
    return used


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


class TestTheAuditedRqRelease:
    def test_the_installed_rq_is_the_audited_release(self) -> None:
        installed = importlib.metadata.version("rq")

        assert lifecycle.AUDITED_RQ_VERSION == installed, (
            f"rq {installed} is installed. " + what_to_reaudit()
        )

    def test_the_lock_files_pin_the_audited_release(self) -> None:
        for lock in ("requirements.lock", "requirements-dev.lock"):
            pinned = re.search(r"^rq==(\S+)", (ROOT / lock).read_text(), re.MULTILINE)

            assert pinned is not None, f"{lock} does not pin rq"
            assert lifecycle.AUDITED_RQ_VERSION == pinned.group(1), (
                f"{lock} pins rq {pinned.group(1)}. " + what_to_reaudit()
            )


class TestTheLifecycleModule:
    def test_each_function_names_the_rq_method_it_mirrors(self) -> None:
        functions = {
            node.name: ast.get_docstring(node) or ""
            for node in ast.parse(LIFECYCLE.read_text()).body
            if isinstance(node, ast.FunctionDef) and not _private(node.name)
        }

        assert set(functions) == set(lifecycle.MIRRORS)
        for name, docstring in functions.items():
            first = re.match(r"[\w.]+", lifecycle.MIRRORS[name])
            assert first is not None
            assert docstring.startswith("RQ: "), name
            assert f"``{first.group(0)}" in docstring, name

    def test_the_mirrored_rq_methods_exist_in_the_installed_rq(self) -> None:
        named = {
            (owner, method)
            for text in lifecycle.MIRRORS.values()
            for owner, method in re.findall(r"\b(Job|Worker)\.([a-z]\w*)", text)
        }

        missing = [f"{o}.{m}" for o, m in sorted(named) if not hasattr(RQ_CLASSES[o], m)]
        assert [] == missing, what_to_reaudit()

    def test_the_rq_private_members_it_uses_exist_in_the_installed_rq(self) -> None:
        job = Job("audit", connection=fakeredis.FakeRedis())
        used = private_members_used(LIFECYCLE.read_text())

        missing = []
        for member in sorted(used):
            owner, _, name = member.rpartition(".")
            holder = rq.job if owner == "rq.job" else job
            if not hasattr(holder, name):
                missing.append(member)
        assert {"job._execute", "job._handle_success", "rq.job._job_stack"} <= used
        assert [] == missing, what_to_reaudit()


class TestNoOtherEngineModuleTouchesRqInternals:
    def test_only_the_lifecycle_module_reaches_into_rq_objects(self) -> None:
        offenders = {
            path.name: sorted(used)
            for path in sorted(ENGINE.glob("*.py"))
            if path != LIFECYCLE and (used := private_members_used(path.read_text()))
        }

        assert {} == offenders, "move these to adapters/rq/lifecycle.py, naming the RQ method"

    def test_rq_subclasses_use_only_the_audited_private_members(self) -> None:
        used = {
            path.name: members
            for path in sorted(ENGINE.glob("*.py"))
            if path != LIFECYCLE and (members := rq_subclass_private_members(path.read_text()))
        }

        assert AUDITED_SUBCLASS_MEMBERS == used
