"""Backups to S3 end to end: streamed multipart from the pipe into the rig's S3 endpoint, listed
with the local store, verified and restored from S3; a failure mid-upload leaves no partial
backup listed and no orphan parts."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.awsrequest import AWSResponse
from rig import config_builder as toml
from rig.old_backups import plant_backup, plant_history

from services import factory
from services.backups.catalog import list_backups
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import ConfirmationNeeded, Event, Finished, LogLine, Outcome, StepFinished, StepStatus
from services.core.operations import Result

ROWS = 300_000  # random md5 text: a dump of ~20 MB that zstd leaves above one 8 MiB part


def release_toml(tmp_path: Path, endpoint: str, bucket: str, prune_after: bool | None = None) -> Path:
    store = toml.s3_store(bucket, prefix="food-management/", endpoint_url=endpoint, server_side_encryption="AES256",
                          access_key_id=toml.secret("AWS_KEY"), secret_access_key=toml.secret("AWS_SECRET"))
    migrations = {"dir": "migrations", "integrity_tables": ["Ingredient"]}
    path = toml.release({"staging": toml.environment()}, backup=toml.backup(s3=store, prune_after=prune_after),
                        migrations=migrations).write(tmp_path / "release.toml")
    (tmp_path / "migrations").mkdir(exist_ok=True)
    return path


@pytest.fixture
def services(tmp_path: Path, pg_database: str, s3_endpoint: str, s3_client: Any, bucket_name: str) -> factory.Services:
    s3_client.create_bucket(Bucket=bucket_name)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Ingredient" (id serial PRIMARY KEY, name text NOT NULL)')
        conn.execute(f"""INSERT INTO "Ingredient" (name) SELECT md5(g::text) || md5((g * 7)::text)
                         FROM generate_series(1, {ROWS}) g""")
    env = {"TEST_DB": pg_database, "AWS_KEY": "testing", "AWS_SECRET": "testing"}
    built = factory.build(config_module.load(release_toml(tmp_path, s3_endpoint, bucket_name), env),
                          state=tmp_path / "state")
    built.store.backoff_s = 0.01  # type: ignore[attr-defined]  # keep the retry test quick
    return built


def run(services: factory.Services, kind: str, **params: Any) -> Result:
    events: list[Event] = []
    return services.runner.run(build_operation(services, kind, "staging", params), events.append, lambda q: "yes")


def test_a_backup_streams_to_s3_is_listed_verified_and_restored(services: factory.Services, s3_client: Any,
                                                                 bucket_name: str, pg_database: str) -> None:
    uploads: list[str] = []
    services.store.client.meta.events.register(  # type: ignore[attr-defined]
        "before-send.s3.UploadPart", lambda request, **_: uploads.append(request.url) and None)
    result = run(services, "backup")
    assert result.outcome is Outcome.SUCCEEDED, result.detail
    assert len(uploads) >= 2  # multipart, streamed from the pipe

    [entry] = list_backups(services, "staging")
    assert (entry.store, entry.complete) == ("s3", True)
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket_name)["Contents"])
    assert keys == [f"food-management/staging/{entry.id}/{name}" for name in ("db.pgdump.zst", "manifest.json")]
    head = s3_client.head_object(Bucket=bucket_name, Key=f"food-management/staging/{entry.id}/db.pgdump.zst")
    assert head["ServerSideEncryption"] == "AES256"

    verified = run(services, "verify", backup_id=entry.id)
    assert verified.outcome is Outcome.SUCCEEDED, verified.detail
    [entry] = list_backups(services, "staging")
    assert entry.verified_at is not None and entry.restore_s is not None

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('DELETE FROM "Ingredient" WHERE id > 100')
    restored = run(services, "migrate-rollback", backup_id=entry.id)
    assert restored.outcome is Outcome.SUCCEEDED, restored.detail
    with psycopg.connect(pg_database) as conn:
        assert conn.execute('SELECT count(*) FROM "Ingredient"').fetchone() == (ROWS,)


def failing_part(part: int) -> Callable[..., Any]:
    def hook(request: Any, **_: Any) -> Any:
        if f"partNumber={part}" in request.url:
            body = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            raw = type("Raw", (), {"stream": lambda self, **k: iter([body]), "read": lambda self, *a: body})()
            return AWSResponse(request.url, 500, {"Content-Type": "application/xml"}, raw)
        return None

    return hook


def test_s3_failing_mid_upload_lists_no_partial_backup_and_leaves_no_parts(services: factory.Services,
                                                                           s3_client: Any, bucket_name: str) -> None:
    services.store.client.meta.events.register("before-send.s3.UploadPart", failing_part(2))  # type: ignore[attr-defined]
    result = run(services, "backup")

    assert result.outcome is Outcome.FAILED
    assert "part 2" in result.detail and "failed after" in result.detail and "testing" not in result.detail
    assert [b for b in list_backups(services, "staging") if b.complete] == []
    assert s3_client.list_multipart_uploads(Bucket=bucket_name).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket_name).get("KeyCount", 0) == 0


# --- retention after each backup ------------------------------------------------------------


@pytest.fixture
def small(tmp_path: Path, pg_database: str, s3_endpoint: str, s3_client: Any,
          bucket_name: str) -> Callable[..., factory.Services]:
    """Services on a small database (a backup of a few kB) whose new backups go to S3."""
    s3_client.create_bucket(Bucket=bucket_name)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Ingredient" (id serial PRIMARY KEY, name text NOT NULL)')
        conn.execute("""INSERT INTO "Ingredient" (name) SELECT 'i' || g FROM generate_series(1, 50) g""")

    def make(prune_after: bool | None = None) -> factory.Services:
        env = {"TEST_DB": pg_database, "AWS_KEY": "testing", "AWS_SECRET": "testing"}
        config = config_module.load(release_toml(tmp_path, s3_endpoint, bucket_name, prune_after), env)
        return factory.build(config, state=tmp_path / "state")

    return make


def s3_ids(s3_client: Any, bucket: str) -> set[str]:
    listed = s3_client.list_objects_v2(Bucket=bucket, Prefix="food-management/staging/").get("Contents", [])
    return {o["Key"].split("/")[2] for o in listed}


@pytest.mark.parametrize("prune_after", [None, False])  # None: the default, on
def test_a_backup_to_s3_then_deletes_there_those_past_retention_keeping_pinned_and_newest(
        small: Callable[..., factory.Services], s3_client: Any, bucket_name: str, prune_after: bool | None) -> None:
    services = small(prune_after)
    now = time.time()
    planted = plant_history(services.store, "staging", now)
    [local] = services.other_stores
    old_local = plant_backup(local, "staging", 70, now)  # from before S3 was configured

    events: list[Event] = []
    asked: list[ConfirmationNeeded] = []
    result = services.runner.run(build_operation(services, "backup", "staging", {}), events.append, yes(asked))

    assert result.outcome is Outcome.SUCCEEDED, result.detail
    [new] = s3_ids(s3_client, bucket_name) - set(planted.values())
    retention = next(e.detail for e in events if isinstance(e, StepFinished) and e.step_id == "retention")
    if prune_after is False:
        assert asked == []
        assert s3_ids(s3_client, bucket_name) == {new, *planted.values()}
        assert retention.startswith("skipped: [backup] prune_after = false")
        return
    assert s3_ids(s3_client, bucket_name) == {new, planted["pinned-45"], planted["newest-40"], planted["recent-10"]}
    lines = [e.text for e in events if isinstance(e, LogLine) and e.step_id == "retention"]
    assert f"keep staging/{planted['pinned-45']} in s3 (45 days old): pinned to v1.3.9" in lines
    assert f"keep staging/{planted['newest-40']} in s3 (40 days old): one of the newest 3" in lines
    assert f"would delete staging/{planted['gone-60']} in s3 (60 days old)" in lines
    assert retention == "2 of 2 past 30 days deleted from s3"
    assert [q.prompt.splitlines()[0] for q in asked] == ["Delete 2 backups past 30 days from s3 in staging?"]
    # Only the store the backup went to: the local directory's old backup waits for `backup prune`.
    assert {b.id for b in list_backups(services, "staging") if b.store == "local"} == {old_local}
    assert not any(old_local in line for line in lines)


def test_a_retention_that_fails_keeps_the_backup_and_says_so(small: Callable[..., factory.Services],
                                                             s3_client: Any, bucket_name: str) -> None:
    services = small()
    planted = plant_history(services.store, "staging", time.time())
    services.store.client.meta.events.register("before-send.s3.DeleteObject", denied)  # type: ignore[attr-defined]
    events: list[Event] = []
    result = services.runner.run(build_operation(services, "backup", "staging", {}), events.append, yes([]))

    assert result.outcome is Outcome.FAILED and result.failed_step == "retention"
    [new] = s3_ids(s3_client, bucket_name) - set(planted.values())
    assert result.detail.startswith(f"backup {new} is complete and kept, but retention failed: 2 of 2 backups")
    assert "AccessDenied" in result.detail
    done = {e.step_id: e for e in events if isinstance(e, StepFinished)}
    assert done["backup"].status is StepStatus.DONE
    warnings = [e.text for e in events if isinstance(e, LogLine) and e.level == "warning"]
    assert any(w.startswith(f"WARNING: retention failed, backup {new} is complete and kept") for w in warnings)
    assert next(b for b in list_backups(services, "staging") if b.id == new).complete
    final = events[-1]
    assert isinstance(final, Finished) and final.next_options[0] == "retry this step: only the retention runs again"

    # Once deleting is allowed again, a retry of the step alone finishes the job.
    services.store.client.meta.events.unregister("before-send.s3.DeleteObject", denied)  # type: ignore[attr-defined]
    record = services.journal.get(result.op_id)
    op = build_operation(services, "backup", "staging", {})
    op.id = record.id
    retried = services.runner.run(op, events.append, yes([]), start_at=record.resume_index, state=record.state)
    assert retried.outcome is Outcome.SUCCEEDED, retried.detail
    assert s3_ids(s3_client, bucket_name) == {new, planted["pinned-45"], planted["newest-40"], planted["recent-10"]}


def yes(asked: list[ConfirmationNeeded]) -> Callable[[ConfirmationNeeded], str]:
    """An operator who says yes (staging asks no name typed), noting each question in `asked`."""

    def answer(question: ConfirmationNeeded) -> str:
        asked.append(question)
        return "yes"

    return answer


def denied(request: Any, **_: Any) -> Any:
    """S3 refusing deletions, as for a backup writer without s3:DeleteObject."""
    body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    raw = type("Raw", (), {"stream": lambda self, **k: iter([body]), "read": lambda self, *a: body})()
    return AWSResponse(request.url, 403, {"Content-Type": "application/xml"}, raw)
