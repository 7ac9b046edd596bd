#!/usr/bin/env python3
"""Collections benchmark: items/s and peak RSS of the plus-worker binary for
RUN_COLLECTION (per-item and streaming modes) on the local store and on
moto_server, beside a Python/boto3 (or sqlite3) loop that queries the same
items and runs the same script per item. Run through scripts/bench-collection.sh.

Peak RSS is the worker process's own maximum resident set, as GNU time
reports it (see run_worker).
"""
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUS = os.path.join(ROOT, "target", "release", "plus")
WORKER = os.path.join(ROOT, "target", "release", "plus-worker")
TIME = "/usr/bin/time"
SIZES = [int(s) for s in os.environ.get("SIZES", "1000,10000,100000").split(",")]
PY_MAX = int(os.environ.get("PY_MAX", "10000"))
CONCURRENCY = os.environ.get("PLUS_CONCURRENCY", "")
# The scripts. Per-item: a no-op (`:`), and one that reads its stdin
# (`cat`, a second process per item). Streaming: a no-op that answers `{}`
# per line, flushing each answer (awk), and `sed -u`, which reads its input
# one byte per system call (shown for scale: the script, not the worker,
# is then the limit).
NOOP = "#!/bin/sh\n:\n"
CAT = "#!/bin/sh\ncat >/dev/null\n"
STREAM = "#!/bin/sh\nexec awk '{ print \"{}\"; fflush() }'\n"
SED = "#!/bin/sh\nexec sed -u 's/.*/{}/'\n"
VARIANTS = [
    ("per-item, no-op", NOOP, False),
    ("per-item, cat", CAT, False),
    ("streaming, awk", STREAM, True),
    ("streaming, sed -u", SED, True),
]
OWNER = "bench/collections/c{n}"


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def job_record(job_id, owner, source, streaming):
    return {
        "object_id": job_id,
        "object_type": "PlusScriptJob",
        "owner": "bench/jobs",
        "username": "bench",
        "status": "INITIALIZING",
        "run_mode": "RUN_COLLECTION",
        "script": {"source": source, "streaming": streaming},
        "collection_owner": owner,
        "attempt": 1,
        "created_at": now(),
        "updated_at": now(),
    }


