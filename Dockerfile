# syntax=docker/dockerfile:1
# The sensor classifier service: a build stage that builds wheels and trains (or takes in) the
# model artifact, and a slim runtime stage holding only the service's runtime dependencies.
#
#   docker build -t sensor-classifier .
#   docker build --build-arg MODEL_ARTIFACT=models/model.npz -t sensor-classifier .
#   docker run --rm -p 8000:8000 sensor-classifier

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model/ model/
COPY training/ training/
COPY service/ service/
# Wheels for the package and its runtime dependencies only: the runtime stage installs from
# this directory with --no-index, so it can never pick up the train/dev extras. The build
# stage itself gets the `train` extra to run `python -m training` (written `./` so that it
# reads as the local project, which it is, rather than an unpinned registry package).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ./ \
    && pip install --no-cache-dir "./[train]"

FROM build AS model
# A path inside the build context to a trained `.npz` artifact; empty trains the default model.
ARG MODEL_ARTIFACT=""
# The context is bind-mounted rather than copied so that only the chosen artifact is read.
# Either way the artifact is loaded once here, so a broken one fails the build, not the pod.
RUN --mount=type=bind,target=/context \
    mkdir -p /artifacts \
    && if [ -n "${MODEL_ARTIFACT}" ]; then \
        cp "/context/${MODEL_ARTIFACT}" /artifacts/model.npz; \
    else \
        python -m training --seed 0 --out /artifacts/model.npz; \
    fi \
    && python -c "import sys, model; print('model version', model.load(sys.argv[1]).version)" /artifacts/model.npz

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/sensor_classifier-*.whl \
    && groupadd --system --gid 10001 sensor \
    && useradd --system --uid 10001 --gid sensor --create-home --home-dir /home/sensor \
        --shell /usr/sbin/nologin sensor \
    && install -d -o sensor -g sensor -m 0700 /tmp/prometheus
WORKDIR /app
COPY gunicorn.conf.py ./
COPY --from=model /artifacts/model.npz models/model.npz
# Listen on all interfaces inside the container; metrics from every gunicorn worker are
# aggregated through files in PROMETHEUS_MULTIPROC_DIR (an emptyDir in Kubernetes).
ENV SENSOR_BIND=0.0.0.0:8000 \
    SENSOR_MODEL_PATH=/app/models/model.npz \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus \
    SENSOR_STATE_DIR=/tmp/state
# Numeric so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The slim image has no curl; readiness means the model is loaded and answering.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ['SENSOR_BIND'].rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=4)"]
CMD ["gunicorn", "--config", "gunicorn.conf.py", "service.wsgi:app"]
