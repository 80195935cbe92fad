"""The gunicorn entry point, `service.wsgi:app`: the app built from the environment's settings."""

from __future__ import annotations

import logging
import sys

from service.app import create_app
from service.runtime import ModelLoadError, startup_message
from service.settings import Settings

# gunicorn's arbiter stops (rather than respawning the worker forever) on this exit status.
APP_LOAD_ERROR = 4


def _configure_logging(level: str) -> None:
    # The one place the service's logging is configured; gunicorn configures its own loggers.
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=level.upper(),
            stream=sys.stderr,
            format="%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s",
        )


_settings = Settings()
_configure_logging(_settings.log_level)
try:
    app = create_app(_settings)
except ModelLoadError as exc:
    logging.getLogger(__name__).critical(startup_message(exc, _settings.model_path))
    sys.exit(APP_LOAD_ERROR)
app.extensions["sensor"]["runtime"].watch()
app.extensions["sensor"]["metrics"].flush_every()
