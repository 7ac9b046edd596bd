#!/usr/bin/env bash
# Ships the current source: builds the worker image for linux/amd64, pushes
# it to the ECR repository setup.sh made, registers a task definition
# revision that uses it (only when the image changed), then packages the
# launcher Lambda (provided.al2023 `bootstrap` zip) and creates or updates it.
# Run scripts/setup.sh first; this reads what it wrote to .env.deploy.
#
# Settings (environment or ENV_FILE; the environment wins):
#   IMAGE_TAG      tag to push (default: the git commit, -dirty if changed)
#   IMAGE          deploy this already-pushed image instead of building one
#   LAMBDA_BIN     the launcher Lambda's binary (default plus-lambda)
#   LAMBDA_ZIP     deploy this zip instead of building one
#   SKIP_LAMBDA=1  leave the Lambda alone
#   LAMBDA_MEMORY=256  LAMBDA_TIMEOUT=30
#   AWS_ENDPOINT_URL   point every call at an emulator (tests)
#
# Building needs Docker with BuildKit (docker buildx); on an arm64 machine
# the amd64 build runs under emulation and is slow, so build in CI on amd64.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  -h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
  "") ;;
  *) die "unexpected argument $1 (see --help)" ;;
esac

need_cmd aws jq
load_env
resolve_region
for key in ECR_REPOSITORY_URI TASK_DEFINITION CONTAINER_NAME LAUNCHER_ROLE_ARN LAMBDA_FUNCTION \
  DYNAMO_TABLE DYNAMO_STREAMS_TABLE PRIMARY_BUCKET ECS_CLUSTER SUBNETS SECURITY_GROUPS ASSIGN_PUBLIC_IP; do
  [[ -n ${!key:-} ]] || die "$key is not set: run scripts/setup.sh first (it writes $ENV_FILE)"
done
LAMBDA_BIN=${LAMBDA_BIN:-plus-lambda}
LAMBDA_MEMORY=${LAMBDA_MEMORY:-256}
LAMBDA_TIMEOUT=${LAMBDA_TIMEOUT:-30}

# ------------------------------------------------------------------ image
if [[ -n ${IMAGE:-} ]]; then
  log "using the given image $IMAGE (no build)"
else
  need_cmd docker git
  docker buildx version >/dev/null 2>&1 || die "docker buildx is missing: install Docker with BuildKit (buildx)"
  if [[ -z ${IMAGE_TAG:-} ]]; then
    IMAGE_TAG=$(git -C "$ROOT" rev-parse --short=12 HEAD)
    if [[ -n $(git -C "$ROOT" status --porcelain) ]]; then IMAGE_TAG=$IMAGE_TAG-dirty-$(date -u +%Y%m%d%H%M%S); fi
  fi
  IMAGE=$ECR_REPOSITORY_URI:$IMAGE_TAG
  log "logging in to ${ECR_REPOSITORY_URI%%/*}"
  awsj ecr get-login-password --output text | docker login --username AWS --password-stdin "${ECR_REPOSITORY_URI%%/*}" >/dev/null
  log "building and pushing $IMAGE (linux/amd64)"
  docker buildx build --platform linux/amd64 --target worker --tag "$IMAGE" --push "$ROOT"
fi

# -------------------------------------------------------- task definition
current=$(awsj ecs describe-task-definition --task-definition "$TASK_DEFINITION" --include TAGS)
have=$(jq -r --arg c "$CONTAINER_NAME" '.taskDefinition.containerDefinitions[] | select(.name == $c) | .image' <<<"$current")
[[ -n $have ]] || die "task definition $TASK_DEFINITION has no container named $CONTAINER_NAME: re-run scripts/setup.sh"
if [[ $have == "$IMAGE" ]]; then
  log "task definition $(jq -r '.taskDefinition | "\(.family):\(.revision)"' <<<"$current") already uses $IMAGE"
