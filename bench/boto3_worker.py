#!/usr/bin/env python3
"""The comparison worker for the lifecycle benchmark: the same steps as
plus-worker (load the job, claim it with a conditional write, run its
script, write its output events, record the end), in Python with boto3.
Reads the same environment variables as plus-worker."""
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
    table, streams, job_id = env["DYNAMO_TABLE"], env["DYNAMO_STREAMS_TABLE"], env["JOB_ID"]
    item = ddb.get_item(TableName=table, Key={"object_id": {"S": job_id}}, ConsistentRead=True).get("Item")
    if item is None:
        sys.exit(3)
    lease = f"local:{os.uname().nodename}:{os.getpid()}"
    ddb.update_item(
        TableName=table,
        Key={"object_id": {"S": job_id}},
        UpdateExpression="SET #s = :r, lease = :l, started_at = :t, updated_at = :t",
        ConditionExpression="#s = :i",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":r": {"S": "RUNNING"}, ":i": {"S": "INITIALIZING"}, ":l": {"S": lease}, ":t": {"S": now()}},
    )
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
    status = "SUCCEEDED" if proc.returncode == 0 else "FAILED"
    ddb.update_item(
        TableName=table,
        Key={"object_id": {"S": job_id}},
        UpdateExpression="SET #s = :s, exit_code = :c, completed_at = :t, updated_at = :t",
        ConditionExpression="#s = :r AND lease = :l",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}, ":r": {"S": "RUNNING"}, ":l": {"S": lease},
                                   ":c": {"N": str(proc.returncode)}, ":t": {"S": now()}},
    )
    print(json.dumps({"status": status}))
    sys.exit(0 if status == "SUCCEEDED" else 1)


if __name__ == "__main__":
    main()
