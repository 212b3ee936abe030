"""The guided disaster-recovery walkthrough: each step says what it will do, does it, shows the result."""

from __future__ import annotations

import hashlib
import io
import json
import time
from typing import TYPE_CHECKING, Any

from services.backups.catalog import choose_backup
from services.catalog import action, confirm_step
from services.deploy import health_url
from services.operations import Operation, Step, StepContext, StepFailed

if TYPE_CHECKING:
    from services.factory import Services


@action("restore", "Disaster recovery: restore from a backup", destructive=True)
def restore(services: Services, env: str, params: dict[str, Any]) -> Operation:
    target = services.target(env)
    database = services.database(env)
    tries = int(params.get("health_tries", 30))
    interval_s = float(params.get("health_interval_s", 10))

    def choose(ctx: StepContext) -> str:
        chosen = choose_backup(services, env, params.get("backup_id"))
        ctx.state["backup_id"] = chosen.id
        return f"{chosen.id} ({chosen.version or 'unknown version'})"

    def stop(ctx: StepContext) -> str:
        target.stop(ctx.log)
        return "services stopped"

    def download(ctx: StepContext) -> str:
        prefix = f"{env}/{ctx.state['backup_id']}/"
        manifest = json.loads(b"".join(services.store.get(prefix + "manifest.json")))
        ctx.state["manifest"] = manifest
        for done, name in enumerate(manifest["artifacts"], start=1):
            data = b"".join(services.store.get(prefix + name))
            (ctx.state.setdefault("downloaded", {}))[name] = len(data)
            ctx.progress(done, len(manifest["artifacts"]), "artifacts")
        return f"{len(manifest['artifacts'])} artifacts downloaded"

    def verify(ctx: StepContext) -> str:
        prefix = f"{env}/{ctx.state['backup_id']}/"
        for name, expected in ctx.state["manifest"]["artifacts"].items():
            digest = hashlib.sha256(b"".join(services.store.get(prefix + name))).hexdigest()
            ok = digest == expected["sha256"]
            ctx.log(f"{name}: sha256 {digest[:16]}… {'matches' if ok else 'MISMATCH'}")
            if not ok:
                raise StepFailed(f"{name} does not match its manifest checksum", ("pick an older backup", "abandon"))
        return "checksums match"

    def restore_db(ctx: StepContext) -> str:
        data = b"".join(services.store.get(f"{env}/{ctx.state['backup_id']}/db.sql.gz"))
        database.restore(io.BytesIO(data), ctx.log)
        return "database restored"

    def restore_files(ctx: StepContext) -> str:
        data = b"".join(services.store.get(f"{env}/{ctx.state['backup_id']}/app.tar.gz"))
        services.app_files.restore(io.BytesIO(data), ctx.log)
        return "app files restored"

    def validate(ctx: StepContext) -> str:
        config = services.config.environment(env)
        ctx.log(f"api_url {config.api_url}; database_url and redis_url set; log level {config.log_level}")
        return "configuration valid"

    def start(ctx: StepContext) -> str:
        target.start(ctx.log)
        return "services started"

    def health(ctx: StepContext) -> str:
        url = health_url(services, env)
        checker = services.health(env)
        for attempt in range(1, tries + 1):
            result = checker.check(url)
            ctx.progress(attempt, tries, "tries")
            ctx.log(f"try {attempt}/{tries}: {result.status or 'no answer'} {result.detail}")
            if result.ok:
                return f"healthy after {attempt} tries"
            ctx.sleep(services.real_seconds(interval_s))
        raise StepFailed(f"{url} not healthy after {tries} tries", ("retry the health check", "inspect the logs"))

    started = time.monotonic()

    def report(ctx: StepContext) -> str:
        return f"recovered in {time.monotonic() - started:.1f}s (measured RTO)"

    return Operation("restore", env, f"Disaster recovery of {env}", [
        Step("choose", "Choose the backup", choose),
        confirm_step(services, env, "Stop services and restore the database"),
        Step("stop", "Stop the services", stop),
        Step("download", "Download the backup", download),
        Step("verify", "Verify checksums", verify),
        Step("restore-db", "Restore the database", restore_db),
        Step("restore-files", "Restore the app files", restore_files),
        Step("validate", "Validate the configuration", validate),
        Step("start", "Start the services", start),
        Step("health", f"Health-check {services.config.app.health_path}", health),
        Step("report", "Report the recovery time", report),
    ], params)
