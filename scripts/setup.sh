#!/usr/bin/env bash
# Creates or confirms, idempotently, everything plus-worker needs in one AWS
# account and region, and writes the names to .env.deploy (ENV_FILE):
#
#   DynamoDB  jobs table (object_id, owner-index) and streams table
#             (stream_id + seq, TTL on expires_at)
#   S3        the primary bucket: private, public access blocked, encrypted
#   ECS       the cluster with FARGATE and FARGATE_SPOT; the task definition
#             (container `worker`, stopTimeout 120, awslogs, init process)
#   ECR       the worker's image repository (scan on push, keeps 20 images)
#   Logs      the worker's and the launcher Lambda's log groups, with retention
#   IAM       task execution role, task role (only what the worker does, on
#             exactly these resources), the launcher Lambda's role and the
#             scheduler's role (may only invoke the launcher Lambda)
#   Scheduler the EventBridge Scheduler group of `plus schedule` schedules
#   VPC       subnets of the default VPC and an egress-only security group,
#             unless SUBNETS and SECURITY_GROUPS are given
#
# Safe to re-run: what exists and matches is left alone, what drifted is put
# back, and the last line says how many changes were made.
#
# Settings (environment or ENV_FILE; the environment wins), with defaults:
#   REGION (or AWS_REGION)   required unless the CLI profile has a region
#   PLUS_NAME=plus           prefix of every resource name
#   DYNAMO_TABLE=$PLUS_NAME-jobs   DYNAMO_STREAMS_TABLE=$PLUS_NAME-streams
#   PRIMARY_BUCKET=$PLUS_NAME-$ACCOUNT-$REGION   ECS_CLUSTER=$PLUS_NAME
#   TASK_DEFINITION=$PLUS_NAME-worker (the family)   CONTAINER_NAME=worker
#   ECR_REPOSITORY=$PLUS_NAME-worker   LOG_GROUP=/ecs/$PLUS_NAME-worker
#   LOG_RETENTION_DAYS=30    TASK_CPU=1024   TASK_MEMORY=2048
#   PLUS_GRACE_SECONDS=90    (script's grace after SIGTERM, inside stopTimeout)
#   SUBNETS, SECURITY_GROUPS (comma-separated)   ASSIGN_PUBLIC_IP=ENABLED
#   EVENT_BUS=$PLUS_NAME-jobs   (EventBridge bus of Job State Change events)
#   PLUS_SCHEDULE_GROUP=$PLUS_NAME-worker   SCHEDULER_ROLE=$PLUS_NAME-scheduler
#   LAMBDA_FUNCTION=$PLUS_NAME-launcher   IMAGE (default: the current
#   revision's image, else $ECR_REPOSITORY_URI:latest)
#   AWS_ENDPOINT_URL         point every call at an emulator (tests)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
  exit "${1:-0}"
}
case ${1:-} in
  -h | --help) usage 0 ;;
  "") ;;
  *) usage 2 ;;
esac

need_cmd aws jq
load_env
resolve_region

CHANGES=0
changed() {
  CHANGES=$((CHANGES + 1))
  printf '  + %s\n' "$*" >&2
}
same() { printf '  = %s\n' "$*" >&2; }

identity=$(awsj sts get-caller-identity) || die "sts get-caller-identity failed (above): check the credentials (aws configure, AWS_PROFILE) and the endpoint"
ACCOUNT_ID=$(jq -r .Account <<<"$identity")
PARTITION=$(jq -r '.Arn | split(":")[1]' <<<"$identity")

PLUS_NAME=${PLUS_NAME:-plus}
[[ $PLUS_NAME =~ ^[a-z][a-z0-9-]{0,30}$ ]] || die "PLUS_NAME is \"$PLUS_NAME\": expected lower-case letters, digits and dashes, starting with a letter, at most 31 characters"
DYNAMO_TABLE=${DYNAMO_TABLE:-$PLUS_NAME-jobs}
DYNAMO_STREAMS_TABLE=${DYNAMO_STREAMS_TABLE:-$PLUS_NAME-streams}
PRIMARY_BUCKET=${PRIMARY_BUCKET:-$PLUS_NAME-$ACCOUNT_ID-$REGION}
ECS_CLUSTER=${ECS_CLUSTER:-$PLUS_NAME}
TASK_DEFINITION=${TASK_DEFINITION:-$PLUS_NAME-worker}
CONTAINER_NAME=${CONTAINER_NAME:-worker}
ECR_REPOSITORY=${ECR_REPOSITORY:-$PLUS_NAME-worker}
LOG_GROUP=${LOG_GROUP:-/ecs/$PLUS_NAME-worker}
LOG_RETENTION_DAYS=${LOG_RETENTION_DAYS:-30}
TASK_CPU=${TASK_CPU:-1024}
TASK_MEMORY=${TASK_MEMORY:-2048}
PLUS_GRACE_SECONDS=${PLUS_GRACE_SECONDS:-90}
ASSIGN_PUBLIC_IP=${ASSIGN_PUBLIC_IP:-ENABLED}
LAMBDA_FUNCTION=${LAMBDA_FUNCTION:-$PLUS_NAME-launcher}
EVENT_BUS=${EVENT_BUS:-$PLUS_NAME-jobs}
EXECUTION_ROLE=${EXECUTION_ROLE:-$PLUS_NAME-task-execution}
TASK_ROLE=${TASK_ROLE:-$PLUS_NAME-task}
LAUNCHER_ROLE=${LAUNCHER_ROLE:-$PLUS_NAME-launcher}
SCHEDULER_ROLE=${SCHEDULER_ROLE:-$PLUS_NAME-scheduler}
PLUS_SCHEDULE_GROUP=${PLUS_SCHEDULE_GROUP:-$PLUS_NAME-worker}
SUBNETS=${SUBNETS:-}
SECURITY_GROUPS=${SECURITY_GROUPS:-}
TAGS_JSON=$(jq -nc --arg app "$PLUS_NAME" '[{Key: "app", Value: $app}]')

