"""The model runtime: loads and checks the artifact, and swaps in a new one when the file changes."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import model
from service.encoding import BatchEncoder
from service.schemas import RequestSchemas, ResponseSchemas, SchemaError, response_schemas
from service.settings import Settings

logger = logging.getLogger(__name__)

TRAIN_COMMAND = "python -m training"


class ModelLoadError(Exception):
    """The artifact cannot be served; the message names the file, the problem and the fix.

    ``signature``: the file's, taken before it was read (None if it could not be stat'ed).
    """

    def __init__(self, message: str, signature: FileSignature | None = None) -> None:
        super().__init__(message)
        self.signature = signature


@dataclass(frozen=True)
class FileSignature:
    """What `stat` says about the artifact; any change means a new file may be in place.

    The change time is there for a same-size rewrite in place that puts the old mtime back
    (`cp -p`, `rsync -a --inplace`): the kernel sets it on every write and `utime`, and no
    writer can set it back.
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileSignature:
        st = os.stat(path)
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class LoadedModel:
    """One artifact, ready to answer: everything a request needs, consistent with each other."""

    classifier: model.Classifier
    requests: RequestSchemas
    responses: ResponseSchemas
    path: Path
    signature: FileSignature | None
    loaded_at: dt.datetime
    version: str = field(init=False)
    classes: tuple[str, ...] = field(init=False)
    encoder: BatchEncoder = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", self.classifier.version)
        object.__setattr__(self, "classes", self.classifier.classes)
        object.__setattr__(self, "encoder", BatchEncoder(self.classes, self.version))


def load_model(path: Path, settings: Settings) -> LoadedModel:
    """Load, check and prepare the artifact at ``path``; raises ModelLoadError."""
    try:
        signature: FileSignature | None = FileSignature.of(path)
    except OSError:
        signature = None
    try:
        classifier = model.load(path)
        requests = RequestSchemas(
            classifier.features,
            classifier.units,
            list(
                zip(classifier.lower_limits.tolist(), classifier.upper_limits.tolist(), strict=True)
            ),
            settings.max_batch,
            settings.max_json_depth,
        )
        # Inside the try: the answer's schemas and encoder are built from the artifact's names too
        # (a class name holding a lone surrogate passed `model.load` and failed here, outside it).
        return LoadedModel(
            classifier=classifier,
            requests=requests,
            responses=response_schemas(classifier.classes),
            path=path,
            signature=signature,
            loaded_at=dt.datetime.now(dt.UTC),
        )
    except (model.ArtifactError, SchemaError) as exc:
        raise ModelLoadError(str(exc), signature) from None
    except Exception as exc:
        # Whatever else a broken file provokes, it is still the file's fault, not the request's.
        raise ModelLoadError(
            f"model artifact {path}: cannot be loaded ({exc!r})", signature
        ) from None


def startup_message(error: ModelLoadError, path: Path) -> str:
    """The one log line explaining why the service cannot start and what to do about it."""
    return (
        f"cannot start: {error}. Train a model with `{TRAIN_COMMAND} --out {path}`"
        " or set SENSOR_MODEL_PATH to an existing artifact."
    )


@dataclass
class Observers:
    """Callbacks through which the runtime reports to metrics (no-ops by default)."""

    # One reading (n_features,) answered with a class index, and whether it was novel.
    reading: Callable[[model.Classifier, Sequence[float], int, bool], None] = (
        lambda classifier, reading, label, novel: None
    )
    # Readings X (n, n_features) answered with class indices (n,), and how many were novel.
    readings: Callable[[model.Classifier, Any, Any, int], None] = (
        lambda classifier, X, best, novel: None
    )
    # A model is now served by this worker (called before `reloaded`).
    serving: Callable[[model.Classifier], None] = lambda classifier: None
    reloaded: Callable[[str, str | None, str], None] = lambda outcome, old, new: None
    # Whether the configured artifact cannot be served (the last good model answers instead).
    artifact_problem: Callable[[bool], None] = lambda problem: None


LAST_GOOD = "last-good.npz"


