"""Deploy, canary steering, rollback and history as operations, end to end: the factory's real
adapters, the Docker host target behind the rig's nginx, the registry, and the revision history
and Prisma migrations in a real PostgreSQL database. Also the CLI against the Kubernetes API
emulator."""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes
import pytest
from conftest import Nginx
from rig import config_builder as toml
from rig.helpers import write_migration
from rig.opkit import finished, logs, run, steps
from rig.sample_app import build_derived
from rig.tcp_count import CountingRelay
from rig.traffic import Traffic, get_version, shares

from console import cli
from services import factory
from services.adapters.docker_target import APP
from services.catalog import build_operation
from services.core import config as config_module
from services.core.events import Event, Finished, LogLine, Outcome, StepStarted
from services.core.operations import Result
from services.environments.overview import environment_rows

INIT = 'CREATE TABLE "Item" ("id" INTEGER PRIMARY KEY, "legacy" TEXT);\n'
DROP_LEGACY = 'ALTER TABLE "Item" DROP COLUMN "legacy";\n'


@pytest.fixture
def app_dir(tmp_path: Path, nginx: Nginx, repository: str, request: pytest.FixtureRequest) -> Path:
    """release.toml for one app on the rig's engine, nginx and registry, in staging; the engine over
    its local socket, or over ssh:// (parametrize app_dir indirectly with "ssh")."""
    low = 21000 + (uuid.uuid4().int % 400) * 20
    engine = (str(request.getfixturevalue("ssh_docker_url")) if getattr(request, "param", "unix") == "ssh"
              else os.environ["RC_DOCKER_URL"])
    return toml.staging_app(tmp_path / "app", nginx, engine, low,
                            name=f"rc-ops-{uuid.uuid4().hex[:8]}", image=repository)


