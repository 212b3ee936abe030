"""The S3 object store against the rig's moto server, over real HTTP with the real boto3 client.

Faults are injected with botocore's own `before-send` event (the request never leaves, the hook
answers or raises instead), so the store's code paths are the ones a real endpoint would drive.
"""

from __future__ import annotations

import os
import time
import tracemalloc
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from pydantic import SecretStr
from rig.helpers import free_port

from services.adapters.s3_store import S3Store
from services.core import config as cfg
from services.core.operations import StepFailed
from services.core.ports import ObjectStore

MiB = 1024 * 1024
CHUNK = 5 * MiB  # S3's smallest part: keeps moto's memory small
SECRET = "wJalrXUtnFEMI-not-a-real-secret-K7MDENG"


def make_store(endpoint: str, bucket: str, **options: Any) -> S3Store:
    settings: dict[str, Any] = {"bucket": bucket, "endpoint_url": endpoint, "access_key_id": SecretStr("testing"),
                                "secret_access_key": SecretStr("testing")}
    for name in ("prefix", "server_side_encryption", "access_key_id", "secret_access_key"):
        if name in options:
            settings[name] = options.pop(name)
    return S3Store(cfg.S3Store(**settings), chunk_size=CHUNK, **options)


@pytest.fixture
def bucket(s3_client: Any, bucket_name: str) -> str:
    s3_client.create_bucket(Bucket=bucket_name)
    return bucket_name


@pytest.fixture
def store(s3_endpoint: str, bucket: str) -> S3Store:
    return make_store(s3_endpoint, bucket, backoff_s=0.01)


def payload(size: int) -> bytes:
    return os.urandom(size)


def odd_writes(data: bytes, sizes: tuple[int, ...] = (1, 999_983, 3 * MiB + 7, 65_521)) -> Iterator[bytes]:
    """Pieces of awkward sizes, cycling, so parts never line up with the writes."""
    at, i = 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        yield data[at:at + n]
        at, i = at + n, i + 1


def count_calls(store: S3Store) -> Counter[str]:
    """Requests sent, by operation name (UploadPart, PutObject, ...), retries included."""
    calls: Counter[str] = Counter()

    def seen(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    store.client.meta.events.register("before-send.s3", seen)
    return calls


def query(request: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query, keep_blank_values=True))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def error_response(request: Any, status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>injected {code}</Message></Error>".encode()
    return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))


def fail_part(store: S3Store, part: int, times: int, fault: Callable[[Any], Any]) -> Counter[int]:
    """Make the first `times` tries of part number `part` fail with fault(request); counts tries per part."""
    tries: Counter[int] = Counter()

    def hook(request: Any, **_: Any) -> Any:
        number = int(query(request)["partNumber"])
        tries[number] += 1
        if number == part and tries[number] <= times:
            return fault(request)
        return None

    store.client.meta.events.register("before-send.s3.UploadPart", hook)
    return tries


def assert_nothing_left(s3_client: Any, bucket: str, key: str) -> None:
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -------------------------------------------------------------- round trips --


def test_streamed_upload_is_multipart_and_round_trips(store: S3Store, s3_client: Any, bucket: str) -> None:
    data = payload(12 * MiB + 12_345)
    calls = count_calls(store)
    with store.open_write("prod/20250101T000000Z/db.sql.gz") as sink:
        for piece in odd_writes(data):
            sink.write(piece)
    assert calls["UploadPart"] == 3 and calls["CreateMultipartUpload"] == 1 and calls["PutObject"] == 0
    head = s3_client.head_object(Bucket=bucket, Key="backups/prod/20250101T000000Z/db.sql.gz")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentLength"] == len(data)
    assert b"".join(store.get("prod/20250101T000000Z/db.sql.gz")) == data
    [listed] = store.list()
    assert (listed.key, listed.size, listed.store) == ("prod/20250101T000000Z/db.sql.gz", len(data), "s3")
    assert abs(listed.modified - time.time()) < 120


def test_get_streams_in_chunks(store: S3Store) -> None:
    data = payload(3 * MiB + 5)
    store.put("big.bin", [data])
    chunks = list(store.get("big.bin"))
    assert len(chunks) > 1 and max(map(len, chunks)) <= MiB
    assert b"".join(chunks) == data


def test_small_object_is_one_put_with_metadata(store: S3Store, s3_client: Any, bucket: str) -> None:
    calls = count_calls(store)
    stored = store.put("prod/x/manifest.json", [b'{"id": ', b'"x"}'], {"sha256": "abc"})
    assert calls == Counter({"PutObject": 1})
    assert (stored.key, stored.size, stored.store, dict(stored.metadata)) == (
        "prod/x/manifest.json", 11, "s3", {"sha256": "abc"})
    head = s3_client.head_object(Bucket=bucket, Key="backups/prod/x/manifest.json")
    assert head["Metadata"] == {"sha256": "abc"}
    assert b"".join(store.get("prod/x/manifest.json")) == b'{"id": "x"}'