def run_worker(env):
    """Runs the worker to its end; returns (seconds, peak RSS MiB).

    The peak RSS comes from GNU time, which forks the worker from its own
    small process. Asking the kernel directly (wait4 or getrusage from this
    script) would not do: a child started from Python begins with Python's
    high-water mark, because exec records the old memory's peak."""
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} (GNU time) is needed for the peak RSS: apt-get install time")
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        start = time.monotonic()
        p = subprocess.run([TIME, "-f", "%M", "-o", out.name, WORKER], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        took = time.monotonic() - start
        if p.returncode != 0:
            sys.exit(f"the worker failed ({p.returncode}): {p.stderr.decode()[-2000:]}")
        rss_kib = int(out.read().strip().splitlines()[-1])
    return took, rss_kib / 1024


def worker_env(base, job_id, owner):
    env = dict(base)
    env.update(
        RUN_MODE="RUN_COLLECTION",
        JOB_ID=job_id,
        USERNAME="bench",
        COLLECTION_OWNER=owner,
        PATH=os.environ["PATH"],
        RUST_LOG="warn",
    )
    if CONCURRENCY:
        env["PLUS_CONCURRENCY"] = CONCURRENCY
    return env


def python_loop(items, script_path):
    """The baseline: for each item (already paged by the caller), run the
    same script with the item on stdin, one after another."""
    ok = 0
    for item in items:
        body = json.dumps(item).encode() + b"\n"
        env = {"PATH": os.environ["PATH"], "PLUS_ITEM_ID": item["object_id"]}
        r = subprocess.run([script_path], input=body, env=env, stdout=subprocess.DEVNULL)
        ok += r.returncode == 0
    return ok


# ---------------------------------------------------------------- local


def script_files(dir):
    """The per-item scripts as files, for the Python loop."""
    files = []
    for name, source in (("no-op", NOOP), ("cat", CAT)):
        path = os.path.join(dir, f"{name}.sh")
        with open(path, "w") as f:
            f.write(source)
        os.chmod(path, 0o755)
        files.append((name, path))
    return files


def local_bench(rows):
    home = tempfile.mkdtemp(prefix="plus-bench-")
    scripts = script_files(home)
    db = os.path.join(home, "plus.sqlite3")
    for n in SIZES:
        owner = OWNER.format(n=n)
        items = os.path.join(home, f"items-{n}.jsonl")
        with open(items, "w") as f:
            for i in range(n):
                f.write(json.dumps({"id": f"item-{i:07d}", "n": i, "name": f"photo {i}.jpg"}) + "\n")
        subprocess.run([PLUS, "--home", home, "--user", "bench", "collection", "import", owner, items], check=True, stderr=subprocess.DEVNULL)
        base = {
            "REGION": "local",
            "DYNAMO_TABLE": "plus-jobs",
            "DYNAMO_STREAMS_TABLE": "plus-job-streams",
            "PRIMARY_BUCKET": "plus-primary",
            "PLUS_LOCAL_DIR": home,
            "PLUS_WORK_DIR": os.path.join(home, "work"),
        }
        for mode, source, streaming in VARIANTS:
            job_id = f"bench-{uuid.uuid4()}"
            rec = job_record(job_id, owner, source, streaming)
            con = sqlite3.connect(db)
            con.execute("INSERT INTO objects (object_id, owner, body) VALUES (?, ?, ?)", (job_id, rec["owner"], json.dumps(rec)))
            con.commit()
            con.close()
            took, rss = run_worker(worker_env(base, job_id, owner))
            rows.append(("local", mode, n, n / took, rss))
            print(rows[-1], file=sys.stderr, flush=True)
        for name, script in scripts if n <= PY_MAX else []:
            start = time.monotonic()
            con = sqlite3.connect(db)
            done, after = 0, ""
            while True:
                page = [json.loads(b) for (b,) in con.execute(
                    "SELECT body FROM objects WHERE owner = ? AND object_id > ? ORDER BY object_id LIMIT 1000", (owner, after))]
                if not page:
                    break
                done += python_loop(page, script)
                after = page[-1]["object_id"]
            took = time.monotonic() - start
            rows.append(("local", f"python sqlite3 loop, {name}", n, done / took, float("nan")))
            print(rows[-1], file=sys.stderr, flush=True)


# ---------------------------------------------------------------- moto


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def moto_bench(rows):
    import boto3

    port = free_port()
    log = open(os.path.join(tempfile.gettempdir(), f"moto-bench-{port}.log"), "w")
    server = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        ddb = boto3.client("dynamodb", **kw)
        s3 = boto3.client("s3", **kw)
        table, streams, bucket = "bench-jobs", "bench-streams", "bench-bucket"
        ddb.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "object_id", "AttributeType": "S"}, {"AttributeName": "owner", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "object_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "owner-index",
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}, {"AttributeName": "object_id", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
        )
        ddb.create_table(
            TableName=streams,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "stream_id", "AttributeType": "S"}, {"AttributeName": "seq", "AttributeType": "N"}],
            KeySchema=[{"AttributeName": "stream_id", "KeyType": "HASH"}, {"AttributeName": "seq", "KeyType": "RANGE"}],
        )
        s3.create_bucket(Bucket=bucket)
        res = boto3.resource("dynamodb", **kw).Table(table)
        work = tempfile.mkdtemp(prefix="plus-bench-moto-")
        scripts = script_files(work)
        base = {
            "REGION": "us-east-1",
            "DYNAMO_TABLE": table,
            "DYNAMO_STREAMS_TABLE": streams,
            "PRIMARY_BUCKET": bucket,
            "AWS_ENDPOINT_URL": endpoint,
            "ACCESS_KEY": "testing",
            "SECRET_KEY": "testing",
            "PLUS_WORK_DIR": os.path.join(work, "work"),
        }
        for n in SIZES:
            owner = OWNER.format(n=n)
            with res.batch_writer() as w:
                for i in range(n):
                    w.put_item(Item={"object_id": f"item-{i:07d}", "owner": owner, "n": i, "name": f"photo {i}.jpg"})
            for mode, source, streaming in VARIANTS:
                job_id = f"bench-{uuid.uuid4()}"
                res.put_item(Item=json.loads(json.dumps(job_record(job_id, owner, source, streaming))))
                took, rss = run_worker(worker_env(base, job_id, owner))
                rows.append(("moto", mode, n, n / took, rss))
                print(rows[-1], file=sys.stderr, flush=True)
            for name, script in scripts if n <= PY_MAX else []:
                start = time.monotonic()
                done, key = 0, None
                while True:
                    q = dict(TableName=table, IndexName="owner-index", KeyConditionExpression="#o = :o",
                             ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": {"S": owner}})
                    if key:
                        q["ExclusiveStartKey"] = key
                    out = ddb.query(**q)
                    page = [{k: (v.get("S") or v.get("N")) for k, v in it.items()} for it in out["Items"]]
                    done += python_loop(page, script)
                    key = out.get("LastEvaluatedKey")
                    if not key:
                        break
                took = time.monotonic() - start
                rows.append(("moto", f"python boto3 loop, {name}", n, done / took, float("nan")))
                print(rows[-1], file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()


def main():
    rows = []
    stores = os.environ.get("STORES", "local,moto").split(",")
    if "local" in stores:
        local_bench(rows)
    if "moto" in stores:
        moto_bench(rows)
    print("| store | mode | items | items/s | worker peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|")
    for store, mode, n, rate, rss in rows:
        rss_s = "-" if rss != rss else f"{rss:.1f}"
        print(f"| {store} | {mode} | {n:,} | {rate:,.0f} | {rss_s} |")


if __name__ == "__main__":
    main()
