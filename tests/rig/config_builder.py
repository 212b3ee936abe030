"""release.toml for the tests: typed pieces in, a file or a loaded config out.

    from rig import config_builder as toml

    toml.release(toml.staging_and_production(), backup=toml.backup(s3=toml.s3_store(bucket, endpoint_url=url)),
                 migrations={"dir": "migrations"}).load(tmp_path / "release.toml", {"TEST_DB": dsn})

Tests import it as `toml`: its pieces' names (backup, prometheus, environment) are common words there.

Each piece is a function whose keywords are the keys tests set. A key left None is not written, so
the loader's default applies; `**more` passes any other key of that table through as it is. The
real loader (services.core.config) checks them all, so the builder never drifts from the models
and a misspelt key still fails the test that wrote it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from services.core import config as config_module
from services.core.config import ReleaseConfig

Table = dict[str, Any]

IMAGE = "127.0.0.1:5000/food-management"
NO_API = "http://127.0.0.1:1/api"  # port 1: nothing answers there
NO_REDIS = "redis://127.0.0.1:1"
# The rig's Redis (tests/rig/run exports it, with its password); outside the rig, an address with nothing
# on it, as NO_REDIS: a release outside production probes it before it asks (or does not ask).
RIG_REDIS = os.environ.get("RC_REDIS_URL", "redis://127.0.0.1:6379/0")


def secret(name: str) -> str:
    """A ${VAR} reference: the loader reads it from the environment it is given, as a secret."""
    return "${" + name + "}"


TEST_DB = secret("TEST_DB")


# --- environments ---------------------------------------------------------------------------------


def environment(*, api_url: str = NO_API, database_url: str = TEST_DB, redis_url: str = NO_REDIS,
                production: bool = False, app_dir: str | Path | None = None, target: Table | None = None,
                metrics: Table | None = None, stop: Sequence[str] | None = None, start: Sequence[str] | None = None,
                **more: Any) -> Table:
    """[environments.<name>]: by default on the TEST_DB database, with an API and a Redis nobody
    serves. `stop` and `start` are the service commands (argument lists) of a host without a target."""
    services = None if stop is None and start is None else {"stop": stop, "start": start}
    return {"api_url": api_url, "database_url": database_url, "redis_url": redis_url,
            "production": production or None, "app_dir": app_dir, "services": services, **more,
            "target": target, "metrics": metrics}


def staging_and_production(**where: Any) -> dict[str, Table]:
    """The usual pair: staging, and production marked as such; `where` goes to both environments."""
    return {"staging": environment(**where), "production": environment(**where, production=True)}


def docker_target(nginx: Table, *, docker_url: str | None = None, ports: tuple[int, int] | None = None,
                  **more: Any) -> Table:
    """A Docker host target (a unix://, tcp:// or ssh:// engine) behind the nginx that splits traffic."""
    return {"kind": "docker", "docker_url": docker_url, "ports": ports, **more, "nginx": nginx}


def nginx_split(upstream_file: str | Path, *, upstream: str | None = None, reload: Sequence[str] | None = None
                ) -> Table:
    return {"upstream_file": upstream_file, "upstream": upstream, "reload": reload}


class RigNginx(Protocol):
    """What the rig's `nginx` fixture offers (tests/conftest.py)."""

    url: str
    upstream_file: Path
    upstream: str
    reload: list[str]


def rig_docker_target(nginx: RigNginx, docker_url: str, low_port: int, *, reload: Sequence[str] | None = None,
                      **more: Any) -> Table:
    """A Docker host target on the rig: 20 host ports from `low_port`, short timeouts, the split
    through the `nginx` fixture's nginx (reloaded by `reload` if given)."""
    split = nginx_split(nginx.upstream_file, upstream=nginx.upstream, reload=reload or nginx.reload)
    # drain_s is a bound: the drain ends when nginx has no connection left to the old container, so the
    # tests' traffic checks that count, not a sleep.
    quick = {"ready_timeout_s": 20, "stop_timeout_s": 2, "drain_s": 5}
    return docker_target(split, docker_url=docker_url, ports=(low_port, low_port + 19), **{**quick, **more})


def rig_staging(nginx: RigNginx, docker_url: str, low_port: int, *, env: Mapping[str, str] | None = None,
                **more: Any) -> Table:
    """The staging the deploy and canary tests and benches share: the app behind the `nginx` fixture's
    nginx on a Docker host target, the rig's Redis, and containers that make no traffic of their own
    (`env`, the containers' environment, replaces that)."""
    quiet = {"SYNTHETIC_RPS": "0", "LATENCY_MS": "0"} if env is None else env
    target = rig_docker_target(nginx, docker_url, low_port, env=quiet)
    return environment(**{"api_url": f"{nginx.url}/api", "redis_url": RIG_REDIS, "target": target, **more})


def kubernetes_target(namespace: str, *, api_url: str | None = None, token: str | None = None,
                      traffic_split: str | None = None, host: str | None = None, **more: Any) -> Table:
    """A Kubernetes target: the API at `api_url` with `token`, or the kubeconfig's cluster without them."""
    return {"kind": "kubernetes", "namespace": namespace, "api_url": api_url, "token": token,
            "traffic_split": traffic_split, "host": host, **more}


def prometheus(url: str, *, selectors: Mapping[str, str] | None = None, **more: Any) -> Table:
    """An environment's metrics from Prometheus; `selectors` per series (canary, stable)."""
    return {"prometheus_url": url, "selectors": selectors, **more}


def scrape(*, stable: Sequence[str], canary: Sequence[str]) -> Table:
    """An environment's metrics read from the app's /metrics URLs, without Prometheus."""
    return {"scrape": {"stable": stable, "canary": canary}}


# --- backups --------------------------------------------------------------------------------------


def backup(local_dir: str | Path = "backups", *, s3: Table | None = None, signing_key: str | None = None,
           compression: str | None = None, **more: Any) -> Table:
    """[backup]: the local store (relative to the working directory), S3 beside it if given."""
    return {"local_dir": local_dir, "compression": compression, "signing_key": signing_key, **more, "s3": s3}


def s3_store(bucket: str, *, endpoint_url: str | None = None, prefix: str | None = None,
             access_key_id: str | None = None, secret_access_key: str | None = None, **more: Any) -> Table:
    return {"bucket": bucket, "prefix": prefix, "endpoint_url": endpoint_url, "access_key_id": access_key_id,
            "secret_access_key": secret_access_key, **more}


# --- the file -------------------------------------------------------------------------------------


def release(environments: Mapping[str, Table], *, name: str = "food-management", image: str = IMAGE,
            app: Table | None = None, **sections: Table | None) -> ReleaseToml:
    """The whole file: [app] (`app` adds keys beside name and image), the environments, then each
    section given: backup, migrations, canary, metrics, build, notify, audit, state, recovery, keys..."""
    tree = {"app": {"name": name, "image": image, **(app or {})}, "environments": dict(environments), **sections}
    return ReleaseToml(_plain(tree))


def staging_app(directory: Path, nginx: RigNginx, docker_url: str, low_port: int, name: str, image: str) -> Path:
    """`directory` with release.toml for one app (`name`, `image`) in staging behind the `nginx`
    fixture's nginx (rig_staging), gzip backups and an empty Prisma migrations dir: what the
    operation tests run against with the factory's real adapters."""
    migrations = directory / "prisma" / "migrations"
    migrations.mkdir(parents=True)
    (migrations / "migration_lock.toml").write_text('provider = "postgresql"\n')
    release({"staging": rig_staging(nginx, docker_url, low_port)}, name=name, image=image,
            backup=backup(compression="gzip"),
            migrations={"dir": "prisma/migrations", "integrity_tables": [], "reindex_tables": []},
            ).write(directory / "release.toml")
    return directory


@dataclass(frozen=True)
class ReleaseToml:
    tree: Table  # TOML-ready: no None, lists not tuples, strings not paths

    def text(self) -> str:
        return render(self.tree)

    def write(self, path: Path) -> Path:
        path.write_text(self.text(), encoding="utf-8")
        return path

    def load(self, path: Path, env: Mapping[str, str]) -> ReleaseConfig:
        """Written to `path`, then read as the console reads it: through the loader, ${VAR}s from `env`."""
        return config_module.load(self.write(path), env)

    def parse(self, env: Mapping[str, str]) -> ReleaseConfig:
        """The same tree through the loader's parse, without a file."""
        return config_module.parse(_plain(self.tree), env)


def _plain(node: Any) -> Any:
    """A copy without the None values; tuples become lists and paths strings."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items() if v is not None}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    return str(node) if isinstance(node, Path) else node


# --- TOML -----------------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render(tree: Table) -> str:
    """TOML for a tree of tables, strings, numbers, booleans and lists of them: each table's own
    keys, then its tables as [a.b] sections (a table holding only tables gets no header)."""
    lines: list[str] = []
    _table(tree, (), lines)
    return "\n".join(lines).lstrip("\n") + "\n"


def _table(table: Table, path: tuple[str, ...], lines: list[str]) -> None:
    own = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    if path and (own or not table):
        lines += ["", f"[{'.'.join(_key(p) for p in path)}]"]
    lines += [f"{_key(k)} = {_value(v)}" for k, v in own.items()]
    for key, value in table.items():
        if isinstance(value, Mapping):
            _table(value, (*path, key), lines)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's; TOML also wants DEL escaped, and no surrogate pairs (ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):  # of values, or of tables inline: [{weight = 10, pause = "5m"}]
        return f"[{', '.join(_value(v) for v in value)}]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"release.toml cannot hold {value!r} here")
