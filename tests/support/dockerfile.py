"""Read the Dockerfile and .dockerignore the way a build does, to reproduce the image without a
container engine (none runs on the CI machines).

Only what our Dockerfile uses is understood: FROM, ARG, ENV, WORKDIR, COPY (sources in the build
context), RUN (shell form), USER, HEALTHCHECK, STOPSIGNAL, CMD; line continuations and comments.
.dockerignore patterns follow Docker's rules as far as we use them: a path is left out when it or
one of its parent folders matches, ``**/`` matches any number of folders (none included); ``!``
exceptions are refused rather than half-supported. Reference:
https://docs.docker.com/build/concepts/context/#dockerignore-files and
https://docs.docker.com/reference/dockerfile/ (COPY: a source folder's contents are copied, not
the folder itself).
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
from pathlib import Path, PurePosixPath

import attrs


@attrs.frozen
class Instruction:
    keyword: str
    arguments: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends on a continuation line"
    return result


def ignore_patterns(dockerignore: Path) -> list[str]:
    patterns = []
    for raw in dockerignore.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "exceptions in .dockerignore are not reproduced"
        patterns.append(line.strip("/"))
    return patterns


def is_ignored(relative: PurePosixPath, patterns: list[str]) -> bool:
    candidates = [PurePosixPath(*relative.parts[:n]) for n in range(1, len(relative.parts) + 1)]
    for pattern in patterns:
        variants = {pattern}
        rest = pattern
        while rest.startswith("**/"):
            rest = rest[3:]
            variants.add(rest)
        for candidate in candidates:
            if any(fnmatch.fnmatchcase(str(candidate), v) for v in variants):
                return True
    return False


def build_context(root: Path) -> list[PurePosixPath]:
    """Every file of the build context: the files under ``root`` that .dockerignore keeps."""
    patterns = ignore_patterns(root / ".dockerignore")
    files = []
    for path in sorted(root.rglob("*")):
        relative = PurePosixPath(path.relative_to(root).as_posix())
        if path.is_file() and not is_ignored(relative, patterns):
            files.append(relative)
    return files


def copy_sources(root: Path, arguments: str, destination: Path) -> list[PurePosixPath]:
    """Carry out ``COPY <src>... <dest>`` from the build context at ``root`` into
    ``destination`` (the WORKDIR the destination is relative to); returns the files copied."""
    words = shlex.split(arguments)
    assert not any(w.startswith("--") for w in words), f"COPY flags are not reproduced: {words}"
    *sources, target = words
    context = build_context(root)
    copied = []
    for source in sources:
        source_path = PurePosixPath(source.rstrip("/"))
        matched = [f for f in context if f == source_path or source_path in f.parents]
        assert matched, f"COPY {source}: nothing in the build context (check .dockerignore)"
        for file in matched:
            inside = (
                file.relative_to(source_path) if file != source_path else PurePosixPath(file.name)
            )
            out = destination / target / inside
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / file, out)
            copied.append(file)
    return copied
