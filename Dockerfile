# livesell workers and webhook: one image, the command picks the service.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first (pinned in pyproject.toml), so code changes reuse this layer.
COPY pyproject.toml README.md ./
COPY domain/ domain/
COPY ports/ ports/
COPY application/ application/
COPY adapters/ adapters/
COPY entrypoints/ entrypoints/
COPY alembic/ alembic/
COPY alembic.ini ./
RUN pip install '.[sentry]'

RUN useradd --create-home --uid 10001 livesell
USER livesell

# SIGTERM lets in-flight work finish (30 s); give the platform a little more before SIGKILL.
STOPSIGNAL SIGTERM
CMD ["livesell", "worker"]
