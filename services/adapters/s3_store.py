"""Backups in an S3 bucket (AWS, MinIO, Ceph, any S3-compatible endpoint), under a key prefix.

`open_write` streams: the sink buffers one part and uploads it as soon as it fills, so memory
stays at about one or two parts whatever the size. The object appears only when the with-block
ends cleanly (the multipart upload is completed then); on any exception, Ctrl-C included, the
upload is aborted so no orphan parts are left (and S3 never lists an unfinished upload).

Each request that writes (part, put, complete) is retried with exponential backoff and jitter
on connection errors, throttling and 5xx; a refusal (AccessDenied, NoSuchBucket, ...) fails
at once. Failures are `StepFailed` naming the bucket and the endpoint, never the credentials.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from services.core import config as cfg
from services.core.masking import MASK, mask
from services.core.operations import StepFailed, pause
from services.core.ports import StoredObject

if TYPE_CHECKING:
    # boto3-stubs[s3]: types only, never imported at run time.
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

T = TypeVar("T")

MIN_PART = 5 * 1024 * 1024  # S3's smallest part, except the last
MAX_PARTS = 10_000  # S3's most parts in one upload
GROW_EVERY = 2_000  # parts; then the part size doubles (only objects past 2000 parts, 16 GB at 8 MiB)
MAX_GROWTH = 4  # up to 16 x chunk_size: 10000 parts reach ~250 GB at 8 MiB
ABORT_TRIES = 2

# Error codes worth another try: throttling and the server's own trouble.
RETRY_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
    "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable", "503",
})
# The bucket or the credentials are wrong: trying again will not help.
DENIED_CODES = frozenset({
    "AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AccountProblem", "NoSuchBucket", "PermanentRedirect",
    "AuthorizationHeaderMalformed", "InvalidBucketName", "KMS.AccessDeniedException",
})
PERMISSIONS = {"list": "s3:ListBucket", "download": "s3:GetObject", "delete": "s3:DeleteObject"}


class S3Store:
    name = "s3"

    def __init__(self, config: cfg.S3Store, chunk_size: int = 8 * 1024 * 1024, retries: int = 4,
                 backoff_s: float = 0.5) -> None:
        """`retries` is the number of tries after the first; waits are backoff_s, 2x, 4x, ... plus jitter."""
        if chunk_size < MIN_PART:
            raise ValueError(f"chunk_size {chunk_size} is below S3's minimum part size of {MIN_PART} bytes")
        if retries < 0 or backoff_s < 0:
            raise ValueError("retries and backoff_s must not be negative")
        if (config.access_key_id is None) != (config.secret_access_key is None):
            raise ValueError("set both access_key_id and secret_access_key for S3, or neither (default credentials)")
        self.config = config
        self.bucket = config.bucket
        self.prefix = config.prefix
        self.chunk_size = chunk_size
        self.retries = retries
        self.backoff_s = backoff_s
        self.where = f"s3://{self.bucket}/{self.prefix} at {config.endpoint_url or f'AWS ({config.region})'}"
        self._client: S3Client | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ client --

    @property
    def client(self) -> S3Client:
        """The boto3 S3 client, made on first use (boto3 costs start-up time the sandbox never needs)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> S3Client:
        import boto3
        from botocore.config import Config

        c = self.config
        options = Config(
            region_name=c.region,
            retries={"total_max_attempts": 1},  # ours below: one policy, logged, bounded, with a clear error
            connect_timeout=10,
            read_timeout=120,
            s3={"addressing_style": "path"} if c.endpoint_url else None,
            # S3-compatible stores (MinIO, Ceph, older versions) may refuse the CRC32 trailers that
            # botocore adds by default since 1.36; send checksums only where S3 requires them.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # Both or neither (checked in __init__); None leaves boto3 its default credential chain.
        key_id = c.access_key_id.get_secret_value() if c.access_key_id else None
        secret = c.secret_access_key.get_secret_value() if c.secret_access_key else None
        return boto3.session.Session().client("s3", endpoint_url=c.endpoint_url, config=options,
                                              aws_access_key_id=key_id, aws_secret_access_key=secret)

    def _key(self, key: str) -> str:
        if not key or key.startswith("/"):
            raise ValueError(f"bad backup key {key!r}")
        return self.prefix + key

    # -------------------------------------------------------------- the port --

    def list(self, prefix: str = "") -> list[StoredObject]:
        """Complete objects only (S3 never lists an unfinished multipart upload). Metadata is not
        fetched here: that would be one HEAD per object; `put` returns it."""
        def pages() -> list[StoredObject]:
            found = []
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for obj in page.get("Contents", []):
                    found.append(StoredObject(obj["Key"][len(self.prefix):], int(obj["Size"]),
                                              obj["LastModified"].timestamp(), self.name))
            return found

        return sorted(self._call("list", prefix or "(all)", pages), key=lambda o: o.key)

    @contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        with self._upload(key, None) as upload:
            yield cast(BinaryIO, upload)

    def put(self, key: str, chunks: Iterable[bytes], metadata: Mapping[str, str] | None = None) -> StoredObject:
        with self._upload(key, metadata) as upload:
            for chunk in chunks:
                upload.write(chunk)
        return StoredObject(key, upload.size, time.time(), self.name, dict(metadata or {}))

    def get(self, key: str, start: int = 0) -> Iterator[bytes]:
        """The object's bytes in chunks, streamed, from byte `start` on (a ranged GET).
        FileNotFoundError now (not at the first chunk) if missing."""
        full = self._key(key)

        def request() -> Any:
            try:
                if start:
                    return self.client.get_object(Bucket=self.bucket, Key=full, Range=f"bytes={start}-")
                return self.client.get_object(Bucket=self.bucket, Key=full)
            except Exception as exc:
                if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                    raise FileNotFoundError(f"no backup object {key!r} in {self.where}") from None
                raise

        body = self._call("download", key, request)["Body"]
        return _stream(body, min(self.chunk_size, 1 << 20))

    def delete(self, key: str) -> None:
        full = self._key(key)
        self._call("delete", key, lambda: self.client.delete_object(Bucket=self.bucket, Key=full))

    # --------------------------------------------------------------- uploads --

    @contextmanager
    def _upload(self, key: str, metadata: Mapping[str, str] | None) -> Iterator[_Upload]:
        upload = _Upload(self, key, dict(metadata or {}))
        try:
            yield upload
            upload.finish()
        except BaseException as exc:  # Ctrl-C and SystemExit too: never leave orphan parts
            upload.abort(exc)
            raise

    def _call(self, what: str, key: str, request: Callable[[], T], tries: int | None = None) -> T:
        """One request, tried again on connection errors, throttling and 5xx; StepFailed when it gives up."""
        tries = self.retries + 1 if tries is None else tries
        for attempt in range(1, tries + 1):
            try:
                return request()
            except FileNotFoundError:
                raise
            except Exception as exc:
                if not _transient(exc):
                    raise self._failed(what, key, exc, attempt, denied=_code(exc) in DENIED_CODES) from None
                if attempt == tries:
                    raise self._failed(what, key, exc, attempt) from None
                delay = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311 - jitter
                log.warning("S3 %s of %s failed (%s); try %d of %d in %.1f s",
                            what, key, self._safe(exc), attempt + 1, tries, delay)
                pause(delay)
        raise AssertionError("unreachable")

    def _failed(self, what: str, key: str, exc: BaseException, tries: int, denied: bool = False) -> StepFailed:
        after = f" after {tries} tries" if tries > 1 else ""
        message = f"S3 {what} of {key!r} in {self.where} failed{after}: {self._safe(exc)}"
        if denied:
            permission = PERMISSIONS.get(what, "s3:PutObject")
            return StepFailed(f"{message}; check the bucket name and the credentials' {permission} permission",
                              ("fix [backup.s3] in release.toml (bucket, endpoint, credentials) and try again",
                               "back up to the local directory only"))
        return StepFailed(message, ("check that the endpoint is reachable, then try again",
                                    "back up to the local directory only"))

    def _safe(self, exc: BaseException) -> str:
        """The error's text, masked: no URL password, and never the configured keys, whatever the library put in."""
        text = str(mask(f"{type(exc).__name__}: {exc}")).replace(" (reached max retries: 0)", "")  # ours count
        for secret in (self.config.access_key_id, self.config.secret_access_key):
            if secret is not None and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), MASK)
        return text


