"""Two environments' settings side by side: flags, log level, where their URLs point (host, port and
database only), target, replicas and canary, with what differs marked.

A read: nothing is changed or audited. URLs never show a user, password or query: only where they
point, and the result still passes the masking choke point (a password in a host name, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import SecretStr

from services.core.config import DockerTarget, EnvironmentConfig, KubernetesTarget, ReleaseConfig
from services.core.masking import mask_text


@dataclass(frozen=True)
class DiffRow:
    key: str
    left: str
    right: str

    @property
    def differs(self) -> bool:
        return self.left != self.right


def where(url: str | SecretStr, scheme: bool = True) -> str:
    """Where a URL points, without its user, password, query or fragment: scheme://host[:port][/path],
    or without `scheme` host[:port][/database] only.

    The app's URLs are shown without their scheme: a `${VAR}`'s whole value is a masking literal, so
    a URL that carries no password (a staging Redis, say) would come out as the literal itself and be
    masked whole, on both sides, its difference lost. Host and database never equal that literal."""
    text = url.get_secret_value() if isinstance(url, SecretStr) else url
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises on an unparsable port
    except ValueError:  # say so rather than show the raw text
        return "(not a URL)"
    if not parts.hostname:
        return "(not a URL)"
    # The host and port as written (urlsplit's hostname is lower-cased): a registered secret that sits
    # in a host name must still match the masking choke point's literal, case and all.
    host_port = parts.netloc.rpartition("@")[2]
    located = f"{host_port}{parts.path.rstrip('/')}"
    return f"{parts.scheme}://{located}" if scheme else located


def settings(config: ReleaseConfig, env: str) -> dict[str, str]:
    """One environment's comparable settings, flattened to `key -> shown value`."""
    environment = config.environment(env)
    rows = {
        "production": _yes_no(environment.production),
        "log_level": environment.log_level,
        **{f"features.{name}": _yes_no(on) for name, on in environment.features.model_dump().items()},
        "api_url": where(environment.api_url, scheme=False),
        "database_url": where(environment.database_url, scheme=False),
        "redis_url": where(environment.redis_url, scheme=False),
        **_target(environment),
        **_canary(config, environment),
    }
    return {key: mask_text(value) for key, value in rows.items()}


def diff(config: ReleaseConfig, left: str, right: str) -> list[DiffRow]:
    """Every setting of both environments, in one order; a key one side lacks shows "-" there."""
    a, b = settings(config, left), settings(config, right)
    keys = list(a)
    for key in b:  # one the left lacks goes after the last of its section (target.*), not at the end
        if key not in keys:
            section = [i for i, k in enumerate(keys) if k.split(".")[0] == key.split(".")[0]]
            keys.insert(section[-1] + 1 if section else len(keys), key)
    return [DiffRow(key, a.get(key, "-"), b.get(key, "-")) for key in keys]


def _target(environment: EnvironmentConfig) -> dict[str, str]:
    target = environment.target
    rows: dict[str, str] = {"target.kind": target.kind}
    if isinstance(target, DockerTarget):
        docker_url = target.docker_url  # a socket path as it is; a remote engine's user is never shown
        rows |= {"target.docker_url": docker_url if docker_url.startswith("unix:") else where(docker_url),
                 "target.network": target.network, "target.ports": f"{target.ports[0]}-{target.ports[1]}",
                 "target.nginx.upstream_file": target.nginx.upstream_file,
                 "target.ready_timeout_s": str(target.ready_timeout_s)}
    elif isinstance(target, KubernetesTarget):
        rows |= {"target.namespace": target.namespace, "target.context": target.context or "(current)",
                 "target.api_url": where(target.api_url) if target.api_url else "(kubeconfig)",
                 "target.traffic_split": target.traffic_split, "target.host": target.host or "-",
                 "target.ready_timeout_s": str(target.ready_timeout_s)}
    return rows


def _canary(config: ReleaseConfig, environment: EnvironmentConfig) -> dict[str, str]:
    """Replicas and the canary as they apply to this environment's target."""
    target, canary = environment.target, config.canary
    if isinstance(target, DockerTarget):
        replicas, split = target.replicas, f"nginx upstream {target.nginx.upstream}"
    elif isinstance(target, KubernetesTarget):
        replicas, split = canary.stable_replicas, target.traffic_split
    else:
        return {"replicas": "-", "canary": "- (no deploy target)"}
    ladder = ", ".join(step.describe() for step in canary.ladder)
    return {"replicas": str(replicas), "canary.replicas": str(canary.canary_replicas), "canary.steps": ladder,
            "canary.split": split}


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"
