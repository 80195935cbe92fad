"""The HTTP service: turns sensor readings into calibrated classifications of the loaded model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    # Lazy: gunicorn's master imports `service.settings` and `service.gunicorn_support` before it
    # forks; Flask and prometheus_client must first be imported in the workers (after gevent's
    # monkey-patching and with PROMETHEUS_MULTIPROC_DIR in place).
    if name == "create_app":
        from service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