else
  next=$(jq --arg c "$CONTAINER_NAME" --arg image "$IMAGE" '.taskDefinition
    | del(.taskDefinitionArn, .revision, .status, .requiresAttributes, .compatibilities,
          .registeredAt, .registeredBy, .deregisteredAt)
    | .containerDefinitions |= map(if .name == $c then .image = $image else . end)' <<<"$current")
  tags=$(jq -c '.tags // []' <<<"$current")
  if [[ $tags == "[]" ]]; then
    revision=$(awsj ecs register-task-definition --cli-input-json "$next" | jq -r '.taskDefinition.revision')
  else
    revision=$(awsj ecs register-task-definition --cli-input-json "$next" --tags "$tags" | jq -r '.taskDefinition.revision')
  fi
  log "registered task definition $TASK_DEFINITION:$revision with $IMAGE"
fi
env_set "$ENV_FILE" DEPLOYED_IMAGE "$IMAGE"

# ----------------------------------------------------------------- Lambda
if [[ ${SKIP_LAMBDA:-} == 1 ]]; then
  log "SKIP_LAMBDA=1: leaving the Lambda alone"
  exit 0
fi
if [[ -z ${LAMBDA_ZIP:-} ]]; then
  need_cmd cargo docker zip
  if ! cargo metadata --manifest-path "$ROOT/Cargo.toml" --no-deps --format-version 1 |
    jq -e --arg bin "$LAMBDA_BIN" '[.packages[].targets[] | select(.kind == ["bin"] and .name == $bin)] | length > 0' >/dev/null; then
    warn "this workspace has no binary named $LAMBDA_BIN, so there is no Lambda to deploy; set LAMBDA_BIN, or SKIP_LAMBDA=1"
    exit 0
  fi
  out=$ROOT/target/lambda/$LAMBDA_BIN
  rm -rf "$out"
  log "building the Lambda $LAMBDA_BIN (provided.al2023, x86_64)"
  docker buildx build --platform linux/amd64 --target lambda --build-arg "LAMBDA_BIN=$LAMBDA_BIN" \
    --output "type=local,dest=$out" "$ROOT"
  (cd "$out" && zip -q -X bootstrap.zip bootstrap)
  LAMBDA_ZIP=$out/bootstrap.zip
fi
[[ -f $LAMBDA_ZIP ]] || die "LAMBDA_ZIP is $LAMBDA_ZIP, which is not a file"

lambda_env=$(jq -nc --arg region "$REGION" --arg table "$DYNAMO_TABLE" --arg streams "$DYNAMO_STREAMS_TABLE" \
  --arg bucket "$PRIMARY_BUCKET" --arg cluster "$ECS_CLUSTER" --arg taskdef "$TASK_DEFINITION" \
  --arg container "$CONTAINER_NAME" --arg subnets "$SUBNETS" --arg sgs "$SECURITY_GROUPS" --arg public "$ASSIGN_PUBLIC_IP" \
  --arg bus "${EVENT_BUS:-}" \
  --arg group "${PLUS_SCHEDULE_GROUP:-}" --arg scheduler_role "${PLUS_SCHEDULER_ROLE_ARN:-}" --arg launcher "${PLUS_LAUNCHER_ARN:-}" \
  '{Variables: ({REGION: $region, DYNAMO_TABLE: $table, DYNAMO_STREAMS_TABLE: $streams, PRIMARY_BUCKET: $bucket,
    ECS_CLUSTER: $cluster, TASK_DEFINITION: $taskdef, CONTAINER_NAME: $container,
    SUBNETS: $subnets, SECURITY_GROUPS: $sgs, ASSIGN_PUBLIC_IP: $public, EVENT_BUS: $bus,
    PLUS_SCHEDULE_GROUP: $group, PLUS_SCHEDULER_ROLE_ARN: $scheduler_role, PLUS_LAUNCHER_ARN: $launcher}
    | with_entries(select(.value != "")))}')
if aws_maybe ResourceNotFoundException lambda get-function --function-name "$LAMBDA_FUNCTION" >/dev/null; then
  awsj lambda update-function-code --function-name "$LAMBDA_FUNCTION" --zip-file "fileb://$LAMBDA_ZIP" >/dev/null
  awsj lambda wait function-updated --function-name "$LAMBDA_FUNCTION"
  awsj lambda update-function-configuration --function-name "$LAMBDA_FUNCTION" --role "$LAUNCHER_ROLE_ARN" \
    --memory-size "$LAMBDA_MEMORY" --timeout "$LAMBDA_TIMEOUT" --environment "$lambda_env" >/dev/null
  awsj lambda wait function-updated --function-name "$LAMBDA_FUNCTION"
  log "updated Lambda $LAMBDA_FUNCTION"
else
  # A role made moments ago (by setup.sh) takes a few seconds to become
  # assumable by Lambda; CreateFunction says so, and trying again works.
  for try in 1 2 3 4 5 6 7 8; do
    err=$(mktemp)
    if awsj lambda create-function --function-name "$LAMBDA_FUNCTION" --runtime provided.al2023 \
      --architectures x86_64 --handler bootstrap --role "$LAUNCHER_ROLE_ARN" \
      --zip-file "fileb://$LAMBDA_ZIP" --memory-size "$LAMBDA_MEMORY" --timeout "$LAMBDA_TIMEOUT" \
      --environment "$lambda_env" --tags "app=${PLUS_NAME:-plus}" >/dev/null 2>"$err"; then
      rm -f "$err"
      break
    fi
    if ((try < 8)) && grep -q 'cannot be assumed' "$err"; then
      rm -f "$err"
      log "the launcher role is not assumable yet (new roles take a few seconds); trying again"
      sleep 5
      continue
    fi
    cat "$err" >&2
    rm -f "$err"
    die "the Lambda $LAMBDA_FUNCTION could not be created (see above)"
  done
  awsj lambda wait function-active-v2 --function-name "$LAMBDA_FUNCTION"
  log "created Lambda $LAMBDA_FUNCTION"
fi
# The ECS events rule setup.sh made may invoke it.
if [[ -n ${ECS_EVENTS_RULE_ARN:-} ]]; then
  ensure_events_permission "$LAMBDA_FUNCTION" "$ECS_EVENTS_RULE_ARN"
fi
