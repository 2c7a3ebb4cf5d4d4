# syntax=docker/dockerfile:1
#
# One image for every process of the Room Service; the command chooses which:
#   roomservice serve    the HTTP API (default)
#   roomservice worker   the background worker
#   roomservice migrate  apply pending migrations, then exit
#
# Tag it with the package's version (pyproject.toml), which deploy/kubernetes runs; never `latest`:
#   docker build -t roomservice:0.1.0 .
#
# Only the runtime dependencies are installed, at the versions of requirements/main.lock: those of
# the service and of its `otel` extra (traces, off unless OTEL_* variables ask for them); the `dev`
# and `embedded` extras stay out.

FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/venv
WORKDIR /src
# The locked dependencies first, in a layer of their own: it is rebuilt only when the lock changes,
# not on every change of the code.
COPY requirements/main.lock requirements/main.lock
RUN /opt/venv/bin/pip install --require-hashes -r requirements/main.lock
COPY . .
RUN /opt/venv/bin/pip install --no-deps . && /opt/venv/bin/pip check


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ROOMS_HOST=0.0.0.0 \
    ROOMS_PORT=8000

RUN groupadd --system --gid 10001 rooms \
 && useradd --system --uid 10001 --gid rooms --create-home --home-dir /home/rooms --shell /usr/sbin/nologin rooms

COPY --from=build /opt/venv /opt/venv

USER 10001:10001
WORKDIR /home/rooms

# The API (ROOMS_PORT), its metrics when ROOMS_METRICS_PORT is 9100 (deploy/kubernetes), the worker's
# metrics and health (ROOMS_WORKER_METRICS_PORT).
EXPOSE 8000 9100 9101

# Liveness of the API process. The worker has a check of its own on ROOMS_WORKER_METRICS_PORT
# (compose.yaml); the migrate container serves no HTTP and disables this one.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ROOMS_PORT', '8000') + '/health/live', timeout=3)"]

CMD ["roomservice", "serve"]
