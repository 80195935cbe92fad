"""The service's configuration: environment variables with the ``SENSOR_`` prefix, one field each."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The deepest document the API itself needs: an inference request with nested data,
# `{"inputs": [{"data": [[...]]}]}`, has five levels. The limit can never be set below that.
API_JSON_DEPTH = 5


class Settings(BaseSettings):
    """Everything an operator can set. Explicit arguments > environment > defaults.

    Each field's docstring is what the README's settings table says about it.
    """

    model_config = SettingsConfigDict(
        env_prefix="SENSOR_",
        extra="ignore",
        validate_default=True,
        frozen=True,
        use_attribute_docstrings=True,
    )

    model_path: Path = Path("models/model.npz")
    """Path of the model artifact (`.npz`) written by `python -m training`. Replacing this file
    (atomically, as training does) rolls the new model out to every worker."""

    model_name: str = Field(
        default="sensor-classifier", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$"
    )
    """The model's name in the Open Inference Protocol (KServe V2) paths `/v2/models/{name}`."""

    max_batch: int = Field(default=10_000, ge=1)
    """Most readings accepted in one `{"readings": [...]}` batch; more is a 422."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    """Largest request body accepted, in bytes; a larger body is a 413 (checked before reading
    it when the client sends Content-Length). The default holds a batch of 10,000 readings with
    ids of up to about 50 characters; raise it with SENSOR_MAX_BATCH or for longer ids."""

    max_bytes_in_flight: int = Field(default=4 * 1024 * 1024, ge=1024)
    """Bytes of request bodies and unsent answers one worker holds at once (at least
    SENSOR_MAX_BODY_BYTES); a request arriving over it gets a 503 with Retry-After, before its
    body is read. This is what bounds the service's memory whatever clients send."""

    state_dir: Path | None = None
    """Directory where each worker keeps a copy of the last artifact that loaded successfully,
    so that a worker started while SENSOR_MODEL_PATH is missing or broken serves that model
    instead of failing. `gunicorn.conf.py` makes a fresh one per server when unset; none: no
    copy is kept."""

    max_json_depth: int = Field(default=32, ge=API_JSON_DEPTH)
    """Deepest JSON nesting accepted (arrays and objects); deeper documents are a 400."""

    request_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    """Seconds a client has to deliver its whole request body; a slower client gets a 408."""

    reload_interval: float = Field(default=0.5, ge=0, allow_inf_nan=False)
    """Seconds between checks of the model file for a new artifact: a `stat` of the file, made by
    each worker's watcher and by the first request after the interval; 0 makes every request
    check."""

    metrics_flush_interval: float = Field(default=1.0, gt=0, le=60)
    """Seconds a worker keeps its counts of requests (count, latency) and of classified readings
    (per label, per feature bin, novel) in memory before adding them to the shared metrics files;
    a scrape or `/drift` sees every worker's counts at most this late (plus one busy request)."""

    log_level: str = Field(default="info", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    """Level of the service's own log lines (stderr)."""

    @model_validator(mode="after")
    def _budget_holds_one_body(self) -> Settings:
        if self.max_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                "SENSOR_MAX_BYTES_IN_FLIGHT must be at least SENSOR_MAX_BODY_BYTES"
                f" ({self.max_bytes_in_flight} < {self.max_body_bytes})"
            )
        return self


class ServerSettings(BaseSettings):
    """How gunicorn runs the app (read by `gunicorn.conf.py`), same prefix and priority."""

    model_config = SettingsConfigDict(
        env_prefix="SENSOR_",
        extra="ignore",
        validate_default=True,
        frozen=True,
        use_attribute_docstrings=True,
    )

    bind: str = "127.0.0.1:8000"
    """Address gunicorn listens on (`host:port`); the container image sets `0.0.0.0:8000`."""

    workers: int | None = Field(default=None, ge=1)
    """Worker processes. Default: the CPUs this process may really use (the cgroup CPU quota,
    rounded up, and the CPU affinity mask, whichever is smaller)."""

    worker_connections: int = Field(default=5000, ge=1)
    """Simultaneous connections per worker. A slow client holds one (a greenlet, a few kB), never
    a worker; there must be more than slow clients, or the others wait to be accepted."""

    keepalive: int = Field(default=5, ge=1)
    """Seconds an idle keep-alive connection stays open; also the total time a client has to
    send a request's line and headers (one deadline, however slowly they trickle in)."""

    keepalive_requests: int = Field(default=1000, ge=0)
    """Requests a keep-alive connection carries before the service ends it (0: never), saying
    `Connection: close` in the last answer, so that its client reconnects and connections spread
    over the workers again after one was replaced (as nginx's `keepalive_requests`)."""

    graceful_timeout: int = Field(default=25, ge=1)
    """Seconds a worker gets after SIGTERM (or a restart) to finish the requests it accepted."""

    timeout: int = Field(default=30, ge=1)
    """Seconds of silence (a blocked event loop) after which gunicorn kills and replaces a worker."""

    max_requests: int = Field(default=1_000_000, ge=0)
    """Requests after which a worker is replaced (0: never); bounds any slow memory growth.

    A replacement costs about 1.2 s of the whole service's capacity (the old worker drains, the
    new one loads the app and the model): 2 workers saturated by wrk's 16 keep-alive
    connections lost 18-26 % of their requests/s to 6 replacements in 32 s. At 100,000 a
    saturated worker was replaced every 30-40 s, about 7 % of capacity; at a million it is
    every 5-6 minutes under full load, and hours at a plant's usual rate."""

    max_requests_jitter: int = Field(default=100_000, ge=0)
    """Random extra requests (0 to this) per worker, so workers are not all replaced at once."""

    access_log: bool = True
    """Whether gunicorn writes one JSON line per request to stdout."""

    log_level: str = Field(default="info", pattern=r"(?i)^(debug|info|warning|error|critical)$")
    """Level of gunicorn's own log lines (stderr)."""
