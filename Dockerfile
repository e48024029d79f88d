# syntax=docker/dockerfile:1
#
# The langgraph-pg image: one image, four roles (see docs/install.md). The default command serves
# (`python -m service`); the chart's migration Job runs `python -m migrate` in the same image.
#
# Pin the base further by digest where the registry allows it:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:<digest> .
# Any Debian-like base with python3 and its venv module works too (Debian's own python3 has no pip:
# every pip below is a virtualenv's): the local test cluster builds FROM a debootstrap bookworm base
# with python3 and python3-venv (k8s/image/build-base.sh).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: wheels for exactly the locked set, installed into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies first, from the lock only and as published wheels (no compiler is needed or
# present), so this layer is rebuilt only when requirements.lock changes.
# The base's interpreter may come without pip (Debian's does): a throwaway venv brings its own.
COPY requirements.lock ./
RUN python3 -m venv /opt/build \
 && /opt/build/bin/pip wheel --only-binary=:all: --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrate ./migrate
# The project's own wheel, then everything into /opt/venv without reaching an index: --no-deps
# and the lock make the installed set exactly the locked one (pip check proves it is complete).
# pip and setuptools are removed from the venv; bytecode is compiled with unchecked hashes so the
# read-only, PYTHONDONTWRITEBYTECODE runtime never recompiles or checks source timestamps.
RUN /opt/build/bin/pip wheel --no-deps --wheel-dir /wheels/project . \
 && python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --no-deps --no-compile --find-links /wheels \
      -r requirements.lock /wheels/project/*.whl \
 && /opt/venv/bin/pip check \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib

# --- runtime: the base interpreter, the venv, a fixed non-root user; no compiler, no pip run ---
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# Exec form, no ENTRYPOINT: `docker run IMAGE python -m migrate` (the Job's command) replaces it.
CMD ["python", "-m", "service"]