def keep_copy(loaded: LoadedModel, state_dir: Path | None) -> None:
    """Copy the artifact just loaded into ``state_dir`` as the last good one, atomically.

    Only if the file is still the one that was loaded (same signature after the copy). When
    no copy can be kept (a full disk, a read-only directory, the file replaced meanwhile), an
    older copy is removed: a worker restarted while the file is unusable would otherwise serve
    that older model beside siblings serving this one; without a copy it does not start. A copy
    of this same model or of a newer one, kept by a sibling, stays. Logged, never raised:
    serving matters more.
    """
    if state_dir is None or loaded.signature is None:
        return
    target = state_dir / LAST_GOOD
    if loaded.path == target:
        return
    tmp: str | None = None
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=state_dir, prefix=".last-good.", suffix=".tmp")
        with os.fdopen(fd, "wb") as out, open(loaded.path, "rb") as source:
            shutil.copyfileobj(source, out)
            out.flush()
            os.fsync(out.fileno())
        if FileSignature.of(loaded.path) == loaded.signature:
            os.replace(tmp, target)
            tmp = None
            return
        problem = f"{loaded.path} changed while it was copied"
    except OSError as exc:
        problem = str(exc)
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    logger.warning(
        "cannot keep a copy of model %s in %s (%s): a worker started while %s is unusable %s",
        loaded.version,
        state_dir,
        problem,
        loaded.path,
        _without_an_older_copy(target, loaded),
    )


def _without_an_older_copy(target: Path, loaded: LoadedModel) -> str:
    """Remove the last good copy at ``target`` if it holds an older model than ``loaded``; says
    what a worker started on it will then do.

    Older means another model, written before ``loaded`` was loaded (the rule of
    `ModelRuntime._follow_last_good`): a copy written since is a sibling's of a newer file.
    """
    wont_start = "will not start (under gunicorn, that stops the server)"
    version = loaded.version
    try:
        written = FileSignature.of(target).mtime_ns
        kept = model.load(target).version
    except FileNotFoundError:
        return f"has no copy to fall back on and {wont_start}"
    except Exception:  # whatever the copy provokes, no worker can serve it: as if there were none
        return f"has no usable copy to fall back on and {wont_start}"
    if kept == version:
        return f"will serve the copy of model {version} already kept at {target}"
    if written > _ns(loaded.loaded_at):
        return f"will serve the newer model {kept} that a sibling kept at {target}"
    try:
        os.unlink(target)
    except FileNotFoundError:
        return f"has no copy to fall back on and {wont_start}"
    except OSError as exc:
        return (
            f"will serve the older model {kept} kept at {target}, which cannot be removed"
            f" ({exc.strerror})"
        )
    return (
        f"{wont_start}; the older copy (model {kept}) was removed, so that no worker serves it"
        f" beside model {version}"
    )


def _ns(moment: dt.datetime) -> int:
    """``moment`` in nanoseconds since the epoch, as `stat` gives file times."""
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1) * 1000


