"""The layers stay apart: the service never imports the training code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_service_never_imports_training() -> None:
    code = (
        "import sys\n"
        "import service.app, service.card, service.gunicorn_support, service.kserve, service.openapi\n"
        "leaked = [m for m in sys.modules if m == 'training' or m.startswith('training.')]\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
