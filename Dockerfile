# syntax=docker/dockerfile:1
# Inklet backend (inkletd) — multi-stage image on Debian 12 (bookworm).
#
#   docker build -t inklet .
#   docker run --rm -p 4000:4000 --env-file inkletd.env --stop-timeout 25 inklet
#   docker run --rm --env-file inkletd.env inklet migrate
#
# Configuration is environment only (see config/inkletd.env.example); the daemon drains for up
# to SHUTDOWN_GRACE (10 s) on SIGTERM and then stops its workers (a few seconds more), so give
# `docker stop` 25 s.

# ---------------------------------------------------------------------------- build stage
FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libmicrohttpd-dev libjansson-dev libjwt-dev libpq-dev libcurl4-openssl-dev \
      libssl-dev libargon2-dev libmosquitto-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DINKLET_TESTS=OFF \
 && cmake --build /build -j"$(nproc)" \
 && strip --strip-unneeded /build/inkletd \
 && /build/inkletd --version

# ---------------------------------------------------------------------------- runtime stage
FROM debian:12-slim AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libmicrohttpd12 libjansson4 libpq5 libcurl4 libssl3 libargon2-1 libmosquitto1 \
      ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system inklet \
 && useradd --system --gid inklet --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin inklet
COPY --from=build /build/inkletd /usr/local/bin/inkletd
# fail the build if a runtime library is missing
RUN ! ldd /usr/local/bin/inkletd | grep -q 'not found' && inkletd --version

USER inklet:inklet
ENV PORT=4000 \
    LISTEN_ADDR=0.0.0.0 \
    LOG_FORMAT=json
EXPOSE 4000
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD curl -fsS --max-time 2 "http://127.0.0.1:${PORT:-4000}/health" >/dev/null || exit 1
ENTRYPOINT ["inkletd"]
