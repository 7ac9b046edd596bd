#!/usr/bin/env python3
"""The comparison worker for the lifecycle benchmark: the same steps as
plus-worker (claim the job with one conditional write that also returns
it, run its script, write its output events, store its log in S3, record
the end with the log's key), in Python with boto3. Reads the same
environment variables as plus-worker."""
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

import boto3


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main():
    env = os.environ
    ddb = boto3.client(
        "dynamodb",
        region_name=env["REGION"],
        endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=env.get("ACCESS_KEY"),
        aws_secret_access_key=env.get("SECRET_KEY"),
    )
    s3 = boto3.client(
        "s3",
        region_name=env["REGION"],
        endpoint_url=env.get("AWS_ENDPOINT_URL"),
        aws_access_key_id=env.get("ACCESS_KEY"),
        aws_secret_access_key=env.get("SECRET_KEY"),
    )
    table, streams, job_id = env["DYNAMO_TABLE"], env["DYNAMO_STREAMS_TABLE"], env["JOB_ID"]
    lease = f"local:{os.uname().nodename}:{os.getpid()}"
    try:
        item = ddb.update_item(
            TableName=table,
            Key={"object_id": {"S": job_id}},
            UpdateExpression="SET #s = :r, lease = :l, started_at = :t, updated_at = :t, heartbeat_at = :t",
            ConditionExpression="#s = :i AND username = :u",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":r": {"S": "RUNNING"}, ":i": {"S": "INITIALIZING"}, ":l": {"S": lease},
                                       ":t": {"S": now()}, ":u": {"S": env["USERNAME"]}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
    except ddb.exceptions.ConditionalCheckFailedException:
        sys.exit(3)
    source = item["script"]["M"]["source"]["S"]
    with tempfile.TemporaryDirectory() as work:
        path = os.path.join(work, "script")
        with open(path, "w") as f:
            f.write(source)
        proc = subprocess.run(["/bin/sh", path], cwd=work, capture_output=True, env={"PATH": env.get("PATH", "")})
    seq = int(time.time() * 1e6)
    ddb.batch_write_item(RequestItems={streams: [
        {"PutRequest": {"Item": {"stream_id": {"S": job_id}, "seq": {"N": str(seq)}, "kind": {"S": "stdout"},
                                 "at": {"S": now()}, "data": {"S": proc.stdout.decode(errors="replace")},
                                 "expires_at": {"N": str(int(time.time()) + 86400)}}}},
    ]})
    log_key = f"jobs/{job_id}/log.txt"
    s3.put_object(Bucket=env["PRIMARY_BUCKET"], Key=log_key, Body=proc.stdout + proc.stderr)
    status = "SUCCEEDED" if proc.returncode == 0 else "FAILED"
    ddb.update_item(
        TableName=table,
        Key={"object_id": {"S": job_id}},
        UpdateExpression="SET #s = :s, exit_code = :c, completed_at = :t, updated_at = :t, log_key = :k REMOVE active",
        ConditionExpression="#s = :r AND lease = :l",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}, ":r": {"S": "RUNNING"}, ":l": {"S": lease},
                                   ":c": {"N": str(proc.returncode)}, ":t": {"S": now()}, ":k": {"S": log_key}},
    )
    print(json.dumps({"status": status}))
    sys.exit(0 if status == "SUCCEEDED" else 1)


if __name__ == "__main__":
    main()
