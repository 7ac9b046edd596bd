#!/usr/bin/env python3
"""The comparison launcher for the launch benchmark: what `plus launch
--backend aws` does, in Python with boto3: a conditional PutItem of the job
record, then RunTask with the worker's environment as overrides."""
import json
import os
import sys
import uuid
from datetime import datetime, timezone

import boto3


def main():
    env = os.environ
    kw = dict(region_name=env["AWS_REGION"], endpoint_url=env.get("AWS_ENDPOINT_URL"))
    ddb, ecs = boto3.client("dynamodb", **kw), boto3.client("ecs", **kw)
    job_id = str(uuid.uuid4())
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    source = open(sys.argv[1]).read()
    ddb.put_item(
        TableName=env["DYNAMO_TABLE"],
        Item={"object_id": {"S": job_id}, "object_type": {"S": "PlusScriptJob"}, "owner": {"S": "bench/jobs"},
              "username": {"S": "bench"}, "status": {"S": "INITIALIZING"}, "run_mode": {"S": "RUN_SCRIPT"},
              "script": {"M": {"source": {"S": source}}}, "created_at": {"S": now}, "updated_at": {"S": now},
              "attempt": {"N": "1"}},
        ConditionExpression="attribute_not_exists(object_id)",
    )
    environment = [{"name": k, "value": v} for k, v in [
        ("RUN_MODE", "RUN_SCRIPT"), ("JOB_ID", job_id), ("USERNAME", "bench"), ("REGION", env["AWS_REGION"]),
        ("DYNAMO_TABLE", env["DYNAMO_TABLE"]), ("DYNAMO_STREAMS_TABLE", env["DYNAMO_STREAMS_TABLE"]),
        ("PRIMARY_BUCKET", env["PRIMARY_BUCKET"])]]
    out = ecs.run_task(
        cluster=env["ECS_CLUSTER"], taskDefinition=env["TASK_DEFINITION"], count=1, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": env["SUBNETS"].split(","),
                                                      "securityGroups": env["SECURITY_GROUPS"].split(","),
                                                      "assignPublicIp": "DISABLED"}},
        overrides={"containerOverrides": [{"name": "worker", "environment": environment}]},
        startedBy="plus-launcher", clientToken=job_id,
    )
    print(json.dumps({"job_id": job_id, "task": out["tasks"][0]["taskArn"]}))


if __name__ == "__main__":
    main()
