# syntax=docker/dockerfile:1
# Build stage: wheels of the service and its dependencies. Every dependency ships a manylinux
# wheel, so nothing is compiled and no compiler is installed. The "embedded" extra (a Redis
# server in the process) is not built: the image talks to the Redis in WALLET_MARKET_REDIS_URL.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY wallet_market ./wallet_market
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: a non-root user, granian through `wallet-market serve`.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wallet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY config ./config
USER 10001
ENV WALLET_MARKET_ENV=production \
    WALLET_MARKET_CONFIG_DIR=/app/config \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status == 200 else 1)"]
# On its own the container serves and runs one ledger worker beside the web workers;
# docker-compose.yml runs web containers with --no-worker and one `worker` service instead.
CMD ["wallet-market", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