case $ASSIGN_PUBLIC_IP in ENABLED | DISABLED) ;; *) die "ASSIGN_PUBLIC_IP is \"$ASSIGN_PUBLIC_IP\": expected ENABLED or DISABLED" ;; esac
[[ $TASK_DEFINITION != *:* ]] || die "TASK_DEFINITION is \"$TASK_DEFINITION\": expected a family name (no revision or ARN); RunTask then uses the latest revision"

arn() { printf 'arn:%s:%s:%s:%s:%s' "$PARTITION" "$1" "$2" "$ACCOUNT_ID" "$3"; }
JOBS_ARN=$(arn dynamodb "$REGION" "table/$DYNAMO_TABLE")
STREAMS_ARN=$(arn dynamodb "$REGION" "table/$DYNAMO_STREAMS_TABLE")
BUCKET_ARN="arn:$PARTITION:s3:::$PRIMARY_BUCKET"
LOG_GROUP_ARN=$(arn logs "$REGION" "log-group:$LOG_GROUP")
LAMBDA_LOG_GROUP=/aws/lambda/$LAMBDA_FUNCTION
LAMBDA_LOG_GROUP_ARN=$(arn logs "$REGION" "log-group:$LAMBDA_LOG_GROUP")
REPO_ARN=$(arn ecr "$REGION" "repository/$ECR_REPOSITORY")
CLUSTER_ARN=$(arn ecs "$REGION" "cluster/$ECS_CLUSTER")
EVENT_BUS_ARN=$(arn events "$REGION" "event-bus/$EVENT_BUS")
PLUS_LAUNCHER_ARN=$(arn lambda "$REGION" "function:$LAMBDA_FUNCTION")
SCHEDULES_ARN=$(arn scheduler "$REGION" "schedule/$PLUS_SCHEDULE_GROUP/*")

log "account $ACCOUNT_ID, region $REGION${AWS_ENDPOINT_URL:+, endpoint $AWS_ENDPOINT_URL}, prefix $PLUS_NAME"

# ---------------------------------------------------------------- DynamoDB
ensure_jobs_table() {
  local desc
  if ! desc=$(aws_maybe ResourceNotFoundException dynamodb describe-table --table-name "$DYNAMO_TABLE"); then
    awsj dynamodb create-table --table-name "$DYNAMO_TABLE" \
      --billing-mode PAY_PER_REQUEST \
      --attribute-definitions AttributeName=object_id,AttributeType=S AttributeName=owner,AttributeType=S AttributeName=active,AttributeType=S \
      --key-schema AttributeName=object_id,KeyType=HASH \
      --global-secondary-indexes '[{"IndexName":"owner-index","KeySchema":[{"AttributeName":"owner","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}},{"IndexName":"active-index","KeySchema":[{"AttributeName":"active","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}]' \
      --tags "$TAGS_JSON" >/dev/null
    awsj dynamodb wait table-exists --table-name "$DYNAMO_TABLE"
    changed "dynamodb table $DYNAMO_TABLE (object_id; owner-index owner+object_id; active-index active+object_id, keys only)"
    return
  fi
  [[ $(jq -c '.Table.KeySchema' <<<"$desc") == '[{"AttributeName":"object_id","KeyType":"HASH"}]' ]] ||
    die "table $DYNAMO_TABLE exists with another key ($(jq -c .Table.KeySchema <<<"$desc")): DESIGN.md needs partition key object_id; choose another DYNAMO_TABLE"
  local index
  index=$(jq -c '[.Table.GlobalSecondaryIndexes[]? | select(.IndexName == "owner-index")][0] // empty' <<<"$desc")
  if [[ -z $index ]]; then
    awsj dynamodb update-table --table-name "$DYNAMO_TABLE" \
      --attribute-definitions AttributeName=object_id,AttributeType=S AttributeName=owner,AttributeType=S \
      --global-secondary-index-updates '[{"Create":{"IndexName":"owner-index","KeySchema":[{"AttributeName":"owner","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"ALL"}}}]' >/dev/null
    changed "dynamodb index $DYNAMO_TABLE/owner-index (being built; listing by owner works once it is ACTIVE)"
  elif [[ $(jq -c '[.KeySchema, .Projection.ProjectionType]' <<<"$index") != '[[{"AttributeName":"owner","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"ALL"]' ]]; then
    die "index $DYNAMO_TABLE/owner-index has another shape ($index): delete it and re-run, DESIGN.md needs owner + object_id, projection ALL"
  else
    same "dynamodb table $DYNAMO_TABLE with owner-index"
  fi
  # The sparse index the monitor reads unfinished jobs through (DESIGN.md,
  # Admission). DynamoDB builds one new index at a time: when owner-index
  # was just added, a re-run adds this one.
  desc=$(awsj dynamodb describe-table --table-name "$DYNAMO_TABLE")
  index=$(jq -c '[.Table.GlobalSecondaryIndexes[]? | select(.IndexName == "active-index")][0] // empty' <<<"$desc")
  if [[ -z $index ]]; then
    if jq -e '[.Table.GlobalSecondaryIndexes[]? | select(.IndexStatus == "CREATING")] | length > 0' <<<"$desc" >/dev/null; then
      log "dynamodb index $DYNAMO_TABLE/active-index waits for another index to be built: re-run scripts/setup.sh in a few minutes"
    else
      awsj dynamodb update-table --table-name "$DYNAMO_TABLE" \
        --attribute-definitions AttributeName=object_id,AttributeType=S AttributeName=active,AttributeType=S \
        --global-secondary-index-updates '[{"Create":{"IndexName":"active-index","KeySchema":[{"AttributeName":"active","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"Projection":{"ProjectionType":"KEYS_ONLY"}}}]' >/dev/null
      changed "dynamodb index $DYNAMO_TABLE/active-index (being built; jobs launched before it are not in it: the monitor sees them once they are written again)"
    fi
  elif [[ $(jq -c '[.KeySchema, .Projection.ProjectionType]' <<<"$index") != '[[{"AttributeName":"active","KeyType":"HASH"},{"AttributeName":"object_id","KeyType":"RANGE"}],"KEYS_ONLY"]' ]]; then
    die "index $DYNAMO_TABLE/active-index has another shape ($index): delete it and re-run, DESIGN.md needs active + object_id, keys only"
  else
    same "dynamodb table $DYNAMO_TABLE with active-index"
  fi
}