class ModelRuntime:
    """Serves one model at a time and swaps in a new artifact when the file changes.

    Every request asks for ``current()``: at most once per ``reload_interval`` that costs a
    `stat` of the artifact, and when the file changed the new artifact is loaded, checked and
    swapped in before the request is answered. So a worker that answers requests is never more
    than ``reload_interval`` (plus one load) behind the file, however busy it is: freshness
    does not wait for a background task to get its turn. In a served process ``watch()`` also
    checks on a timer, so that an idle worker's readiness, metrics and logs follow the file too.
    A file that fails to load is logged once and skipped (until it changes again) while the
    previous model keeps answering. Each worker process does this on its own; the only thing
    the workers share is the last good copy.

    Every model loaded from the configured file is also copied to ``state_dir`` as the last
    good one. A worker that starts while the file is missing or broken (an OOM kill, or
    `max_requests` recycling, after a bad rollout) serves that copy, the version its siblings
    serve, rather than exiting (which gunicorn's arbiter would answer by stopping the whole
    service); a running worker that finds the file missing or broken switches to it when a
    sibling kept a newer one. Until the file is usable again, ``problem`` says why and
    readiness, `/model`, a metric and the log show it.
    """

    def __init__(
        self,
        settings: Settings,
        observers: Observers | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.path = settings.model_path
        self.observers = observers or Observers()
        self._clock = clock
        self._interval = settings.reload_interval
        self._loaded: LoadedModel | None = None
        self._next_check = 0.0
        # The file last refused, and why: said again whenever that same file is back.
        self._refused: FileSignature | None = None
        self._refusal: str | None = None
        self._unreadable_logged = False
        # The last good copy as this worker last saw it (`_follow_last_good`).
        self._copy_seen: FileSignature | None = None
        self._restore_problem: str | None = None
        self.problem: str | None = None
        # One check at a time; under threads, a request arriving during a reload waits for it
        # (a load takes milliseconds) rather than answering with the model it replaces.
        self._reload_lock = threading.Lock()

    def start(self) -> LoadedModel:
        """Load the configured artifact, else the last good copy; raises ModelLoadError when
        neither loads (the service must not start)."""
        try:
            loaded = load_model(self.path, self.settings)
        except ModelLoadError as exc:
            loaded = self._last_good(exc)
        self._install(loaded, previous=None)
        self._next_check = self._clock() + self._interval
        return loaded

    def _last_good(self, error: ModelLoadError) -> LoadedModel:
        """The last good copy, when the configured artifact failed with ``error``."""
        state_dir = self.settings.state_dir
        copy = state_dir / LAST_GOOD if state_dir is not None else None
        if copy is None or not copy.is_file():
            raise error
        try:
            loaded = load_model(copy, self.settings)
        except ModelLoadError:
            raise error from None
        # Judged once: the same unusable file is not retried, nor logged again, until it changes.
        # By the signature taken before the read: one taken now could be that of a file whose
        # non-atomic writer finished since, which would then never be loaded.
        self._refused, self._refusal = error.signature, str(error)
        if error.signature is None:
            self._unreadable_logged = True
        self._copy_seen = loaded.signature
        self._set_problem(str(error))
        logger.error(
            "%s; serving the last good model %s (kept at %s) until it is fixed",
            error,
            loaded.version,
            copy,
        )
        return loaded

    def _set_problem(self, problem: str | None) -> None:
        if problem != self.problem:
            self.problem = problem
            self.observers.artifact_problem(problem is not None)

    @property
    def loaded(self) -> LoadedModel | None:
        """The model answering now, without checking the file."""
        return self._loaded

    def current(self) -> LoadedModel:
        """The model to answer this request with, after a due check for a new artifact."""
        if self._clock() >= self._next_check:
            self.check_for_update()
        loaded = self._loaded
        if loaded is None:
            raise ModelLoadError(f"no model loaded from {self.path}")
        return loaded

    def watch(self) -> threading.Event:
        """Also check the file in the background, every ``reload_interval`` (at least 0.1 s).

        Requests check on their own anyway; the watcher makes an idle worker switch too, so that
        its readiness, metrics and logs tell the truth, and spares the first request the load.
        Under gevent workers the thread is a greenlet. Setting the returned event stops it.
        """
        interval = max(self._interval, 0.1)
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                try:
                    self.check_for_update()
                except Exception:  # never let the watcher die; requests still check
                    logger.exception("checking %s for a new model failed", self.path)

        threading.Thread(target=loop, name="model-watcher", daemon=True).start()
        return stop

    def check_for_update(self) -> bool:
        """Load the artifact if the file changed since it was loaded; True if a new one is in."""
        with self._reload_lock:
            self._next_check = self._clock() + self._interval
            try:
                signature = FileSignature.of(self.path)
            except OSError as exc:
                # A file being replaced by a non-atomic writer, or removed: keep serving, say so once.
                self._set_problem(f"model artifact {self.path}: cannot stat ({exc.strerror})")
                if not self._unreadable_logged:
                    logger.error(
                        "model artifact %s: cannot stat (%s); still serving model %s",
                        self.path,
                        exc.strerror,
                        self._loaded.version if self._loaded else None,
                    )
                    self._unreadable_logged = True
                return self._follow_last_good()
            self._unreadable_logged = False
            current = self._loaded
            if current is not None and signature == current.signature:
                if current.path == self.path:
                    self._usable_again(current)  # the file is back as it was
                self._restore_copy()
                return False
            if signature == self._refused:
                self._set_problem(self._refusal)  # it may have said "cannot stat" meanwhile
                return self._follow_last_good()
            return self._reload(signature)

    def _reload(self, signature: FileSignature) -> bool:
        previous = self._loaded
        try:
            loaded = load_model(self.path, self.settings)
        except ModelLoadError as exc:
            self._refused, self._refusal = signature, str(exc)
            self._set_problem(str(exc))
            logger.error(
                "refused new model artifact: %s; still serving model %s",
                exc,
                previous.version if previous else None,
            )
            self.observers.reloaded("failure", previous.version if previous else None, "")
            return self._follow_last_good()
        self._refused = self._refusal = None
        self._install(loaded, previous)
        return True

    def _follow_last_good(self) -> bool:
        """While the file cannot be served, serve the last good copy when it holds another
        model; True if it was swapped in.

        Workers check the file at moments of their own: a good file spoilt within one interval
        is loaded by the workers that checked in between and never seen by the others, which
        would serve the model before it, one model here and one there, until the file is fixed.
        The copy is the last file any worker of this server loaded, so they all follow it; but
        only a copy written after this worker's model was loaded: an older one (left because no
        worker could replace or remove it, see `keep_copy`) is no newer model.
        """
        state_dir = self.settings.state_dir
        if state_dir is None:
            return False
        copy = state_dir / LAST_GOOD
        try:
            signature = FileSignature.of(copy)
        except OSError:
            self._restore_copy()
            return False
        if signature == self._copy_seen:
            return False
        self._copy_seen = signature
        previous = self._loaded
        if previous is not None and signature.mtime_ns <= _ns(previous.loaded_at):
            return False
        try:
            loaded = load_model(copy, self.settings)
        except ModelLoadError:
            return False  # a worker started now could not serve it either
        if previous is not None and loaded.version == previous.version:
            return False
        self._install(loaded, previous)
        return True

    def _restore_copy(self) -> None:
        """A last good copy that is gone (a removed state directory, a cleaner of /tmp) is
        written again from the model this worker serves: a worker restarted while the file is
        unusable would otherwise not start, and gunicorn would stop the whole service. Said
        once; a copy that cannot be written is said once too, and tried again at each check.
        """
        state_dir, loaded = self.settings.state_dir, self._loaded
        if state_dir is None or loaded is None:
            return
        copy = state_dir / LAST_GOOD
        if copy.exists():
            return
        try:
            loaded.classifier.save(copy)
        except OSError as exc:
            if self._restore_problem != str(exc):
                self._restore_problem = str(exc)
                logger.error(
                    "the last good copy %s is gone and cannot be written again (%s): a worker"
                    " started while %s is unusable will not start",
                    copy,
                    exc,
                    self.path,
                )
            return
        self._restore_problem = None
        self._copy_seen = FileSignature.of(copy)
        logger.warning(
            "the last good copy %s was gone; model %s is kept there again", copy, loaded.version
        )

    def _usable_again(self, loaded: LoadedModel) -> None:
        """The configured file serves ``loaded``: any problem with it is over, and said so."""
        if self.problem is not None:
            logger.info("model artifact %s is usable again: model %s", loaded.path, loaded.version)
        self._set_problem(None)

    def _install(self, loaded: LoadedModel, previous: LoadedModel | None) -> None:
        if previous is not None and loaded.version == previous.version:
            # The same model written again (touch, chmod, a sync job copying it anew), or back
            # in the file while this worker served it from the last good copy: nothing rolls
            # out, so nothing is counted or logged as a reload; only its file is new.
            self._loaded = loaded
            self._usable_again(loaded)
            return
        self.observers.serving(loaded.classifier)
        self._loaded = loaded
        if loaded.path == self.path:
            self._set_problem(None)
            keep_copy(loaded, self.settings.state_dir)
        old = previous.version if previous else None
        if previous is None:
            logger.info("serving model %s from %s", loaded.version, loaded.path)
        else:
            logger.info("now serving model %s from %s (was %s)", loaded.version, loaded.path, old)
        self.observers.reloaded("success", old, loaded.version)
