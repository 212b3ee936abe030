"""S3 upload throughput: the console's streamed multipart upload (S3Store.open_write, 5 MiB parts, written
1 MiB at a time as a backup pipe writes) beside boto3's own threaded upload_fileobj of the same bytes,
in the same run, to the same endpoint.

    uv run python bench/s3_upload.py [--mib 12] [--rounds 5] [--endpoint http://127.0.0.1:PORT]

Without --endpoint it starts moto's S3 server in this process on 127.0.0.1 (as the test rig does), so
moto's own speed bounds both figures; give a real endpoint (with AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY in the environment) for figures of a real store. The bench bucket and its objects
are removed at the end. Prints MB/s per round and the medians.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import SecretStr  # noqa: E402

from services.adapters.s3_store import S3Store  # noqa: E402
from services.core import config as cfg  # noqa: E402

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part, and what the tests use


def start_moto() -> tuple[str, Callable[[], None]]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one request line per part otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop


def client(endpoint: str, key: str, secret: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def ours(store: S3Store, data: bytes, key: str) -> float:
    started = time.perf_counter()
    with store.open_write(key) as sink:
        for at in range(0, len(data), MiB):
            sink.write(data[at:at + MiB])
    return len(data) / (time.perf_counter() - started) / 1e6


def yardstick(s3: Any, bucket: str, data: bytes, key: str) -> float:
    from boto3.s3.transfer import TransferConfig

    started = time.perf_counter()
    s3.upload_fileobj(io.BytesIO(data), bucket, key,
                      Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART))
    return len(data) / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=12, help="bytes per upload, in MiB (default 12: 3 parts)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoint", help="an S3 endpoint; default: moto in this process")
    args = parser.parse_args()

    stop = None
    endpoint = args.endpoint
    if endpoint is None:
        endpoint, stop = start_moto()
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID", "testing"), os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = client(endpoint, key_id, secret)
    bucket = f"rc-bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    settings = cfg.S3Store(bucket=bucket, endpoint_url=endpoint, access_key_id=SecretStr(key_id),
                           secret_access_key=SecretStr(secret))
    store = S3Store(settings, chunk_size=PART)
    data = os.urandom(args.mib * MiB)
    figures: dict[str, list[float]] = {"console S3Store.open_write": [], "boto3 upload_fileobj (threaded)": []}
    try:
        for n in range(args.rounds):  # alternated, so a slower minute weighs on both
            figures["console S3Store.open_write"].append(ours(store, data, f"bench/{n}"))
            figures["boto3 upload_fileobj (threaded)"].append(yardstick(s3, bucket, data, f"yardstick/{n}"))
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": f"backups/bench/{n}"},
                                                                 {"Key": f"yardstick/{n}"}]})
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
        if stop is not None:
            stop()
    where = "moto in this process" if args.endpoint is None else endpoint
    print(f"{args.rounds} rounds of {args.mib} MiB to {where}, {PART // MiB} MiB parts")
    for name, values in figures.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:<34} median {statistics.median(values):6.1f} MB/s  (rounds: {rounds})")
    ratio = statistics.median(figures["console S3Store.open_write"]) / statistics.median(
        figures["boto3 upload_fileobj (threaded)"])
    print(f"  console / yardstick: {ratio:.2f}x")


if __name__ == "__main__":
    main()
