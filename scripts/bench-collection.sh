#!/usr/bin/env bash
# Collections benchmark: items/s and the worker's peak RSS for RUN_COLLECTION
# (per-item and streaming modes, a no-op script) on the local store and on
# moto_server, beside a Python loop (sqlite3 / boto3) that queries the same
# items and runs the same script per item. Prints a Markdown table.
#
#   scripts/bench-collection.sh                 # 1k, 10k, 100k items, both stores
#   SIZES=1000,10000 STORES=local scripts/bench-collection.sh
#
# PY_MAX (default 10000) caps the sizes the Python loop runs (it is slow);
# PLUS_CONCURRENCY overrides the worker's default (the machine's cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p plus-launcher -p plus-worker
echo "cores: $(nproc)" >&2
exec python3 bench/collection_bench.py
