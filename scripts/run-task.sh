#!/usr/bin/env bash
# Launches a sample job on Fargate through the launcher (`plus launch
# --backend aws`), waits for it, and prints its status and output: the
# smoke test after scripts/setup.sh and scripts/deploy.sh.
#
#   scripts/run-task.sh [--no-wait] [SCRIPT] [-- PLUS_LAUNCH_OPTIONS...]
#
# SCRIPT defaults to examples/hello.sh; options after `--` go to `plus
# launch` (e.g. -- --param name=world --spot). With --no-wait (or WAIT=0) it
# prints the job id and returns once the task is started.
#
# Settings (environment or ENV_FILE; the environment wins): what setup.sh
# wrote, plus PLUS_BIN (the `plus` binary; default: `plus` on PATH, else
# this checkout's release build, else `cargo run --release`), PLUS_USER
# (default $USER), AWS_ENDPOINT_URL (point every call at an emulator).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WAIT=${WAIT:-1}
script=""
extra=()
while (($#)); do
  case $1 in
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    --no-wait) WAIT=0 ;;
    --)
      shift
      extra=("$@")
      break
      ;;
    -*) die "unknown option $1 (see --help)" ;;
    *)
      [[ -z $script ]] || die "one script at a time ($script and $1 given)"
      script=$1
      ;;
  esac
  shift
done
script=${script:-$ROOT/examples/hello.sh}
[[ -f $script ]] || die "$script is not a file"

need_cmd jq
load_env
resolve_region
for key in DYNAMO_TABLE DYNAMO_STREAMS_TABLE PRIMARY_BUCKET ECS_CLUSTER TASK_DEFINITION SUBNETS SECURITY_GROUPS; do
  [[ -n ${!key:-} ]] || die "$key is not set: run scripts/setup.sh first (it writes $ENV_FILE)"
done
export DYNAMO_TABLE DYNAMO_STREAMS_TABLE PRIMARY_BUCKET ECS_CLUSTER TASK_DEFINITION SUBNETS SECURITY_GROUPS
export CONTAINER_NAME=${CONTAINER_NAME:-worker} ASSIGN_PUBLIC_IP=${ASSIGN_PUBLIC_IP:-ENABLED}

if [[ -n ${PLUS_BIN:-} ]]; then
  plus=("$PLUS_BIN")
elif command -v plus >/dev/null 2>&1; then
  plus=(plus)
elif [[ -x $ROOT/target/release/plus ]]; then
  plus=("$ROOT/target/release/plus")
else
  need_cmd cargo
  plus=(cargo run --quiet --release --manifest-path "$ROOT/Cargo.toml" --bin plus --)
fi

log "launching $(basename "$script") on cluster $ECS_CLUSTER (task definition $TASK_DEFINITION)"
launched=$("${plus[@]}" --backend aws --json launch "$script" "${extra[@]}")
job=$(jq -r '.job_id // empty' <<<"$launched")
[[ -n $job ]] || die "the launcher did not print a job id: $launched"
printf '%s\n' "$launched"
log "job $job launched; its worker's logs: scripts/show_logs.sh --job $job"

if [[ $WAIT != 1 ]]; then exit 0; fi

log "following job $job (a Fargate task takes about a minute to start)"
code=0
"${plus[@]}" --backend aws events "$job" --follow || code=$?
log "final status"
"${plus[@]}" --backend aws status "$job" || true
exit "$code"