@pytest.mark.parametrize("size", [0, CHUNK, CHUNK + 1])
def test_part_boundaries(store: S3Store, size: int) -> None:
    data = payload(size)
    with store.open_write("edge.bin") as sink:
        sink.write(data)
    assert b"".join(store.get("edge.bin")) == data
    assert [o.size for o in store.list("edge")] == [size]


def test_memory_stays_about_one_part_for_one_big_write(store: S3Store) -> None:
    """Python memory held by this side (moto's server threads in this process excluded) while each part is sent."""
    data = payload(12 * MiB)
    held: list[int] = []
    server = [tracemalloc.Filter(False, pattern, all_frames=True) for pattern in ("*/werkzeug/*", "*/moto/*")]

    def measure(**_: Any) -> None:
        held.append(sum(stat.size for stat in tracemalloc.take_snapshot().filter_traces(server).statistics("filename")))

    store.client.meta.events.register("before-send.s3", measure)
    store.client  # noqa: B018 - the client is made before tracing starts
    tracemalloc.start(12)
    try:
        with store.open_write("one-write.bin") as sink:
            sink.write(memoryview(data))
    finally:
        tracemalloc.stop()
        store.client.meta.events.unregister("before-send.s3", measure)
    assert len(held) == 5  # create, 3 parts, complete
    assert max(held) < 2.5 * CHUNK, f"{max(held) / MiB:.1f} MiB held for a 12 MiB write with 5 MiB parts"
    assert b"".join(store.get("one-write.bin")) == data


