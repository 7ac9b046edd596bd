#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need
# when it is missing (moto_server, the AWS emulator the tests start
# themselves on free loopback ports), checks formatting and lints, then runs
# every test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

pip_install() {
  python3 -m pip install --quiet --disable-pip-version-check "$@"
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
}

if ! command -v moto_server >/dev/null 2>&1; then
  log "installing moto[server] (the AWS API emulator)"
  pip_install 'moto[server]>=5,<6'
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
