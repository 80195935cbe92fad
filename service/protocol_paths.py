"""Where the Open Inference Protocol (KServe V2) lives in the URL space; no Flask, so gunicorn's master can import it."""

from __future__ import annotations

# Every path under it answers errors in that protocol's format, `{"error": "message"}`.
V2_ROOT = "/v2"


def is_v2_path(path: str) -> bool:
    """Whether ``path`` belongs to the Open Inference Protocol (`/v2` and everything under it)."""
    return path == V2_ROOT or path.startswith(V2_ROOT + "/")
