# syntax=docker/dockerfile:1
#
# The plus-worker image: what a Fargate task runs.
#
#   docker buildx build --platform linux/amd64 -t plus-worker .    (scripts/deploy.sh does this)
#
# Stages: `build` compiles a static (musl) release binary with the lockfile;
# the last stage, the image itself, is Alpine with /bin/sh (for job scripts),
# CA certificates, tini and the worker, run as a non-root user. Expected size
# (estimated; see docs/deploy.md): ~8.3 MB of Alpine + ~0.7 MB CA certificates
# and tini + the stripped worker (18.7 MB measured on a glibc build) = ~28 MB
# uncompressed, ~12 MB compressed.
#
# `--target lambda --output type=local,dest=DIR` instead writes the launcher
# Lambda's `bootstrap` (provided.al2023) to DIR; see scripts/deploy.sh.
#
# To give jobs the tools they need, build FROM this image (see docs/deploy.md):
#
#   FROM 123456789012.dkr.ecr.us-east-1.amazonaws.com/plus-worker:TAG
#   USER root
#   RUN apk add --no-cache python3 py3-pip ffmpeg
#   USER 10001:10001

ARG RUST_VERSION=1.95
ARG ALPINE_VERSION=3.22

FROM rust:${RUST_VERSION}-alpine${ALPINE_VERSION} AS source
# C toolchain for the bundled SQLite and aws-lc (TLS) sources.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev make perl cmake
WORKDIR /src
COPY . .
# Fully stripped, statically linked binaries; the registry and target
# caches make rebuilds incremental (BuildKit).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols

FROM source AS build
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin plus-worker \
    && install -D -m 0755 target/release/plus-worker /out/plus-worker

FROM source AS lambda-build
ARG LAMBDA_BIN=plus-lambda
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin "${LAMBDA_BIN}" \
    && install -D -m 0755 "target/release/${LAMBDA_BIN}" /out/bootstrap

FROM scratch AS lambda
COPY --from=lambda-build /out/bootstrap /bootstrap

FROM alpine:${ALPINE_VERSION} AS worker
# hadolint ignore=DL3018
RUN apk add --no-cache ca-certificates tini \
    && addgroup -S -g 10001 plus \
    && adduser -S -D -u 10001 -G plus -h /home/plus -s /bin/sh plus
COPY --from=build /out/plus-worker /usr/local/bin/plus-worker
USER 10001:10001
WORKDIR /home/plus
ENV HOME=/home/plus
# ECS sends SIGTERM, then SIGKILL after the task definition's stopTimeout
# (120 s): the worker stops the script, records INTERRUPTED and exits 143.
STOPSIGNAL SIGTERM
# tini reaps the zombies job scripts leave behind; -s makes it a subreaper,
# so it also works under ECS's own init (initProcessEnabled).
ENTRYPOINT ["/sbin/tini", "-s", "--", "/usr/local/bin/plus-worker"]
