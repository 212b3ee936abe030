"""The masking choke point: every URL/DSN form, registered literals, structures, events, streams,
and the sinks that route through it (journal, audit, traces, runner events)."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.core import config, masking
from services.core.audit import AuditLog
from services.core.events import ConfirmationNeeded, Event, StepFinished, StepStatus
from services.core.journal import Journal
from services.core.locks import FileLocks
from services.core.masking import MASK, MaskedStream, mask, mask_fields, mask_text
from services.core.operations import Operation, Runner, Step, StepContext

PW = "S3cr3t-pw"


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    masking.forget()
    yield
    masking.forget()


@pytest.mark.parametrize("text", [
    f"postgresql://app:{PW}@db:5432/food",
    f"postgres://app:{PW}@db/food",
    f"postgresql+psycopg2://app:{PW}@db/food",
    f"redis://:{PW}@cache:6379/0",
    f"rediss://default:{PW}@cache:6380",
    f"https://metrics:{PW}@prom.example/prometheus",
    f"host=db port=5432 password={PW} dbname=food",
    f"host=db password='{PW} with space' dbname=food",
    f'password="{PW}"',
    f"postgresql://app@db/food?password={PW}",
    f"postgresql://app@db/food?sslmode=require&password={PW}&x=1",
    f"PGPASSWORD={PW} pg_dump",
    f'{{"password": "{PW}"}}',
    f"{{'api_key': '{PW}'}}",
    f"cannot connect: {{'access_token': '{PW}'}}",
])
def test_every_form_is_masked_without_registration(text: str) -> None:
    masked = mask_text(text)
    assert PW not in masked and MASK in masked, masked


def every_form(text: str) -> str:
    """mask_text's forms without its hints: every regex run on every text."""
    for form in masking._FORMS:
        text = form.sub(masking._masked, text)
    return text


@pytest.mark.parametrize("text", [
    f"DB_PASSWORD={PW}", f"PgPassWd={PW}", f"export GITHUB_TOKEN={PW}", f"x-Api-Key={PW}", f"AWS_ACCESS_KEY={PW}",
    f"app_Credential: '{PW}'", f"Secret={PW}", f"mysql://u:{PW}@h", f"HTTPS://u:{PW}@h/x",
    f"[build] step 3/7 ok\nthen password={PW}\nmore", "[build] compiling module pkg.mod1 ... ok",
    f"token\u212a={PW}", f"\u2713 password={PW}", f"pa\u017f\u017fword={PW}", "nothing here: 42 % done",
])
def test_the_hints_skip_only_forms_that_cannot_match(text: str) -> None:
    # A text with none of a form's hints skips that form's regex: the result is what every form gives.
    assert mask_text(text) == every_form(text)


def test_forms_keep_what_is_not_secret() -> None:
    assert mask_text(f"postgresql://app:{PW}@db:5432/food") == f"postgresql://app:{MASK}@db:5432/food"
    assert mask_text(f"host=db password={PW} dbname=food") == f"host=db password={MASK} dbname=food"
    assert mask_text(f"http://h/?a=1&password={PW}&b=2") == f"http://h/?a=1&password={MASK}&b=2"
    for plain in ("https://example.com/api", "ssh://root@host:22", "listening on http://127.0.0.1:3000/",
                  "password: not set", "step 3/5 done", ""):
        assert mask_text(plain) == plain


def test_registered_literals_are_masked_anywhere_with_their_encoded_and_embedded_forms() -> None:
    masking.register(["npm-token-AbC/123", "https://hooks.example/services/T0/B0/XyZ987"])
    assert mask_text("ARG NPM_TOKEN npm-token-AbC/123 in layer") == f"ARG NPM_TOKEN {MASK} in layer"
    assert mask_text("q=npm-token-AbC%2F123") == f"q={MASK}"  # URL-encoded
    assert mask_text("POST https://hooks.example/services/T0/B0/XyZ987 failed") == f"POST {MASK} failed"


def test_a_registered_url_gives_up_its_password_too() -> None:
    masking.register([f"postgresql://app:{PW}@db/food"])
    # A library that reshapes the URL (or prints only the password) still shows nothing.
    assert PW not in mask_text(f"connection to db as app (password {PW}) failed")


def test_short_values_are_not_registered() -> None:
    masking.register(["3000", "true", "prod"])
    assert mask_text("port 3000, debug true, env prod") == "port 3000, debug true, env prod"
    assert masking.registered() == frozenset()


