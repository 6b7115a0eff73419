# syntax=docker/dockerfile:1
# Build stage: wheels for the service and its dependencies.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY wallet_market ./wallet_market
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no compiler, a non-root user, granian through `wallet-market serve`.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 wallet
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY config ./config
RUN mkdir -p /app/var && chown wallet:wallet /app/var
USER wallet
ENV WALLET_MARKET_ENV=production \
    WALLET_MARKET_CONFIG_DIR=/app/config \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz').status==200 else 1)"
CMD ["wallet-market", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "4"]