class _Upload(io.RawIOBase):
    """The sink of one object: a single put_object if it stays under one part, else a multipart upload."""

    def __init__(self, store: S3Store, key: str, metadata: dict[str, str]) -> None:
        super().__init__()
        self.store, self.key, self.metadata = store, key, metadata
        self.full_key = store._key(key)
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []
        self.size = 0
        self.done = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.done:
            raise ValueError(f"write to the finished S3 upload of {self.key!r}")
        view = memoryview(data).cast("B")
        taken = 0
        while taken < len(view):  # fill the part, send it when full: never more than one part buffered
            room = self._part_size() - len(self.buffer)
            piece = view[taken:taken + room]
            self.buffer += piece
            taken += len(piece)
            if len(self.buffer) >= self._part_size():
                self._send_part()
        self.size += taken
        return taken

    def _part_size(self) -> int:
        return self.store.chunk_size << min(len(self.parts) // GROW_EVERY, MAX_GROWTH)

    def _extra(self) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if self.metadata:
            extra["Metadata"] = self.metadata
        if self.store.config.server_side_encryption:
            extra["ServerSideEncryption"] = self.store.config.server_side_encryption
        return extra

    def _send_part(self) -> None:
        s = self.store
        if self.upload_id is None:
            created = s._call("upload", self.key, lambda: s.client.create_multipart_upload(
                Bucket=s.bucket, Key=self.full_key, **self._extra()))
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        if number > MAX_PARTS:
            raise StepFailed(f"S3 upload of {self.key!r} to {s.where} exceeds {MAX_PARTS} parts; "
                             "use a larger chunk_size")
        body, self.buffer = bytes(self.buffer), bytearray()  # the old buffer is freed here
        upload_id = self.upload_id
        answer = s._call(f"upload of part {number}", self.key, lambda: s.client.upload_part(
            Bucket=s.bucket, Key=self.full_key, UploadId=upload_id, PartNumber=number, Body=body))
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def finish(self) -> None:
        s = self.store
        if self.upload_id is None:  # it all fits in one part: a single request
            body = bytes(self.buffer)
            s._call("upload", self.key, lambda: s.client.put_object(
                Bucket=s.bucket, Key=self.full_key, Body=body, **self._extra()))
        else:
            if self.buffer:
                self._send_part()
            upload_id, parts, sent = self.upload_id, self.parts, [0]

            def complete() -> Any:
                sent[0] += 1
                try:
                    return s.client.complete_multipart_upload(
                        Bucket=s.bucket, Key=self.full_key, UploadId=upload_id, MultipartUpload={"Parts": parts})
                except Exception as exc:
                    # A retried complete whose first try did land (the answer was lost) finds no upload.
                    if sent[0] > 1 and _code(exc) == "NoSuchUpload" and self._landed():
                        return {}
                    raise

            s._call("completion", self.key, complete)
        self.done = True
        self.buffer = bytearray()

    def _landed(self) -> bool:
        s = self.store
        try:
            head = s.client.head_object(Bucket=s.bucket, Key=self.full_key)
        except Exception:  # noqa: BLE001 - not there, or cannot tell: not landed
            return False
        return str(head.get("ETag", "")).strip('"').endswith(f"-{len(self.parts)}")

    def abort(self, cause: BaseException) -> None:
        """Drop the parts sent so far (best effort: the original error is what the caller sees)."""
        self.done = True
        self.buffer = bytearray()
        if self.upload_id is None:
            return
        s, upload_id = self.store, self.upload_id
        try:
            s._call("abort", self.key, lambda: s.client.abort_multipart_upload(
                Bucket=s.bucket, Key=self.full_key, UploadId=upload_id), tries=ABORT_TRIES)
        except Exception as exc:  # noqa: BLE001
            note = (f"could not abort the unfinished S3 upload {upload_id} of {self.key!r} ({exc}); its parts "
                    "stay billed until an AbortIncompleteMultipartUpload lifecycle rule removes them")
            log.warning(note)
            cause.add_note(note)
        self.upload_id = None


def _stream(body: Any, chunk_size: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return 0
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, SSLError

    if isinstance(exc, SSLError):  # a certificate problem does not heal by waiting
        return False
    if isinstance(exc, (ConnectionError, HTTPClientError)):
        return True
    if isinstance(exc, ClientError):
        code = _code(exc)
        return code not in DENIED_CODES and (code in RETRY_CODES or _status(exc) >= 500 or _status(exc) == 429)
    return False