ensure_streams_table() {
  local desc ttl
  if ! desc=$(aws_maybe ResourceNotFoundException dynamodb describe-table --table-name "$DYNAMO_STREAMS_TABLE"); then
    awsj dynamodb create-table --table-name "$DYNAMO_STREAMS_TABLE" \
      --billing-mode PAY_PER_REQUEST \
      --attribute-definitions AttributeName=stream_id,AttributeType=S AttributeName=seq,AttributeType=N \
      --key-schema AttributeName=stream_id,KeyType=HASH AttributeName=seq,KeyType=RANGE \
      --tags "$TAGS_JSON" >/dev/null
    awsj dynamodb wait table-exists --table-name "$DYNAMO_STREAMS_TABLE"
    changed "dynamodb table $DYNAMO_STREAMS_TABLE (stream_id + seq)"
  else
    [[ $(jq -c '.Table.KeySchema' <<<"$desc") == '[{"AttributeName":"stream_id","KeyType":"HASH"},{"AttributeName":"seq","KeyType":"RANGE"}]' ]] ||
      die "table $DYNAMO_STREAMS_TABLE exists with another key ($(jq -c .Table.KeySchema <<<"$desc")): DESIGN.md needs stream_id + seq; choose another DYNAMO_STREAMS_TABLE"
    same "dynamodb table $DYNAMO_STREAMS_TABLE"
  fi
  ttl=$(awsj dynamodb describe-time-to-live --table-name "$DYNAMO_STREAMS_TABLE" |
    jq -r '.TimeToLiveDescription | "\(.TimeToLiveStatus) \(.AttributeName // "")"')
  case $ttl in
    "ENABLED expires_at" | "ENABLING expires_at") same "ttl on $DYNAMO_STREAMS_TABLE.expires_at" ;;
    DISABLED*)
      awsj dynamodb update-time-to-live --table-name "$DYNAMO_STREAMS_TABLE" \
        --time-to-live-specification Enabled=true,AttributeName=expires_at >/dev/null
      changed "ttl on $DYNAMO_STREAMS_TABLE.expires_at"
      ;;
    *) die "table $DYNAMO_STREAMS_TABLE has TTL \"$ttl\": disable it and re-run, DESIGN.md needs TTL on expires_at" ;;
  esac
}

