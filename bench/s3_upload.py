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
import os
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pydantic import SecretStr  # noqa: E402
from rig.s3 import moto_s3  # noqa: E402

from services.adapters.s3_store import S3Store  # noqa: E402
from services.core import config as cfg  # noqa: E402

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part, and what the tests use
OURS, YARDSTICK = "console S3Store.open_write", "boto3 upload_fileobj (threaded)"


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


def measure(endpoint: str, mib: int, rounds: int) -> dict[str, list[float]]:
    """MB/s per round of each contender, alternated so that a slower minute weighs on both."""
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID", "testing"), os.environ.get("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = client(endpoint, key_id, secret)
    bucket = f"rc-bench-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    settings = cfg.S3Store(bucket=bucket, endpoint_url=endpoint, access_key_id=SecretStr(key_id),
                           secret_access_key=SecretStr(secret))
    store = S3Store(settings, chunk_size=PART)
    data = os.urandom(mib * MiB)
    figures: dict[str, list[float]] = {OURS: [], YARDSTICK: []}
    try:
        for n in range(rounds):
            figures[OURS].append(ours(store, data, f"bench/{n}"))
            figures[YARDSTICK].append(yardstick(s3, bucket, data, f"yardstick/{n}"))
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=12, help="bytes per upload, in MiB (default 12: 3 parts)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--endpoint", help="an S3 endpoint; default: moto in this process")
    args = parser.parse_args()

    with ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(moto_s3(quiet=True))
        figures = measure(endpoint, args.mib, args.rounds)
    where = "moto in this process" if args.endpoint is None else endpoint
    print(f"{args.rounds} rounds of {args.mib} MiB to {where}, {PART // MiB} MiB parts")
    for name, values in figures.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"  {name:<34} median {statistics.median(values):6.1f} MB/s  (rounds: {rounds})")
    ratio = statistics.median(figures[OURS]) / statistics.median(figures[YARDSTICK])
    print(f"  console / yardstick: {ratio:.2f}x")


if __name__ == "__main__":
    main()