def test_mask_structures_keys_and_types() -> None:
    masked = mask({"database_url": "host=x", "token": "abc", "steps": ("a", f"postgres://u:{PW}@h"),
                   "n": 3, "status": StepStatus.DONE, "secret": SecretStr("x"), "empty_token": ""})
    assert masked == {"database_url": MASK, "token": MASK, "steps": ("a", f"postgres://u:{MASK}@h"), "n": 3,
                      "status": StepStatus.DONE, "secret": MASK, "empty_token": ""}
    assert type(masked["status"]) is StepStatus


def test_mask_fields_of_an_event_keeps_ids_and_enums() -> None:
    masking.register([PW])
    event = StepFinished("op-1", "dump", StepStatus.FAILED, f"pg_dump: password {PW} rejected")
    masked = mask_fields(event)
    assert (masked.op_id, masked.step_id, masked.status) == ("op-1", "dump", StepStatus.FAILED)
    assert masked.detail == f"pg_dump: password {MASK} rejected"
    question = mask_fields(ConfirmationNeeded("op", "s", f"restore with {PW}?", expected="production"))
    assert question.prompt == f"restore with {MASK}?" and question.expected == "production"


def test_masked_stream_masks_every_write() -> None:
    masking.register([PW])
    out = io.StringIO()
    stream = MaskedStream(out)
    print(f"status: {PW}", file=stream)  # type: ignore[arg-type]
    assert out.getvalue() == f"status: {MASK}\n"
    assert stream.getvalue() == out.getvalue()  # everything else reaches the stream itself


def test_config_registers_var_values_in_plain_fields_and_secretstrs(tmp_path: Path) -> None:
    path = tmp_path / "release.toml"
    path.write_text(f"""
[app]
name = "food"
image = "registry/food"
build_args = {{ NPM_TOKEN = "${{NPM_TOKEN}}" }}

[environments.staging]
api_url = "https://staging/api"
database_url = "${{DB}}"
redis_url = "redis://:{PW}-redis@cache:6379"

[environments.staging.metrics]
prometheus_url = "${{PROM}}"
""")
    config.load(path, {"NPM_TOKEN": "npm-AbCdEf-1", "DB": "host=db password=KwPass99 dbname=f",
                       "PROM": "https://m:PromPass77@prom"})
    text = mask_text("npm-AbCdEf-1 KwPass99 PromPass77 " + f"{PW}-redis")
    assert text == " ".join([MASK] * 4)


def test_the_runner_journal_and_audit_only_ever_see_masked_text(tmp_path: Path) -> None:
    masking.register([PW])
    journal, audit = Journal(tmp_path / "journal.sqlite3"), AuditLog(tmp_path / "audit.jsonl")
    seen: list[Event] = []

    def leaky(ctx: StepContext) -> str:
        ctx.log(f"connecting with {PW}")
        ctx.state["note"] = f"dsn host=db password={PW}"
        ctx.append([{"query": f"up{{pw='{PW}'}}"}])
        ctx.confirm(f"go on with {PW}?")
        raise RuntimeError(f"could not connect: FATAL password authentication failed for {PW}")

    operation = Operation("leaky", "staging", f"title {PW}", [Step("one", "One", leaky)],
                          params={"note": f"p {PW}"}, override_reason=f"because {PW}")
    runner = Runner(journal, audit, FileLocks(tmp_path / "locks"))
    runner.run(operation, seen.append, lambda question: seen.append(question) or "yes", threading.Event())
    assert seen and all(PW not in json.dumps(e.to_json(), default=str) for e in seen)
    assert PW not in (tmp_path / "audit.jsonl").read_text()
    with sqlite3.connect(tmp_path / "journal.sqlite3") as db:
        dump = "\n".join(db.iterdump())
    assert PW not in dump and MASK in dump


def test_the_webhook_payload_and_the_operation_log_file_are_masked(tmp_path: Path) -> None:
    import http.server

    from services.adapters.notify_http import HttpReceiver
    from services.core.oplog import LogFile
    from services.core.ports import Notification

    masking.register([PW])
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    HttpReceiver("webhook", "slack", SecretStr(url), channel="#deploys").send(
        Notification("staging", "1.0.0", f"rolled back: {PW}"))
    server.server_close()
    assert bodies and PW not in bodies[0].decode() and MASK in bodies[0].decode()

    log = LogFile(tmp_path / "op.log")
    log.write([f"step 1 uses {PW}", f"redis://:{PW}@cache"])
    log.close()
    assert PW not in (tmp_path / "op.log").read_text()
