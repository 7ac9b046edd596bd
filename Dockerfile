# syntax=docker/dockerfile:1
#
# The plus-worker image: what a Fargate task runs.
#
#   docker buildx build --platform linux/amd64 -t plus-worker .    (scripts/deploy.sh does this)
#
# Stages: `build` compiles a static (musl) release binary with the lockfile;
# the last stage, the image itself, is Alpine with /bin/sh (for job scripts),
# CA certificates and the worker, which starts as root and runs every job
# script as the unprivileged user `plus` (10001:10001, PLUS_SCRIPT_USER).
# Expected size (estimated; see docs/deploy.md): ~8.3 MB of Alpine + ~0.6 MB
# CA certificates + the stripped worker (18.7 MB measured on a glibc build)
# = ~28 MB uncompressed, ~12 MB compressed.
#
# `--target lambda --output type=local,dest=DIR` instead writes the launcher
# Lambda's `bootstrap` (provided.al2023) to DIR; see scripts/deploy.sh.
#
# To give jobs the tools they need, build FROM this image (see docs/deploy.md):
#
#   FROM 123456789012.dkr.ecr.us-east-1.amazonaws.com/plus-worker:TAG
#   RUN apk add --no-cache python3 py3-pip ffmpeg
#
# (no USER line: a derived image that sets USER 10001 runs the worker as the
# scripts' own user, where only its being non-dumpable guards it).

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
RUN apk add --no-cache ca-certificates \
    && addgroup -S -g 10001 plus \
    && adduser -S -D -u 10001 -G plus -h /home/plus -s /bin/sh plus
COPY --from=build /out/plus-worker /usr/local/bin/plus-worker
# Who protects the task's credentials (README, "What a script cannot
# reach"): the worker, and PID 1 (the worker itself, or ECS's init with
# initProcessEnabled), run as root, with AWS_CONTAINER_CREDENTIALS_RELATIVE_URI
# in their environment; every script runs as 10001:10001 with no
# supplementary groups, so /proc/1/environ, the worker's environ, mem and fd
# stay closed to it (another uid, no CAP_SYS_PTRACE), and the worker is
# non-dumpable besides. No USER line on purpose: the worker needs root to
# switch to the scripts' user and to hand them their job folders.
ENV PLUS_SCRIPT_USER=10001:10001
WORKDIR /home/plus
ENV HOME=/home/plus
# ECS sends SIGTERM, then SIGKILL after the task definition's stopTimeout
# (120 s): the worker stops the script, records INTERRUPTED and exits 143.
STOPSIGNAL SIGTERM
# No tini: the worker can be PID 1. It handles SIGTERM and SIGINT itself,
# and as a child subreaper it reaps every process a script leaves behind
# (at each SIGCHLD) and kills what still runs when the script ends; under
# ECS's own init (initProcessEnabled) it does the same as that init's child.
ENTRYPOINT ["/usr/local/bin/plus-worker"]
