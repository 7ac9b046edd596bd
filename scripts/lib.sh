# shellcheck shell=bash
# Helpers shared by setup.sh, deploy.sh, run-task.sh and show_logs.sh.
# Sourced, never run. Every setting comes from the environment or from the
# .env.deploy file (ENV_FILE); a variable set in the environment wins over
# the file, so `REGION=eu-west-1 scripts/setup.sh` does what it says.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE=${ENV_FILE:-$ROOT/.env.deploy}
export AWS_PAGER=""

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

need_cmd() {
  local cmd
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is not installed: $(install_hint "$cmd")"
  done
}

install_hint() {
  case $1 in
    aws) echo "install the AWS CLI (https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html, or pip install awscli)" ;;
    jq) echo "install jq (apt-get install jq, brew install jq)" ;;
    docker) echo "install Docker with BuildKit (docker buildx)" ;;
    zip) echo "install zip (apt-get install zip)" ;;
    *) echo "install it and re-run" ;;
  esac
}

# Reads KEY=VALUE settings from FILE (default ENV_FILE) without letting the
# file override a variable the environment already sets.
load_env() {
  local file=${1:-$ENV_FILE} key
  [[ -f $file ]] || return 0
  local -A keep=()
  while IFS= read -r key; do
    if [[ -n ${!key+set} ]]; then keep[$key]=${!key}; fi
  done < <(sed -nE 's/^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)=.*/\2/p' "$file")
  set -a
  # shellcheck disable=SC1090
  source "$file"
  set +a
  for key in "${!keep[@]}"; do export "$key=${keep[$key]}"; done
}

# Sets KEY=VALUE in FILE, replacing an existing line for KEY or appending
# one; the file is rewritten only when its content changes.
env_set() {
  local file=$1 key=$2 value=$3 line tmp
  if [[ $value =~ ^[A-Za-z0-9_./:@,+=-]*$ ]]; then
    line="$key=$value"
  else
    local quote="'\\''"
    line="$key='${value//\'/$quote}'"
  fi
  if [[ -f $file ]] && grep -qxF -- "$line" "$file"; then return 0; fi
  tmp=$(mktemp "${file}.XXXXXX")
  if [[ -f $file ]]; then
    awk -v key="$key" -v line="$line" '
      BEGIN { done = 0 }
      $0 ~ "^(export[ \t]+)?" key "=" { if (!done) print line; done = 1; next }
      { print }
      END { if (!done) print line }
    ' "$file" >"$tmp"
  else
    printf '# Written by scripts/setup.sh and scripts/deploy.sh; edit freely.\n%s\n' "$line" >"$tmp"
  fi
  mv "$tmp" "$file"
}

# The AWS CLI with JSON output, the region, and AWS_ENDPOINT_URL passed on
# explicitly (older CLIs do not read the variable themselves).
awsj() {
  aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} \
    --region "$REGION" --output json "$@"
}

# Runs `awsj ARGS...` and prints its output. When the call fails with an
# error matching the extended regex NOT_FOUND it prints nothing and returns
# 1; any other failure ends the script with the CLI's message.
#   aws_maybe NOT_FOUND ARGS...
aws_maybe() {
  local not_found=$1 err out
  shift
  err=$(mktemp)
  if out=$(awsj "$@" 2>"$err"); then
    rm -f "$err"
    printf '%s\n' "$out"
    return 0
  fi
  if grep -qE -- "$not_found" "$err"; then
    rm -f "$err"
    return 1
  fi
  cat "$err" >&2
  rm -f "$err"
  printf 'error: aws %s %s failed (see above)\n' "$1" "$2" >&2
  # Called inside $(...), so end the script itself, not just the subshell.
  kill -s TERM "$$"
  exit 1
}

# Resolves REGION from REGION, AWS_REGION, AWS_DEFAULT_REGION or the CLI's
# profile, and exports it under all three names.
resolve_region() {
  REGION=${REGION:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}
  if [[ -z $REGION ]]; then REGION=$(aws configure get region 2>/dev/null || true); fi
  [[ -n $REGION ]] || die "REGION is not set: put REGION=us-east-1 (or your region) in $ENV_FILE or the environment"
  export REGION AWS_REGION=$REGION AWS_DEFAULT_REGION=$REGION
}

# Canonical JSON (sorted keys, compact) of stdin, for comparisons.
canon() { jq -cS '.'; }

# Lets the EventBridge rule RULE_ARN invoke the Lambda FUNCTION (statement
# plus-ecs-task-stopped), once; prints what it did.
#   ensure_events_permission FUNCTION RULE_ARN
ensure_events_permission() {
  local function=$1 rule_arn=$2 sid=plus-ecs-task-stopped policy
  policy=$(aws_maybe ResourceNotFoundException lambda get-policy --function-name "$function") || policy='{"Policy": "{}"}'
  if jq -e --arg sid "$sid" --arg rule "$rule_arn" \
    '.Policy | fromjson | .Statement // [] | any(.Sid == $sid and (.Condition.ArnLike["AWS:SourceArn"] == $rule))' \
    <<<"$policy" >/dev/null; then
    printf '  = lambda permission %s for %s\n' "$sid" "$rule_arn" >&2
    return
  fi
  if jq -e --arg sid "$sid" '.Policy | fromjson | .Statement // [] | any(.Sid == $sid)' <<<"$policy" >/dev/null; then
    awsj lambda remove-permission --function-name "$function" --statement-id "$sid" >/dev/null
  fi
  awsj lambda add-permission --function-name "$function" --statement-id "$sid" \
    --action lambda:InvokeFunction --principal events.amazonaws.com --source-arn "$rule_arn" >/dev/null
  printf '  + lambda permission %s for %s\n' "$sid" "$rule_arn" >&2
}
