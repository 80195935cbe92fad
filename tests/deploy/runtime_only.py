"""Run a console script as if only the project's runtime dependencies were installed.

The runtime image installs the package's wheel with its ``[project].dependencies`` and nothing
else. Without a Docker engine, this is the next best proof that those suffice: every module of
an installed distribution outside that closure is made unimportable (``ModuleNotFoundError``,
exactly what the image would raise, so optional imports degrade the same way), and forked
gunicorn workers inherit the block.

    python tests/deploy/runtime_only.py --block pandas,gevent -- gunicorn --config ... app
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType


def canonical(name: str) -> str:
    """A distribution name in PEP 503 normal form."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_distributions(pyproject: Path) -> set[str]:
    """The installed distributions the project's runtime dependencies pull in (canonical names).

    Follows each requirement's own dependencies recursively, with the extras it names and the
    markers evaluated for this interpreter; the project's optional extras are not followed.
    """
    # Imported here, not at the top: the launcher below must import nothing before its block.
    from packaging.requirements import Requirement

    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    visited: set[tuple[str, frozenset[str]]] = set()
    pending = [
        Requirement(text)
        for text in project["dependencies"]
        if Requirement(text).marker is None or Requirement(text).marker.evaluate({"extra": ""})
    ]
    while pending:
        requirement = pending.pop()
        name, extras = canonical(requirement.name), frozenset(requirement.extras)
        if (name, extras) in visited:
            continue
        visited.add((name, extras))
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            # Not installed here: nothing could import it anyway.
            continue
        for text in requires:
            child = Requirement(text)
            # A child's marker is evaluated once per extra the parent was asked for.
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            ):
                pending.append(child)
    return {name for name, _ in visited}


def modules_outside(allowed: Iterable[str], own: Iterable[str] = ()) -> set[str]:
    """Top-level modules provided only by installed distributions not in ``allowed``."""
    allowed = {canonical(name) for name in allowed} | {canonical(name) for name in own}
    blocked = set()
    for module, distributions in importlib.metadata.packages_distributions().items():
        if not any(canonical(d) in allowed for d in distributions):
            blocked.add(module)
    return blocked


class _Block(importlib.abc.MetaPathFinder):
    def __init__(self, modules: set[str]) -> None:
        self.modules = modules

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top in self.modules:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not a runtime dependency)", name=fullname
            )
        return None


def main(argv: list[str]) -> None:
    """``--block m1,m2 -- script args...``: block the modules, then run the console script."""
    separator = argv.index("--")
    options, command = argv[:separator], argv[separator + 1 :]
    if options[:1] != ["--block"] or len(options) != 2 or not command:
        raise SystemExit(__doc__)
    # Only the interpreter's own start-up (site, .pth files) has imported anything yet; the
    # image's base has those too (pip, setuptools), so they are left alone.
    blocked = {m for m in options[1].split(",") if m and m not in sys.modules}
    sys.meta_path.insert(0, _Block(blocked))
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name=command[0])
    sys.argv = command
    sys.exit(entry.load()())


if __name__ == "__main__":
    main(sys.argv[1:])