# ---------------------------------------------------------------------- S3
ensure_bucket() {
  local err
  err=$(mktemp)
  if awsj s3api head-bucket --bucket "$PRIMARY_BUCKET" >/dev/null 2>"$err"; then
    same "s3 bucket $PRIMARY_BUCKET"
  elif grep -qE '\(404\)|Not Found|NoSuchBucket' "$err"; then
    if [[ $REGION == us-east-1 ]]; then
      awsj s3api create-bucket --bucket "$PRIMARY_BUCKET" >/dev/null
    else
      awsj s3api create-bucket --bucket "$PRIMARY_BUCKET" \
        --create-bucket-configuration "LocationConstraint=$REGION" >/dev/null
    fi
    awsj s3api wait bucket-exists --bucket "$PRIMARY_BUCKET"
    awsj s3api put-bucket-tagging --bucket "$PRIMARY_BUCKET" \
      --tagging "$(jq -nc --arg app "$PLUS_NAME" '{TagSet: [{Key: "app", Value: $app}]}')"
    changed "s3 bucket $PRIMARY_BUCKET"
  elif grep -qE '\(403\)|Forbidden' "$err"; then
    rm -f "$err"
    die "bucket $PRIMARY_BUCKET exists but belongs to another account (bucket names are global): set PRIMARY_BUCKET to another name"
  else
    cat "$err" >&2
    rm -f "$err"
    die "cannot read bucket $PRIMARY_BUCKET"
  fi
  rm -f "$err"

  local want have
  want='{"BlockPublicAcls":true,"BlockPublicPolicy":true,"IgnorePublicAcls":true,"RestrictPublicBuckets":true}'
  have=$(aws_maybe NoSuchPublicAccessBlockConfiguration s3api get-public-access-block --bucket "$PRIMARY_BUCKET" |
    jq -cS '.PublicAccessBlockConfiguration') || have=none
  if [[ $have == "$want" ]]; then
    same "s3 public access block on $PRIMARY_BUCKET"
  else
    awsj s3api put-public-access-block --bucket "$PRIMARY_BUCKET" --public-access-block-configuration "$want"
    changed "s3 public access block on $PRIMARY_BUCKET"
  fi

  have=$(aws_maybe ServerSideEncryptionConfigurationNotFoundError s3api get-bucket-encryption --bucket "$PRIMARY_BUCKET" |
    jq -r '.ServerSideEncryptionConfiguration.Rules[0].ApplyServerSideEncryptionByDefault.SSEAlgorithm // "none"') || have=none
  if [[ $have == AES256 || $have == aws:kms || $have == aws:kms:dsse ]]; then
    same "s3 default encryption ($have) on $PRIMARY_BUCKET"
  else
    awsj s3api put-bucket-encryption --bucket "$PRIMARY_BUCKET" \
      --server-side-encryption-configuration '{"Rules":[{"ApplyServerSideEncryptionByDefault":{"SSEAlgorithm":"AES256"},"BucketKeyEnabled":true}]}'
    changed "s3 default encryption (AES256) on $PRIMARY_BUCKET"
  fi

  have=$(aws_maybe OwnershipControlsNotFoundError s3api get-bucket-ownership-controls --bucket "$PRIMARY_BUCKET" |
    jq -r '.OwnershipControls.Rules[0].ObjectOwnership // "none"') || have=none
  if [[ $have == BucketOwnerEnforced ]]; then
    same "s3 object ownership (ACLs off) on $PRIMARY_BUCKET"
  else
    awsj s3api put-bucket-ownership-controls --bucket "$PRIMARY_BUCKET" \
      --ownership-controls '{"Rules":[{"ObjectOwnership":"BucketOwnerEnforced"}]}'
    changed "s3 object ownership (ACLs off) on $PRIMARY_BUCKET"
  fi
}

# --------------------------------------------------------------------- ECR
ensure_repository() {
  local desc want have
  if ! desc=$(aws_maybe RepositoryNotFoundException ecr describe-repositories --repository-names "$ECR_REPOSITORY"); then
    desc=$(awsj ecr create-repository --repository-name "$ECR_REPOSITORY" \
      --image-scanning-configuration scanOnPush=true \
      --tags "$TAGS_JSON" | jq '{repositories: [.repository]}')
    changed "ecr repository $ECR_REPOSITORY"
  else
    same "ecr repository $ECR_REPOSITORY"
  fi
  ECR_REPOSITORY_URI=$(jq -r '.repositories[0].repositoryUri' <<<"$desc")
  want='{"rules":[{"action":{"type":"expire"},"description":"keep the 20 newest images","rulePriority":1,"selection":{"countNumber":20,"countType":"imageCountMoreThan","tagStatus":"any"}}]}'
  have=$(aws_maybe LifecyclePolicyNotFoundException ecr get-lifecycle-policy --repository-name "$ECR_REPOSITORY" |
    jq -r '.lifecyclePolicyText' | canon) || have=none
  if [[ $have == "$want" ]]; then
    same "ecr lifecycle policy (keep 20 images)"
  else
    awsj ecr put-lifecycle-policy --repository-name "$ECR_REPOSITORY" --lifecycle-policy-text "$want" >/dev/null
    changed "ecr lifecycle policy (keep 20 images)"
  fi
}

# -------------------------------------------------------------------- Logs
ensure_log_group() {
  local name=$1 have
  have=$(awsj logs describe-log-groups --log-group-name-prefix "$name" |
    jq -r --arg n "$name" '[.logGroups[] | select(.logGroupName == $n)][0] | if . == null then "missing" else (.retentionInDays // "never") end')
  if [[ $have == missing ]]; then
    awsj logs create-log-group --log-group-name "$name" --tags "app=$PLUS_NAME"
    changed "log group $name"
  fi
  if [[ $have == "$LOG_RETENTION_DAYS" ]]; then
    same "log group $name (retention $LOG_RETENTION_DAYS days)"
  else
    awsj logs put-retention-policy --log-group-name "$name" --retention-in-days "$LOG_RETENTION_DAYS"
    changed "log retention $LOG_RETENTION_DAYS days on $name"
  fi
}

# --------------------------------------------------------------------- ECS
ensure_cluster() {
  local desc status
  desc=$(awsj ecs describe-clusters --clusters "$ECS_CLUSTER")
  status=$(jq -r '.clusters[0].status // "MISSING"' <<<"$desc")
  if [[ $status != ACTIVE ]]; then
    awsj ecs create-cluster --cluster-name "$ECS_CLUSTER" \
      --capacity-providers FARGATE FARGATE_SPOT \
      --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1 \
      --tags "key=app,value=$PLUS_NAME" >/dev/null
    changed "ecs cluster $ECS_CLUSTER (FARGATE, FARGATE_SPOT)"
  elif [[ $(jq -c '.clusters[0].capacityProviders | sort' <<<"$desc") != '["FARGATE","FARGATE_SPOT"]' ]]; then
    awsj ecs put-cluster-capacity-providers --cluster "$ECS_CLUSTER" \
      --capacity-providers FARGATE FARGATE_SPOT \
      --default-capacity-provider-strategy capacityProvider=FARGATE,weight=1 >/dev/null
    changed "ecs capacity providers FARGATE, FARGATE_SPOT on $ECS_CLUSTER"
  else
    same "ecs cluster $ECS_CLUSTER (FARGATE, FARGATE_SPOT)"
  fi
}

