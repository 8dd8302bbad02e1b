# livesell workers and webhook: one image, the command picks the service (DEPLOYMENT.md).
# Checked by hadolint in `make lint`; tests/e2e/test_installed_package.py reproduces its file set
# and its RUN lines in a temporary directory (no container engine runs on the CI machines).
FROM python:3.11-slim

# The commit being built, when the builder knows it (Railway passes RAILWAY_GIT_COMMIT_SHA to a
# Dockerfile that declares it; `docker build --build-arg LIVESELL_BUILD_COMMIT=$(git rev-parse
# HEAD)` elsewhere). Empty is fine: `livesell --version` and livesell_build_info then say unknown.
ARG RAILWAY_GIT_COMMIT_SHA=""
ARG LIVESELL_BUILD_COMMIT="${RAILWAY_GIT_COMMIT_SHA}"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app

# 1. Every dependency, transitive ones included, from the lock file with its hashes. Only a change
#    of requirements.lock rebuilds this layer; code changes reuse it.
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && pip install --no-deps --require-hashes -r requirements.lock

# 2. The code (the migrations ship inside it as livesell_migrations), with no dependency
#    resolution: the lock file above is the whole environment.
COPY pyproject.toml setup.py README.md ./
COPY domain/ domain/
COPY ports/ ports/
COPY application/ application/
COPY adapters/ adapters/
COPY entrypoints/ entrypoints/
COPY alembic/ alembic/
RUN pip install --no-deps . \
    && rm -rf build ./*.egg-info

ENV LIVESELL_BUILD_COMMIT="${LIVESELL_BUILD_COMMIT}" \
    HEALTH_PORT=8081

RUN groupadd --gid 10001 livesell \
    && useradd --create-home --uid 10001 --gid 10001 livesell
USER 10001:10001
# Run from the home directory: the installed package is what runs, not the copied sources.
WORKDIR /home/livesell

# The worker serves /healthz on HEALTH_PORT, the webhook on PORT: `livesell health` probes the
# one this container runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["livesell", "health"]

# SIGTERM lets in-flight work finish (30 s); give the platform a little more before SIGKILL.
STOPSIGNAL SIGTERM
CMD ["livesell", "worker"]