def test_server_side_encryption(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    store = make_store(s3_endpoint, bucket, server_side_encryption="AES256")
    store.put("small.bin", [b"x" * 100])
    with store.open_write("large.bin") as sink:
        sink.write(payload(CHUNK + 10))
    for key in ("small.bin", "large.bin"):
        assert s3_client.head_object(Bucket=bucket, Key=f"backups/{key}")["ServerSideEncryption"] == "AES256"


def test_list_prefix_get_missing_delete(store: S3Store, s3_client: Any, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="elsewhere/prod/a", Body=b"not ours")  # outside the store's prefix
    for key in ("prod/1/a", "prod/1/b", "prod/2/a", "staging/1/a"):
        store.put(key, [key.encode()])
    assert [o.key for o in store.list("prod/1/")] == ["prod/1/a", "prod/1/b"]
    assert [o.key for o in store.list()] == ["prod/1/a", "prod/1/b", "prod/2/a", "staging/1/a"]
    assert store.list("nothing/") == []
    with pytest.raises(FileNotFoundError, match=r"'prod/9/a'.*s3://" + bucket):
        store.get("prod/9/a")
    store.delete("prod/1/a")
    store.delete("prod/1/a")  # already gone: no error
    assert [o.key for o in store.list("prod/1/")] == ["prod/1/b"]
    with pytest.raises(FileNotFoundError):
        store.get("prod/1/a")


def test_other_prefix(s3_endpoint: str, bucket: str) -> None:
    store = make_store(s3_endpoint, bucket, prefix="team/food/")
    store.put("k", [b"v"])
    assert [o.key for o in store.list()] == ["k"]
    assert make_store(s3_endpoint, bucket).list() == []


# ------------------------------------------------------------- interruption --


@pytest.mark.parametrize("error", [RuntimeError("dump failed"), KeyboardInterrupt()])
def test_interrupted_upload_leaves_no_object_and_no_parts(
        store: S3Store, s3_client: Any, bucket: str, error: BaseException) -> None:
    calls = count_calls(store)
    with pytest.raises(type(error)):
        with store.open_write("prod/1/db.sql.gz") as sink:
            sink.write(payload(2 * CHUNK + 100))
            assert calls["UploadPart"] == 2
            assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")  # in flight: parts exist
            assert store.list() == []  # but an unfinished upload is never listed
            raise error
    assert calls["AbortMultipartUpload"] == 1
    assert_nothing_left(s3_client, bucket, "backups/prod/1/db.sql.gz")


def test_failed_upload_keeps_the_previous_object(store: S3Store) -> None:
    store.put("k", [b"old"])
    with pytest.raises(RuntimeError):
        with store.open_write("k") as sink:
            sink.write(payload(CHUNK + 1))
            raise RuntimeError("boom")
    assert b"".join(store.get("k")) == b"old"


# ------------------------------------------------------------------- faults --


def test_part_retried_after_connection_errors_then_succeeds(store: S3Store, s3_client: Any, bucket: str) -> None:
    def refuse(request: Any) -> Any:
        raise EndpointConnectionError(endpoint_url=request.url)

    tries = fail_part(store, part=2, times=2, fault=refuse)
    data = payload(12 * MiB)
    with store.open_write("retried.bin") as sink:
        for piece in odd_writes(data):
            sink.write(piece)
    assert tries == Counter({1: 1, 2: 3, 3: 1})
    assert b"".join(store.get("retried.bin")) == data
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_5xx_and_throttling_are_retried(store: S3Store) -> None:
    faults = iter([(503, "SlowDown"), (500, "InternalError")])
    tries = fail_part(store, part=1, times=2, fault=lambda request: error_response(request, *next(faults)))
    store.put("throttled.bin", [payload(CHUNK + 1)])
    assert tries[1] == 3


def test_part_retries_exhausted_aborts_with_clear_error(s3_endpoint: str, bucket: str, s3_client: Any) -> None:
    store = make_store(s3_endpoint, bucket, retries=2, backoff_s=0.01)
    tries = fail_part(store, part=2, times=99, fault=lambda request: error_response(request, 503, "SlowDown"))
    calls = count_calls(store)
    with pytest.raises(StepFailed) as failed:
        with store.open_write("exhausted.bin") as sink:
            sink.write(payload(3 * CHUNK))
    message = str(failed.value)
    assert "after 3 tries" in message and bucket in message and s3_endpoint in message and "SlowDown" in message
    assert "part 2" in message
    assert tries[2] == 3 and tries[3] == 0
    assert calls["AbortMultipartUpload"] == 1
    assert_nothing_left(s3_client, bucket, "backups/exhausted.bin")


def test_unreachable_endpoint_retries_then_fails_clearly(bucket: str, s3_client: Any) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    store = make_store(endpoint, bucket, retries=3, backoff_s=0.02, secret_access_key=SecretStr(SECRET))
    with pytest.raises(StepFailed) as failed:
        store.put("prod/1/manifest.json", [b"{}"])
    with pytest.raises(StepFailed) as failed_large:
        with store.open_write("prod/1/db.sql.gz") as sink:
            sink.write(payload(CHUNK))
    for error in (failed.value, failed_large.value):
        message = str(error)
        assert "after 4 tries" in message and bucket in message and endpoint in message
        assert "Could not connect" in message
        assert SECRET not in message and "testing" not in message
        assert error.next_options
    assert_nothing_left(s3_client, bucket, "backups/prod/1/")


def test_missing_bucket_fails_at_once(s3_endpoint: str) -> None:
    store = make_store(s3_endpoint, "rc-test-no-such-bucket-here", backoff_s=1.0)
    calls = count_calls(store)
    with pytest.raises(StepFailed, match=r"rc-test-no-such-bucket-here.*NoSuchBucket.*s3:PutObject permission"):
        store.put("k", [b"v"])
    with pytest.raises(StepFailed, match="NoSuchBucket"):
        with store.open_write("big") as sink:
            sink.write(payload(CHUNK))
    with pytest.raises(StepFailed, match="s3:ListBucket"):
        store.list()
    assert calls == Counter({"PutObject": 1, "CreateMultipartUpload": 1, "ListObjectsV2": 1})  # no retries


def test_access_denied_mid_upload_fails_at_once_and_aborts(store: S3Store, s3_client: Any, bucket: str) -> None:
    tries = fail_part(store, part=2, times=99, fault=lambda request: error_response(request, 403, "AccessDenied"))
    with pytest.raises(StepFailed, match=r"AccessDenied.*s3:PutObject permission") as failed:
        with store.open_write("denied.bin") as sink:
            sink.write(payload(3 * CHUNK))
    assert "tries" not in str(failed.value) and "retries" not in str(failed.value)
    assert tries[2] == 1
    assert_nothing_left(s3_client, bucket, "backups/denied.bin")


def test_complete_retried_after_its_answer_was_lost(store: S3Store, s3_client: Any, bucket: str) -> None:
    """The first CompleteMultipartUpload lands but its answer is lost: the retry finds the object done."""
    sent = Counter[str]()

    def lose_answer(request: Any, **_: Any) -> None:
        sent["complete"] += 1
        if sent["complete"] == 1:
            upload_id = query(request)["uploadId"]
            parts = _parts(s3_client, bucket, "backups/lost.bin", upload_id)
            s3_client.complete_multipart_upload(Bucket=bucket, Key="backups/lost.bin", UploadId=upload_id,
                                                MultipartUpload=parts)
            raise EndpointConnectionError(endpoint_url=request.url)

    store.client.meta.events.register("before-send.s3.CompleteMultipartUpload", lose_answer)
    data = payload(CHUNK + 3)
    with store.open_write("lost.bin") as sink:
        sink.write(data)
    assert sent["complete"] == 2
    assert b"".join(store.get("lost.bin")) == data


def _parts(s3_client: Any, bucket: str, key: str, upload_id: str) -> dict[str, Any]:
    listed = s3_client.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    return {"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in listed]}


def test_configuration_errors() -> None:
    with pytest.raises(ValueError, match="minimum part size"):
        S3Store(cfg.S3Store(bucket="rc-test-x"), chunk_size=MiB)
    with pytest.raises(ValueError, match="both"):
        S3Store(cfg.S3Store(bucket="rc-test-x", access_key_id=SecretStr("a")))
    assert SECRET not in repr(cfg.S3Store(bucket="rc-test-x", secret_access_key=SecretStr(SECRET)))


def _is_an_object_store(store: S3Store) -> ObjectStore:  # mypy checks the port is implemented
    return store