@pytest.fixture
def services(app_dir: Path, pg_database: str, docker_client: Any, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[factory.Services]:
    monkeypatch.setenv("TEST_DB", pg_database)
    config = config_module.load(app_dir / "release.toml", {"TEST_DB": pg_database})
    built = factory.build(config, state=app_dir / "state")
    yield built
    built.close()  # an ssh:// target's connection, clients
    for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={config.app.name}"}):
        container.remove(force=True)


def revisions(services: factory.Services) -> list[tuple[int, str, str]]:
    return [(r.number, r.image.rsplit(":", 1)[1], r.action) for r in services.revisions("staging").list()]


def test_deploy_migrate_rollback_warns_and_history_records_each(
        services: factory.Services, app_dir: Path, repository: str, nginx: Nginx) -> None:
    deployed, events, asked = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")
    assert deployed.outcome is Outcome.SUCCEEDED, deployed.detail
    assert steps(events) == ["resolve", "plan", "confirm", "apply", "record", "health"]
    assert "Plan: create container" in asked[0].prompt
    assert get_version(nginx) == "1.0.0"
    [first] = services.revisions("staging").list()
    assert first.digest == services.registry.digest(f"{repository}:1.0.0") and first.digest.startswith("sha256:")
    assert (first.migration_head, first.backup_id) == (None, None)

    migrations = app_dir / "prisma" / "migrations"
    write_migration(migrations, "20240105093000_init", INIT)
    assert run(services, "migrate", "staging", typed="yes")[0].outcome is Outcome.SUCCEEDED
    assert run(services, "deploy", "staging", {"version": "2.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    second = services.revisions("staging").list()[-1]
    assert second.migration_head == "20240105093000_init"
    assert second.backup_id  # the migration's backup, taken before

    write_migration(migrations, "20240201093000_drop_legacy", DROP_LEGACY)
    assert run(services, "migrate", "staging", typed="yes")[0].outcome is Outcome.SUCCEEDED
    assert run(services, "deploy", "staging", {"version": "3.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED

    reason = "3.0.0 corrupts carts; 2.0.0 never reads Item.legacy"
    with Traffic(nginx) as traffic:
        back, events, asked = run(services, "rollback", "staging", {"revision": "2"}, reason=reason, typed="yes")
    traffic.check()
    assert back.outcome is Outcome.SUCCEEDED, back.detail
    assert [text for text, _ in logs(events, "choose") if text.startswith("WARNING")] == [
        'WARNING 20240201093000_drop_legacy: dropping-column: ALTER TABLE "Item" DROP COLUMN "legacy"']
    assert asked[0].free_text and "predates 1 migration change" in asked[0].prompt
    assert services.audit.tail(1)[0]["override_reason"] == reason
    assert get_version(nginx) == "2.0.0"
    assert revisions(services) == [(1, "1.0.0", "deploy"), (2, "2.0.0", "deploy"), (3, "3.0.0", "deploy"),
                                   (4, "2.0.0", "rollback")]


@pytest.mark.parametrize("app_dir", ["unix", "ssh"], indirect=True)
def test_cancel_during_the_health_wait_puts_back_and_is_resumable(
        services: factory.Services, nginx: Nginx, docker_client: Any) -> None:
    """ctrl+x (the cancel event, set from another thread) while the target waits for a container that
    never becomes healthy: the operation ends cancelled at its apply step, the new container is gone,
    the old version serves on, and the journal offers the step for resume."""
    assert run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    cancel, waiting = threading.Event(), threading.Event()
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        if isinstance(event, LogLine) and event.text.startswith("waiting up to"):
            waiting.set()

    operation = build_operation(services, "deploy", "staging", {"version": "broken"})
    results: list[Result] = []
    worker = threading.Thread(target=lambda: results.append(
        services.runner.run(operation, emit, lambda question: "yes", cancel)))
    worker.start()
    assert waiting.wait(60), "the deploy never reached its health wait"
    cancel.set()
    worker.join(60)
    [result] = results

    assert result.outcome is Outcome.CANCELLED, result.detail
    assert result.failed_step == "apply"
    assert "cancelled by the operator while deploying" in result.detail
    assert "removed " in result.detail and "the upstream is unchanged: traffic goes to stable 1.0.0" in result.detail
    assert "resume from this step" in next(e for e in events if isinstance(e, Finished)).next_options
    record = services.journal.recent(1)[0]
    assert record.status == "cancelled"
    assert record.steps[record.resume_index].step_id == "apply"
    left = [(c.labels["release-console.version"], c.status) for c in docker_client.containers.list(
        all=True, filters={"label": f"{APP}={services.config.app.name}"})]
    assert left == [("1.0.0", "running")]  # the broken one is removed: put back as a failed deploy is
    assert get_version(nginx) == "1.0.0"
    assert services.audit.tail(1)[0]["outcome"].startswith("cancelled: ")


def test_the_environments_pane_over_ssh_opens_one_connection_for_the_session(
        tmp_path: Path, nginx: Nginx, repository: str, ssh_docker_url: str, pg_database: str,
        docker_client: Any) -> None:
    """The pane's read (environment_rows, what its 2 s poll calls) of an ssh:// Docker host, polled before
    and after a deploy, with the console's own services: one SSH connection for the whole session,
    counted where the sshd accepts them (a relay in front of it)."""
    sshd = urlsplit(ssh_docker_url)
    with CountingRelay((str(sshd.hostname), int(sshd.port or 22))) as relay:
        low = 21000 + (uuid.uuid4().int % 400) * 20
        app_dir = toml.staging_app(tmp_path / "app", nginx, f"ssh://{sshd.username}@127.0.0.1:{relay.port}", low,
                                   name=f"rc-ops-{uuid.uuid4().hex[:8]}", image=repository)
        config = config_module.load(app_dir / "release.toml", {"TEST_DB": pg_database})
        services = factory.build(config, state=app_dir / "state")
        try:
            assert environment_rows(services, ["staging"])[0].error is None
            assert run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0].outcome \
                is Outcome.SUCCEEDED
            for _ in range(5):
                [row] = environment_rows(services, ["staging"])
                assert (row.version, row.ready, row.error, row.drift) == ("1.0.0", "1/1", None, ())
            assert relay.accepted == 1
        finally:
            services.close()
            for container in docker_client.containers.list(all=True, filters={"label": f"{APP}={config.app.name}"}):
                container.remove(force=True)


def test_canary_start_step_promote_through_nginx(services: factory.Services, nginx: Nginx) -> None:
    assert run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED

    with Traffic(nginx) as traffic:
        started, _, _ = run(services, "canary-start", "staging", {"version": "2.0.0", "weight": "20"}, typed="yes")
    traffic.check()
    assert started.outcome is Outcome.SUCCEEDED, started.detail
    seen = shares(nginx)
    assert abs(100 * seen["2.0.0"] / sum(seen.values()) - 20) <= 5, seen

    stepped, _, _ = run(services, "step", "staging", {"weights": "50", "pause_s": "0"}, typed="yes")
    assert stepped.outcome is Outcome.SUCCEEDED and services.target("staging").status().canary_weight == 50

    with Traffic(nginx) as traffic:
        promoted, events, _ = run(services, "promote", "staging", typed="yes")
    traffic.check()
    assert promoted.outcome is Outcome.SUCCEEDED, promoted.detail
    assert finished(events)["health"].detail == "200 OK, version 2.0.0"
    assert set(shares(nginx, 50)) == {"2.0.0"}
    assert revisions(services) == [(1, "1.0.0", "deploy"), (2, "2.0.0", "promote")]


def test_health_compares_the_version_the_app_reports(services: factory.Services, nginx: Nginx, repository: str,
                                                    sample_app_image: Any, docker_client: Any) -> None:
    """2.5.0 is an old build under a new tag: it reports 1.0.0 whatever VERSION the target gives it.
    2.6.0's /api/health reports no version at all."""
    images = {"2.5.0": 'CMD ["/bin/sh", "-c", "VERSION=1.0.0 exec /bin/app-start"]',
              "2.6.0": "USER root\nRUN sed -i 's/,\"version\":\"%s\"//' /bin/app-start\nUSER app"}
    for tag, lines in images.items():
        build_derived(docker_client, sample_app_image.id, f"{repository}:{tag}", lines)
        for line in docker_client.images.push(repository, tag, stream=True, decode=True):
            assert "error" not in line, line
        docker_client.images.remove(f"{repository}:{tag}")
    deployed, events, _ = run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")
    assert deployed.outcome is Outcome.SUCCEEDED and finished(events)["health"].detail == "200 OK, version 1.0.0"

    stale, events, _ = run(services, "deploy", "staging", {"version": "2.5.0"}, typed="yes")
    assert stale.outcome is Outcome.FAILED and stale.failed_step == "health"
    assert stale.detail == "health answers 200 but reports version 1.0.0, expected 2.5.0 after 5 tries"
    assert [text for text, level in logs(events, "health") if level == "warning"] == [
        "health answers 200 but reports version 1.0.0, expected 2.5.0"] * 5
    assert services.target("staging").status().version == "2.5.0"  # its containers serve, reporting 1.0.0
    assert get_version(nginx) == "1.0.0"

    unversioned, events, _ = run(services, "deploy", "staging", {"version": "2.6.0"}, typed="yes")
    assert unversioned.outcome is Outcome.SUCCEEDED, unversioned.detail
    assert finished(events)["health"].detail == "200 OK; no version reported, not compared with 2.6.0"
    assert ("health answers 200 but reports no version: it could not be compared with 2.6.0", "warning") in logs(
        events, "health")


def test_dry_run_and_a_missing_image_change_nothing(services: factory.Services, nginx: Nginx,
                                                    docker_client: Any) -> None:
    assert run(services, "deploy", "staging", {"version": "1.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    before = app_containers(docker_client, services)

    planned, events, asked = run(services, "deploy", "staging", {"version": "2.0.0", "dry_run": True})
    assert planned.outcome is Outcome.SUCCEEDED and asked == []
    digest = services.registry.digest(f"{services.config.app.image}:2.0.0")
    assert any('+  image: "' in text and text.endswith(f':2.0.0@{digest}"') for text, _ in logs(events, "plan"))
    missing, _, _ = run(services, "deploy", "staging", {"version": "9.9.9"}, typed="yes")
    assert missing.outcome is Outcome.FAILED and missing.detail.endswith(":9.9.9 is not in the registry")

    assert app_containers(docker_client, services) == before
    assert get_version(nginx) == "1.0.0" and len(services.revisions("staging").list()) == 1


def test_cli_deploy_and_history_json(services: factory.Services, app_dir: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    config = str(app_dir / "release.toml")
    assert cli.main(["--config", config, "deploy", "--env", "staging", "--version", "1.0.0", "--yes"]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(["--config", config, "--json", "history", "--env", "staging"]) == cli.EXIT_OK
    [revision] = json.loads(capsys.readouterr().out)
    assert revision["image"].endswith(":1.0.0") and revision["action"] == "deploy"
    assert revision["digest"].startswith("sha256:") and revision["who"]


# --- Kubernetes, through the CLI ------------------------------------------------------------------------


@pytest.fixture
def kube_config(tmp_path: Path, kube_emulator: Any, pg_database: str, repository: str, run_sample_app: Any,
                monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """release.toml for production on the emulator; one per traffic split. Nothing runs pods there,
    so a sample app container stands for what the ingress serves (the health check's answer). It
    reports no version (an empty one): it is not what was deployed, so there is nothing to compare."""
    monkeypatch.setenv("TEST_DB", pg_database)
    monkeypatch.setenv("KUBE_TOKEN", kube_emulator.token)  # the emulator wants its bearer token
    ingress = run_sample_app(VERSION="")

    def write(split: str) -> str:
        target = toml.kubernetes_target("default", api_url=kube_emulator.host, token=toml.secret("KUBE_TOKEN"),
                                        traffic_split=split, host="food.example.com", ready_timeout_s=5)
        production = toml.environment(api_url=f"http://127.0.0.1:{ingress.port}/api", redis_url=toml.RIG_REDIS,
                                      production=True, target=target)
        path = toml.release({"production": production}, image=repository).write(tmp_path / f"{split}.toml")
        return str(path)

    return write


@pytest.mark.parametrize("split", ["ingress-nginx", "gateway-api"])
def test_cli_canary_on_kubernetes_needs_the_name_typed(
        kube_config: Callable[[str], str], kube_emulator: Any, split: str, capsys: pytest.CaptureFixture[str]) -> None:
    kube_emulator.emulator.reset()
    config = kube_config(split)
    base = ["--config", config]
    typed = ["--confirm-env", "production"]
    assert cli.main([*base, "deploy", "--env", "production", "--version", "1.0.0", *typed]) == cli.EXIT_OK
    assert "health answers 200 but reports no version: it could not be compared with 1.0.0" in capsys.readouterr().out
    assert cli.main([*base, "canary", "start", "--env", "production", "--version", "2.0.0", "--yes"]) \
        == cli.EXIT_DECLINED  # production: a yes is not enough
    assert cli.main([*base, "canary", "start", "--env", "production", "--version", "2.0.0", *typed]) == cli.EXIT_OK
    assert cli.main([*base, "canary", "step", "--env", "production", "--weights", "25,50", "--pause-s", "0",
                     *typed]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main([*base, "--json", "status", "--env", "production"]) == cli.EXIT_OK
    [row] = json.loads(capsys.readouterr().out)
    assert (row["version"], row["canary_version"], row["canary_weight"]) == ("1.0.0", "2.0.0", 50)

    assert cli.main([*base, "canary", "promote", "--env", "production", *typed]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main([*base, "--json", "history", "--env", "production"]) == cli.EXIT_OK
    history = json.loads(capsys.readouterr().out)
    assert [(r["image"].rsplit(":", 1)[1], r["action"]) for r in history] == [("1.0.0", "deploy"),
                                                                              ("2.0.0", "promote")]
    apps = kubernetes.client.AppsV1Api(kube_emulator.api_client)
    stable = apps.read_namespaced_deployment("food-management-stable", "default")
    assert stable.spec.template.spec.containers[0].image.endswith(f":2.0.0@{history[1]['digest']}")
    assert "food-management-canary" not in [d.metadata.name for d in apps.list_namespaced_deployment("default").items]


# --- digests: what runs is what was planned (or recorded), whatever the tag names by then -------------------


def push_build(docker_client: Any, base: str, repository: str, tag: str, marker: str) -> str:
    """Build `tag` FROM the sample app with ENV BUILD=marker (other bits under the same tag), push it and
    drop it locally, so a target has to pull it. Returns its image id."""
    build_derived(docker_client, base, f"{repository}:{tag}", f"ENV BUILD={marker}")
    image_id = str(docker_client.images.get(f"{repository}:{tag}").id)
    for line in docker_client.images.push(repository, tag, stream=True, decode=True):
        assert "error" not in line, line
    docker_client.images.remove(f"{repository}:{tag}")
    return image_id


def pushed_again_at_confirm(docker_client: Any, base: str, repository: str, tag: str,
                            moved: dict[str, str]) -> Callable[[Event], None]:
    """An on_event hook: once the plan is shown and the confirmation comes, `tag` is pushed again."""

    def hook(event: Event) -> None:
        if isinstance(event, StepStarted) and event.step_id == "confirm" and not moved:
            moved["id"] = push_build(docker_client, base, repository, tag, "second")

    return hook


def serving(docker_client: Any, services: factory.Services) -> list[Any]:
    return docker_client.containers.list(filters={"label": f"{APP}={services.config.app.name}"})


def app_containers(docker_client: Any, services: factory.Services) -> list[str]:
    """This app's containers, stopped ones too (other tests share the engine)."""
    return sorted(c.id for c in docker_client.containers.list(all=True,
                                                              filters={"label": f"{APP}={services.config.app.name}"}))


def test_a_tag_pushed_again_after_the_plan_does_not_change_what_a_deploy_runs(
        services: factory.Services, repository: str, sample_app_image: Any, docker_client: Any, nginx: Nginx) -> None:
    planned_id = push_build(docker_client, sample_app_image.id, repository, "4.0.0", "first")
    planned = services.registry.digest(f"{repository}:4.0.0")
    moved: dict[str, str] = {}
    hook = pushed_again_at_confirm(docker_client, sample_app_image.id, repository, "4.0.0", moved)

    deployed, events, _ = run(services, "deploy", "staging", {"version": "4.0.0"}, typed="yes", on_event=hook)
    assert deployed.outcome is Outcome.SUCCEEDED, deployed.detail
    assert (text := f"runs {repository}:4.0.0 at {planned}") in [t for t, _ in logs(events, "plan")], text
    assert services.registry.digest(f"{repository}:4.0.0") not in (None, planned)  # the tag did move
    [container] = serving(docker_client, services)
    assert container.attrs["Config"]["Image"] == f"{repository}:4.0.0@{planned}"
    assert container.image.id == planned_id != moved["id"]
    assert services.revisions("staging").list()[-1].digest == planned
    assert finished(events)["health"].detail == "200 OK, version 4.0.0" and get_version(nginx) == "4.0.0"

    scaled, _, _ = run(services, "scale", "staging", {"replicas": "2"}, typed="yes")  # more of what runs
    assert scaled.outcome is Outcome.SUCCEEDED, scaled.detail
    assert {(c.attrs["Config"]["Image"], c.image.id) for c in serving(docker_client, services)} == {
        (f"{repository}:4.0.0@{planned}", planned_id)}
    assert len(serving(docker_client, services)) == 2


def test_rollback_runs_the_recorded_digest_and_refuses_one_gone_from_the_registry(
        services: factory.Services, repository: str, sample_app_image: Any, docker_client: Any, nginx: Nginx,
        registry: str) -> None:
    first_id = push_build(docker_client, sample_app_image.id, repository, "5.0.0", "first")
    assert run(services, "deploy", "staging", {"version": "5.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    push_build(docker_client, sample_app_image.id, repository, "5.0.0", "second")  # the same tag, other bits
    assert run(services, "deploy", "staging", {"version": "5.0.0"}, typed="yes")[0].outcome is Outcome.SUCCEEDED
    first, second = services.revisions("staging").list()
    assert first.digest != second.digest

    back, events, _ = run(services, "rollback", "staging", typed="yes")  # the newest other bits: revision 1
    assert back.outcome is Outcome.SUCCEEDED, back.detail
    assert finished(events)["choose"].detail == f"revision 1: {repository}:5.0.0 at {first.digest[:19]}"
    [container] = serving(docker_client, services)
    assert (container.attrs["Config"]["Image"], container.image.id) == (f"{repository}:5.0.0@{first.digest}",
                                                                        first_id)
    assert services.revisions("staging").list()[-1].digest == first.digest and get_version(nginx) == "5.0.0"

    name = repository.split("/", 1)[1]  # garbage-collected: the registry no longer has revision 2's bits
    gone = httpx.delete(f"http://{registry}/v2/{name}/manifests/{second.digest}", timeout=30)
    assert gone.status_code == 202, gone.text
    before = app_containers(docker_client, services)
    refused, events, asked = run(services, "rollback", "staging", {"revision": "2"}, typed="yes")
    assert refused.outcome is Outcome.FAILED and refused.failed_step == "choose" and asked == []
    assert refused.detail.startswith(f"revision 2's image {repository}:5.0.0 at {second.digest} is no longer in"
                                     " the registry")
    options = next(e for e in events if isinstance(e, Finished)).next_options
    assert options == (
        f"roll back to revision 1 instead (5.0.0 at {first.digest[:19]}): release-console rollback --env staging"
        " --revision 1",
        "or deploy the tag as the registry has it today: release-console deploy --env staging --version 5.0.0")
    assert app_containers(docker_client, services) == before
    assert [r.number for r in services.revisions("staging").list()] == [1, 2, 3]


def test_a_tag_pushed_again_after_the_plan_does_not_change_the_kubernetes_template(
        kube_config: Callable[[str], str], kube_emulator: Any, repository: str, sample_app_image: Any,
        docker_client: Any, pg_database: str, tmp_path: Path) -> None:
    kube_emulator.emulator.reset()
    config = config_module.load(Path(kube_config("ingress-nginx")), os.environ)
    services = factory.build(config, state=tmp_path / "kube-state")
    for tag in ("6.0.0", "7.0.0"):
        push_build(docker_client, sample_app_image.id, repository, tag, "first")
    planned = services.registry.digest(f"{repository}:6.0.0")
    moved: dict[str, str] = {}
    hook = pushed_again_at_confirm(docker_client, sample_app_image.id, repository, "6.0.0", moved)

    deployed, events, _ = run(services, "deploy", "production", {"version": "6.0.0"}, typed="production",
                              on_event=hook)
    assert deployed.outcome is Outcome.SUCCEEDED, deployed.detail
    assert moved and services.registry.digest(f"{repository}:6.0.0") not in (None, planned)
    apps = kubernetes.client.AppsV1Api(kube_emulator.api_client)
    template = apps.read_namespaced_deployment("food-management-stable", "default").spec.template
    [container] = template.spec.containers
    assert container.image == f"{repository}:6.0.0@{planned}"
    assert {e.name: e.value for e in container.env}["VERSION"] == "6.0.0"
    assert template.metadata.labels["version"] == "stable"

    moved.clear()  # a canary too: started from the planned digest, and promoted as it runs
    planned = services.registry.digest(f"{repository}:7.0.0")
    hook = pushed_again_at_confirm(docker_client, sample_app_image.id, repository, "7.0.0", moved)
    started, _, _ = run(services, "canary-start", "production", {"version": "7.0.0"}, typed="production",
                        on_event=hook)
    assert started.outcome is Outcome.SUCCEEDED, started.detail
    assert moved and services.registry.digest(f"{repository}:7.0.0") != planned
    canary = apps.read_namespaced_deployment("food-management-canary", "default").spec.template
    assert canary.spec.containers[0].image == f"{repository}:7.0.0@{planned}"
    promoted, _, _ = run(services, "promote", "production", typed="production")
    assert promoted.outcome is Outcome.SUCCEEDED, promoted.detail
    stable = apps.read_namespaced_deployment("food-management-stable", "default").spec.template
    assert stable.spec.containers[0].image == f"{repository}:7.0.0@{planned}"
    assert services.revisions("production").list()[-1].digest == planned