# --------------------------------------------------------------------- IAM
# ensure_role NAME TRUST_JSON POLICY_NAME POLICY_JSON: the role with exactly
# this trust policy and this one inline policy. Sets ROLE_ARN.
ensure_role() {
  local name=$1 trust=$2 policy_name=$3 policy=$4 desc have
  if ! desc=$(aws_maybe NoSuchEntity iam get-role --role-name "$name"); then
    desc=$(awsj iam create-role --role-name "$name" --assume-role-policy-document "$trust" \
      --description "plus-worker ($PLUS_NAME): managed by scripts/setup.sh" --tags "$TAGS_JSON")
    changed "iam role $name"
  elif [[ $(jq -r '.Role.AssumeRolePolicyDocument | if type == "string" then (. | fromjson) else . end' <<<"$desc" | canon) != "$(canon <<<"$trust")" ]]; then
    awsj iam update-assume-role-policy --role-name "$name" --policy-document "$trust"
    changed "iam trust policy of $name"
  else
    same "iam role $name"
  fi
  ROLE_ARN=$(jq -r '.Role.Arn' <<<"$desc")
  have=$(aws_maybe NoSuchEntity iam get-role-policy --role-name "$name" --policy-name "$policy_name" |
    jq -r '.PolicyDocument | if type == "string" then (. | fromjson) else . end' | canon) || have=none
  if [[ $have == "$(canon <<<"$policy")" ]]; then
    same "iam policy $name/$policy_name"
  else
    awsj iam put-role-policy --role-name "$name" --policy-name "$policy_name" --policy-document "$policy"
    changed "iam policy $name/$policy_name"
  fi
}

