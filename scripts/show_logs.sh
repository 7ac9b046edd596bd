#!/usr/bin/env bash
# Prints the worker's CloudWatch logs (JSON lines, one per event), for every
# task or for one job, and with --follow keeps printing new ones.
#
#   scripts/show_logs.sh [--job JOB_ID] [--since 1h] [--follow]
#
# For a job, the log stream of the task that ran it (the job record's
# fargate_task_arn) is read; before a task is recorded, events that mention
# the job id. --since takes 30s, 15m, 2h or 7d (default: 1h; everything
# for a job's own stream).
#
# Settings (environment or ENV_FILE; the environment wins): REGION,
# LOG_GROUP, DYNAMO_TABLE, CONTAINER_NAME (what setup.sh wrote),
# FOLLOW_SECONDS=2 (how often --follow polls), AWS_ENDPOINT_URL.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

job="" since="" follow=0
while (($#)); do
  case $1 in
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
      exit 0
      ;;
    --job)
      job=${2:?--job needs a job id}
      shift
      ;;
    --since)
      since=${2:?--since needs a duration such as 1h}
      shift
      ;;
    -f | --follow) follow=1 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

need_cmd aws jq
load_env
resolve_region
[[ -n ${LOG_GROUP:-} ]] || die "LOG_GROUP is not set: run scripts/setup.sh first (it writes $ENV_FILE)"
CONTAINER_NAME=${CONTAINER_NAME:-worker}
FOLLOW_SECONDS=${FOLLOW_SECONDS:-2}

# Milliseconds since the epoch, DURATION ago.
ago_ms() {
  [[ $1 =~ ^([0-9]+)([smhd])$ ]] || die "--since is \"$1\": expected a number and a unit, e.g. 30s, 15m, 2h, 7d"
  local n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} secs
  case $unit in s) secs=$n ;; m) secs=$((n * 60)) ;; h) secs=$((n * 3600)) ;; d) secs=$((n * 86400)) ;; esac
  echo $((($(date +%s) - secs) * 1000))
}

filter=()
if [[ -n $job ]]; then
  [[ -n ${DYNAMO_TABLE:-} ]] || die "DYNAMO_TABLE is not set: run scripts/setup.sh first (it writes $ENV_FILE)"
  task_arn=$(awsj dynamodb get-item --table-name "$DYNAMO_TABLE" \
    --key "$(jq -nc --arg id "$job" '{object_id: {S: $id}}')" \
    --projection-expression 'object_id, fargate_task_arn' |
    jq -rs '(.[0].Item // null) | if . == null then "missing" else (.fargate_task_arn.S // "") end')
  [[ $task_arn != missing ]] || die "job $job is not in table $DYNAMO_TABLE"
  if [[ $task_arn == arn:* ]]; then
    stream=worker/$CONTAINER_NAME/${task_arn##*/}
    log "job $job ran in task ${task_arn##*/}: log stream $stream"
    filter=(--log-stream-names "$stream")
    start=0
  else
    log "job $job has no task recorded yet: showing events that mention it"
    filter=(--filter-pattern "\"$job\"")
  fi
fi
if [[ -n $since ]]; then
  start=$(ago_ms "$since")
else
  start=${start:-$(ago_ms 1h)}
fi

while :; do
  events=$(aws_maybe ResourceNotFoundException logs filter-log-events --log-group-name "$LOG_GROUP" \
    --start-time "$start" "${filter[@]}") || events='{"events": []}'
  jq -r '.events | sort_by(.timestamp)[] | "\((.timestamp / 1000) | strftime("%Y-%m-%dT%H:%M:%SZ")) \(.message | rtrimstr("\n"))"' <<<"$events"
  last=$(jq '[.events[].timestamp] | max // empty' <<<"$events")
  if [[ -n $last ]]; then start=$((last + 1)); fi
  ((follow)) || break
  sleep "$FOLLOW_SECONDS"
done
