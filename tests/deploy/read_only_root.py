"""Run a command the way the Deployment runs the image: read-only root, emptyDirs writable.

In a private mount namespace (``unshare --mount``), nothing here is visible outside:

    unshare --mount --propagation private python tests/deploy/read_only_root.py \\
        --model SRC --model-dir DIR --writable /tmp --writable /tmp/prometheus -- gunicorn ...

mounts a fresh tmpfs at every ``--writable`` path (the pod's emptyDirs), puts the model file
from ``SRC`` into ``DIR`` on a read-only mount (a model volume), remounts ``/`` read-only
(``readOnlyRootFilesystem: true``) and then execs the command.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# The probe the tests use to decide whether this machine allows it (root, mount namespaces).
PROBE = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
PROBE_SCRIPT = "mount -t tmpfs -o size=1m tmpfs /tmp && mount -o remount,bind,ro /"


def supported() -> bool:
    """Whether this process may create a mount namespace and remount ``/`` read-only in it."""
    try:
        result = subprocess.run(
            [*PROBE, PROBE_SCRIPT], capture_output=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _mount(*arguments: str) -> None:
    subprocess.run(["mount", *arguments], check=True)


def main(argv: list[str]) -> None:
    separator = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--writable", action="append", default=[])
    options = parser.parse_args(argv[:separator])
    command = argv[separator + 1 :]

    # Read before the tmpfs mounts can hide it (it usually lives under /tmp).
    model_bytes = options.model.read_bytes()
    # The checkout and its virtualenv stand in for the image's /app and site-packages; when they
    # live under a path that gets an emptyDir (a clone in /tmp), park them on a private tmpfs and
    # bind them back, read-only, once the emptyDirs are mounted.
    writable = sorted(options.writable, key=lambda p: len(Path(p).parts))
    code = [Path.cwd().resolve(), Path(sys.prefix).resolve()]
    hidden = sorted(
        {c for c in code for w in writable if c.is_relative_to(Path(w).resolve())},
        key=lambda p: len(p.parts),
    )
    parked = Path("/mnt")
    if hidden:
        _mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(parked))
    for i, path in enumerate(hidden):
        (parked / str(i)).mkdir()
        _mount("--bind", str(path), str(parked / str(i)))
    # Parents first, so /tmp/prometheus is created inside the fresh /tmp.
    for path in writable:
        Path(path).mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", "size=64m,mode=1777", "tmpfs", path)
    for i, path in enumerate(hidden):
        path.mkdir(parents=True, exist_ok=True)
        _mount("--bind", str(parked / str(i)), str(path))
        _mount("-o", "remount,bind,ro", str(path))
    options.model_dir.mkdir(parents=True)
    (options.model_dir / options.model.name).write_bytes(model_bytes)
    _mount("--bind", str(options.model_dir), str(options.model_dir))
    _mount("-o", "remount,bind,ro", str(options.model_dir))
    _mount("-o", "remount,bind,ro", "/")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