ensure_roles() {
  local ecs_trust task_trust lambda_trust scheduler_trust policy
  ecs_trust=$(jq -nc '{Version: "2012-10-17", Statement: [{Effect: "Allow", Principal: {Service: "ecs-tasks.amazonaws.com"}, Action: "sts:AssumeRole"}]}')
  task_trust=$(jq -nc --arg account "$ACCOUNT_ID" --arg source "$(arn ecs "$REGION" '*')" \
    '{Version: "2012-10-17", Statement: [{Effect: "Allow", Principal: {Service: "ecs-tasks.amazonaws.com"}, Action: "sts:AssumeRole",
      Condition: {StringEquals: {"aws:SourceAccount": $account}, ArnLike: {"aws:SourceArn": $source}}}]}')
  lambda_trust=$(jq -nc '{Version: "2012-10-17", Statement: [{Effect: "Allow", Principal: {Service: "lambda.amazonaws.com"}, Action: "sts:AssumeRole"}]}')
  scheduler_trust=$(jq -nc --arg account "$ACCOUNT_ID" \
    '{Version: "2012-10-17", Statement: [{Effect: "Allow", Principal: {Service: "scheduler.amazonaws.com"}, Action: "sts:AssumeRole",
      Condition: {StringEquals: {"aws:SourceAccount": $account}}}]}')

  # What ECS itself needs to start the task: pull this repository's image and
  # write to this log group.
  policy=$(jq -nc --arg repo "$REPO_ARN" --arg logs "$LOG_GROUP_ARN" \
    '{Version: "2012-10-17", Statement: [
      {Sid: "EcrToken", Effect: "Allow", Action: "ecr:GetAuthorizationToken", Resource: "*"},
      {Sid: "PullWorkerImage", Effect: "Allow", Action: ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], Resource: $repo},
      {Sid: "WriteLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: "\($logs):log-stream:*"}]}')
  ensure_role "$EXECUTION_ROLE" "$ecs_trust" pull-and-log "$policy"
  EXECUTION_ROLE_ARN=$ROLE_ARN

  # What the worker does, on exactly these resources, and nothing else. Job
  # secrets: read access to secret:plus/* and parameter/plus/* only; the
  # worker itself refuses any prefix but the job user's own plus/USER/.
  policy=$(jq -nc --arg jobs "$JOBS_ARN" --arg streams "$STREAMS_ARN" --arg bucket "$BUCKET_ARN" \
    --arg secrets "$(arn secretsmanager "$REGION" 'secret:plus/*')" --arg params "$(arn ssm "$REGION" 'parameter/plus/*')" \
    --arg bus "$EVENT_BUS_ARN" \
    '{Version: "2012-10-17", Statement: [
      {Sid: "JobRecordsAndEvents", Effect: "Allow",
       Action: ["dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
       Resource: [$jobs, "\($jobs)/index/owner-index", $streams]},
      {Sid: "JobFiles", Effect: "Allow",
       Action: ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
       Resource: "\($bucket)/jobs/*"},
      {Sid: "ListJobFiles", Effect: "Allow", Action: "s3:ListBucket", Resource: $bucket,
       Condition: {StringLike: {"s3:prefix": ["jobs/*"]}}},
      {Sid: "JobSecrets", Effect: "Allow", Action: "secretsmanager:GetSecretValue", Resource: $secrets},
      {Sid: "JobParameters", Effect: "Allow", Action: "ssm:GetParameter", Resource: $params},
      {Sid: "PublishJobStateChanges", Effect: "Allow", Action: "events:PutEvents", Resource: $bus}]}')
  ensure_role "$TASK_ROLE" "$task_trust" worker "$policy"
  TASK_ROLE_ARN=$ROLE_ARN

  # EventBridge Scheduler's role for the schedules' target: invoke the
  # launcher Lambda, nothing else, and only for schedules of this account.
  policy=$(jq -nc --arg function "$PLUS_LAUNCHER_ARN" \
    '{Version: "2012-10-17", Statement: [
      {Sid: "InvokeLauncher", Effect: "Allow", Action: "lambda:InvokeFunction", Resource: [$function, "\($function):*"]}]}')
  ensure_role "$SCHEDULER_ROLE" "$scheduler_trust" invoke-launcher "$policy"
  PLUS_SCHEDULER_ROLE_ARN=$ROLE_ARN

  # The launcher Lambda: the job records and files, RunTask of this task
  # definition on this cluster (passing exactly the two roles above), and
  # its own logs. FindActiveJobs is the monitor's pass over the jobs table
  # ({"op": "monitor"} on a schedule). PerJobImages lets a job ask for another image: the
  # launcher then registers a copy of the task definition (family
  # plus-worker-HASH) with that image; ECS cannot scope those two actions to
  # a resource, and PassRole still limits such copies to the two roles.
  policy=$(jq -nc --arg jobs "$JOBS_ARN" --arg streams "$STREAMS_ARN" --arg bucket "$BUCKET_ARN" \
    --arg taskdef "$(arn ecs "$REGION" "task-definition/$TASK_DEFINITION"):*" \
    --arg image_taskdefs "$(arn ecs "$REGION" "task-definition/plus-worker-*"):*" \
    --arg tasks "$(arn ecs "$REGION" "task/$ECS_CLUSTER")/*" --arg cluster "$CLUSTER_ARN" \
    --arg task_role "$TASK_ROLE_ARN" --arg exec_role "$EXECUTION_ROLE_ARN" --arg logs "$LAMBDA_LOG_GROUP_ARN" \
    --arg bus "$EVENT_BUS_ARN" \
    --arg schedules "$SCHEDULES_ARN" --arg scheduler_role "$PLUS_SCHEDULER_ROLE_ARN" \
    '{Version: "2012-10-17", Statement: [
      {Sid: "JobRecordsAndEvents", Effect: "Allow",
       Action: ["dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
       Resource: [$jobs, "\($jobs)/index/owner-index", $streams]},
      {Sid: "Schedules", Effect: "Allow",
       Action: ["scheduler:CreateSchedule", "scheduler:DeleteSchedule", "scheduler:GetSchedule", "scheduler:UpdateSchedule"],
       Resource: $schedules},
      {Sid: "ListSchedules", Effect: "Allow", Action: "scheduler:ListSchedules", Resource: "*"},
      {Sid: "PassSchedulerRole", Effect: "Allow", Action: "iam:PassRole", Resource: $scheduler_role,
       Condition: {StringEquals: {"iam:PassedToService": "scheduler.amazonaws.com"}}},
      {Sid: "ScheduleScripts", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject"], Resource: "\($bucket)/schedules/*"},
      {Sid: "FindActiveJobs", Effect: "Allow", Action: ["dynamodb:Query", "dynamodb:BatchGetItem"],
       Resource: [$jobs, "\($jobs)/index/active-index"]},
      {Sid: "JobFiles", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject"], Resource: "\($bucket)/jobs/*"},
      {Sid: "ListJobFiles", Effect: "Allow", Action: "s3:ListBucket", Resource: $bucket,
       Condition: {StringLike: {"s3:prefix": ["jobs/*"]}}},
      {Sid: "RunWorkerTasks", Effect: "Allow", Action: "ecs:RunTask", Resource: [$taskdef, $image_taskdefs],
       Condition: {ArnEquals: {"ecs:cluster": $cluster}}},
      {Sid: "PerJobImages", Effect: "Allow", Action: ["ecs:DescribeTaskDefinition", "ecs:RegisterTaskDefinition"], Resource: "*"},
      {Sid: "WatchWorkerTasks", Effect: "Allow", Action: ["ecs:DescribeTasks", "ecs:StopTask"], Resource: $tasks},
      {Sid: "ReadVcpuQuota", Effect: "Allow", Action: "servicequotas:GetServiceQuota", Resource: "*"},
      {Sid: "PublishJobStateChanges", Effect: "Allow", Action: "events:PutEvents", Resource: $bus},
      {Sid: "TagWorkerTasks", Effect: "Allow", Action: "ecs:TagResource", Resource: $tasks,
       Condition: {StringEquals: {"ecs:CreateAction": "RunTask"}}},
      {Sid: "PassWorkerRoles", Effect: "Allow", Action: "iam:PassRole", Resource: [$task_role, $exec_role],
       Condition: {StringEquals: {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}},
      {Sid: "WriteLogs", Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents"], Resource: "\($logs):log-stream:*"}]}')
  ensure_role "$LAUNCHER_ROLE" "$lambda_trust" launcher "$policy"
  LAUNCHER_ROLE_ARN=$ROLE_ARN
}

# ----------------------------------------------------------------- Network
ensure_network() {
  local vpc sg
  if [[ -n $SUBNETS && -n $SECURITY_GROUPS ]]; then
    same "network: subnets $SUBNETS, security groups $SECURITY_GROUPS (given)"
    return
  fi
  vpc=$(awsj ec2 describe-vpcs --filters Name=is-default,Values=true | jq -r '.Vpcs[0].VpcId // empty')
  [[ -n $vpc ]] || die "this region has no default VPC: set SUBNETS and SECURITY_GROUPS (comma-separated ids) in $ENV_FILE"
  if [[ -z $SUBNETS ]]; then
    SUBNETS=$(awsj ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc" Name=default-for-az,Values=true |
      jq -r '[.Subnets[].SubnetId] | sort | join(",")')
    [[ -n $SUBNETS ]] || die "the default VPC $vpc has no default subnets: set SUBNETS in $ENV_FILE"
    same "network: default VPC $vpc, subnets $SUBNETS"
  fi
  if [[ -z $SECURITY_GROUPS ]]; then
    local group=$PLUS_NAME-worker
    sg=$(awsj ec2 describe-security-groups --filters "Name=vpc-id,Values=$vpc" "Name=group-name,Values=$group" |
      jq -r '.SecurityGroups[0].GroupId // empty')
    if [[ -z $sg ]]; then
      sg=$(awsj ec2 create-security-group --group-name "$group" --vpc-id "$vpc" \
        --description "plus-worker tasks: no inbound, outbound to AWS APIs and image pulls" | jq -r .GroupId)
      changed "security group $group ($sg): no inbound rules"
    else
      same "security group $group ($sg)"
    fi
    SECURITY_GROUPS=$sg
  fi
}

# --------------------------------------------------------- Task definition
# The fields this script manages, in a form that compares equal whether it
# comes from our JSON or from DescribeTaskDefinition.
TASKDEF_VIEW='{family, taskRoleArn, executionRoleArn, networkMode, cpu, memory, runtimePlatform,
  requiresCompatibilities: (.requiresCompatibilities | sort),
  containers: [.containerDefinitions[] | {name, image, essential, stopTimeout, memoryReservation,
    init: .linuxParameters.initProcessEnabled, environment: ((.environment // []) | sort_by(.name)),
    logConfiguration}]}'

ensure_task_definition() {
  local current image desired
  current=$(aws_maybe 'ClientException|Unable to describe task definition|not found' \
    ecs describe-task-definition --task-definition "$TASK_DEFINITION") || current=""
  image=${IMAGE:-}
  if [[ -z $image && -n $current ]]; then
    image=$(jq -r --arg c "$CONTAINER_NAME" '.taskDefinition.containerDefinitions[] | select(.name == $c) | .image' <<<"$current")
  fi
  image=${image:-$ECR_REPOSITORY_URI:latest}
  # memoryReservation is a soft reservation, not a cap, so a RunTask
  # override of the task's memory still applies in full (the AWS emulator
  # the tests use needs a container-level figure to place the task).
  desired=$(jq -n --arg family "$TASK_DEFINITION" --arg task_role "$TASK_ROLE_ARN" --arg exec_role "$EXECUTION_ROLE_ARN" \
    --arg cpu "$TASK_CPU" --arg memory "$TASK_MEMORY" --arg name "$CONTAINER_NAME" --arg image "$image" \
    --arg region "$REGION" --arg group "$LOG_GROUP" --arg table "$DYNAMO_TABLE" --arg streams "$DYNAMO_STREAMS_TABLE" \
    --arg bucket "$PRIMARY_BUCKET" --arg grace "$PLUS_GRACE_SECONDS" --arg bus "$EVENT_BUS" \
    '{family: $family, taskRoleArn: $task_role, executionRoleArn: $exec_role, networkMode: "awsvpc",
      requiresCompatibilities: ["FARGATE"], cpu: $cpu, memory: $memory,
      runtimePlatform: {cpuArchitecture: "X86_64", operatingSystemFamily: "LINUX"},
      containerDefinitions: [{name: $name, image: $image, essential: true, stopTimeout: 120,
        memoryReservation: 128,
        linuxParameters: {initProcessEnabled: true},
        environment: [
          {name: "REGION", value: $region}, {name: "DYNAMO_TABLE", value: $table},
          {name: "DYNAMO_STREAMS_TABLE", value: $streams}, {name: "PRIMARY_BUCKET", value: $bucket},
          {name: "PLUS_GRACE_SECONDS", value: $grace}, {name: "EVENT_BUS", value: $bus}] | sort_by(.name),
        logConfiguration: {logDriver: "awslogs", options: {"awslogs-group": $group, "awslogs-region": $region, "awslogs-stream-prefix": "worker"}}}]}')
  if [[ -n $current ]] && [[ $(jq "$TASKDEF_VIEW" <<<"$desired" | canon) == "$(jq ".taskDefinition | $TASKDEF_VIEW" <<<"$current" | canon)" ]]; then
    same "ecs task definition $(jq -r '.taskDefinition | "\(.family):\(.revision)"' <<<"$current") ($image)"
    return
  fi
  local revision
  revision=$(awsj ecs register-task-definition --cli-input-json "$desired" \
    --tags "key=app,value=$PLUS_NAME" | jq -r '.taskDefinition.revision')
  changed "ecs task definition $TASK_DEFINITION:$revision ($image)"
}

# -------------------------------------------------------------- ECS events
# The rule that hands each stopped task of this cluster started by the
# launcher to the launcher Lambda, which settles its job at once (README,
# "Settling from ECS events"); the scheduled monitor stays the safety net.
# The Lambda's permission is added here when the function exists, else by
# deploy.sh when it creates it.
ensure_ecs_events_rule() {
  local rule=$PLUS_NAME-task-stopped pattern current target function_arn
  pattern=$(jq -nc --arg cluster "$CLUSTER_ARN" \
    '{source: ["aws.ecs"], "detail-type": ["ECS Task State Change"],
      detail: {clusterArn: [$cluster], lastStatus: ["STOPPED"], startedBy: ["plus-launcher"]}}')
  current=$(aws_maybe ResourceNotFoundException events describe-rule --name "$rule") || current=""
  if [[ -n $current ]] && [[ $(jq -r '.EventPattern' <<<"$current" | canon) == "$(canon <<<"$pattern")" ]] &&
    [[ $(jq -r .State <<<"$current") == ENABLED ]]; then
    same "events rule $rule (stopped tasks of $ECS_CLUSTER)"
  else
    awsj events put-rule --name "$rule" --event-pattern "$pattern" --state ENABLED \
      --description "plus-worker: stopped tasks of $ECS_CLUSTER, to the launcher" --tags "Key=app,Value=$PLUS_NAME" >/dev/null
    changed "events rule $rule (stopped tasks of $ECS_CLUSTER)"
  fi
  ECS_EVENTS_RULE_ARN=$(arn events "$REGION" "rule/$rule")
  function_arn=$(arn lambda "$REGION" "function:$LAMBDA_FUNCTION")
  target=$(awsj events list-targets-by-rule --rule "$rule" | jq -r --arg f "$function_arn" '[.Targets[] | select(.Id == "launcher" and .Arn == $f)] | length')
  if [[ $target == 1 ]]; then
    same "events target launcher -> $LAMBDA_FUNCTION"
  else
    awsj events put-targets --rule "$rule" --targets "Id=launcher,Arn=$function_arn" >/dev/null
    changed "events target launcher -> $LAMBDA_FUNCTION"
  fi
  if aws_maybe ResourceNotFoundException lambda get-function --function-name "$LAMBDA_FUNCTION" >/dev/null; then
    ensure_events_permission "$LAMBDA_FUNCTION" "$ECS_EVENTS_RULE_ARN"
  fi
}

# The bus every status change of a job is published to (README, "Job
# events"): subscribe with a rule on source plus-worker.
ensure_event_bus() {
  if aws_maybe ResourceNotFoundException events describe-event-bus --name "$EVENT_BUS" >/dev/null; then
    same "events bus $EVENT_BUS"
  else
    awsj events create-event-bus --name "$EVENT_BUS" --tags "Key=app,Value=$PLUS_NAME" >/dev/null
    changed "events bus $EVENT_BUS"
  fi
}

# --------------------------------------------------------------- Schedules
# The EventBridge Scheduler group every schedule of `plus schedule create`
# lives in (README, "Schedules").
ensure_schedule_group() {
  if aws_maybe ResourceNotFoundException scheduler get-schedule-group --name "$PLUS_SCHEDULE_GROUP" >/dev/null; then
    same "scheduler schedule group $PLUS_SCHEDULE_GROUP"
  else
    awsj scheduler create-schedule-group --name "$PLUS_SCHEDULE_GROUP" --tags "Key=app,Value=$PLUS_NAME" >/dev/null
    changed "scheduler schedule group $PLUS_SCHEDULE_GROUP"
  fi
}

# -------------------------------------------------------------------- main
log "DynamoDB"
ensure_jobs_table
ensure_streams_table
log "S3"
ensure_bucket
log "ECR"
ensure_repository
log "CloudWatch Logs"
ensure_log_group "$LOG_GROUP"
ensure_log_group "$LAMBDA_LOG_GROUP"
log "ECS cluster"
ensure_cluster
log "IAM"
ensure_roles
log "Network"
ensure_network
log "Task definition"
ensure_task_definition
log "ECS events"
ensure_ecs_events_rule
log "Job events"
ensure_event_bus
log "Schedules"
ensure_schedule_group

for pair in REGION="$REGION" PLUS_NAME="$PLUS_NAME" DYNAMO_TABLE="$DYNAMO_TABLE" \
  DYNAMO_STREAMS_TABLE="$DYNAMO_STREAMS_TABLE" PRIMARY_BUCKET="$PRIMARY_BUCKET" \
  ECS_CLUSTER="$ECS_CLUSTER" TASK_DEFINITION="$TASK_DEFINITION" CONTAINER_NAME="$CONTAINER_NAME" \
  SUBNETS="$SUBNETS" SECURITY_GROUPS="$SECURITY_GROUPS" ASSIGN_PUBLIC_IP="$ASSIGN_PUBLIC_IP" \
  ECR_REPOSITORY="$ECR_REPOSITORY" ECR_REPOSITORY_URI="$ECR_REPOSITORY_URI" LOG_GROUP="$LOG_GROUP" \
  TASK_ROLE_ARN="$TASK_ROLE_ARN" EXECUTION_ROLE_ARN="$EXECUTION_ROLE_ARN" \
  LAUNCHER_ROLE_ARN="$LAUNCHER_ROLE_ARN" LAMBDA_FUNCTION="$LAMBDA_FUNCTION" \
  ECS_EVENTS_RULE_ARN="$ECS_EVENTS_RULE_ARN" EVENT_BUS="$EVENT_BUS" PLUS_SCHEDULE_GROUP="$PLUS_SCHEDULE_GROUP" \
  PLUS_SCHEDULER_ROLE_ARN="$PLUS_SCHEDULER_ROLE_ARN" PLUS_LAUNCHER_ARN="$PLUS_LAUNCHER_ARN"; do
  env_set "$ENV_FILE" "${pair%%=*}" "${pair#*=}"
done

log "setup.sh: $CHANGES change(s); settings in $ENV_FILE"
