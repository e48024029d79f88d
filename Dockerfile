# syntax=docker/dockerfile:1
# Build: wheels for the locked dependencies and for this project.
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY requirements.lock ./
RUN pip wheel --wheel-dir /wheels -r requirements.lock
COPY pyproject.toml README.md ./
COPY service ./service
COPY migrate ./migrate
RUN pip wheel --no-deps --wheel-dir /wheels .

# Runtime: no compilers, no pip cache, a fixed non-root user, bytecode compiled at build time.
FROM python:3.11.14-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent app
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels langgraph-pg \
 && rm -rf /wheels \
 && python -m compileall -q "$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# The Deployment runs this; the migration Job runs ["python", "-m", "migrate"].
CMD ["python", "-m", "service"]
