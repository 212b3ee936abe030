"""`[notify]` in release.toml: where notifications go, by event and severity.

Each `[[notify.routes]]` names the events it takes (globs: "operation.failed", "monitor.*"), the
least severity it takes, a payload format, and where to send it. The URL and a PagerDuty routing
key are secrets: give them as ${VAR}, like the database URLs. The older `[notify] webhook_url`
still works: it is one Slack route for every event.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

SEVERITIES = ("info", "warning", "critical")
Severity = Literal["info", "warning", "critical"]
Format = Literal["slack", "json", "pagerduty"]
PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
# Every event the console sends: a route's globs are checked against these, so a typo is an error.
EVENTS = (
    "operation.started", "operation.succeeded", "operation.failed", "operation.cancelled",
    "operation.rolled_back", "migration.applied", "migration.failed", "backup.failed", "verify.failed",
    "restore.started", "restore.completed", "lock.taken_over", "lock.broken",
    "monitor.rollback", "monitor.scale_up", "monitor.promote", "monitor.passed",
)
_GLOB = re.compile(r"^[a-z_*?]+(\.[a-z_*?]+)?$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_url(value: SecretStr | None) -> SecretStr | None:
    """An http(s) URL; refused naming only its scheme, as the URL itself holds the token."""
    if value is not None and not re.match(r"^https?://[^/\s]+", value.get_secret_value()):
        raise ValueError("must be an http:// or https:// URL (value not shown)")
    return value


class NotifyRoute(_Strict):
    name: str = Field("", pattern=r"^[A-Za-z0-9._-]*$", description="shown in the audit trail; default: route-N")
    events: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    min_severity: Severity = "info"
    format: Format = "slack"
    url: SecretStr | None = Field(None, description="where to POST, as ${VAR} (PagerDuty: its Events v2 URL)")
    routing_key: SecretStr | None = Field(None, description="PagerDuty's integration key, as ${VAR}")
    channel: str | None = None  # Slack only

    _url = field_validator("url")(_secret_url)

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        for glob in value:
            if not _GLOB.match(glob):
                raise ValueError(f"{glob!r} is not an event glob such as \"operation.failed\" or \"monitor.*\"")
            if not any(_matches(event, glob) for event in EVENTS):
                raise ValueError(f"{glob!r} matches no event; events: {', '.join(EVENTS)}")
        return value

    @model_validator(mode="after")
    def _has_a_receiver(self) -> NotifyRoute:
        if self.format == "pagerduty" and self.routing_key is None:
            raise ValueError("format \"pagerduty\" needs routing_key (a ${VAR})")
        if self.format != "pagerduty" and self.url is None:
            raise ValueError(f"format {self.format!r} needs url (a ${{VAR}})")
        if self.format != "pagerduty" and self.routing_key is not None:
            raise ValueError("routing_key is for format \"pagerduty\" only")
        return self

    def takes(self, event: str, severity: str) -> bool:
        return (rank(severity) >= rank(self.min_severity)
                and any(_matches(event, glob) for glob in self.events))


class NotifyConfig(_Strict):
    webhook_url: SecretStr | None = None  # older form: one Slack route for every event
    channel: str = "#deployments"
    routes: list[NotifyRoute] = Field(default_factory=list)
    attempts: int = Field(4, ge=1, le=10, description="tries per notification before it is given up")
    backoff_s: float = Field(1.0, gt=0, le=60, description="the first retry's wait; doubled at each next one")
    timeout_s: float = Field(10.0, gt=0, le=60, description="each HTTP request's bound")
    flush_s: float = Field(5.0, ge=0, le=60, description="how long quitting waits for pending notifications")

    _webhook_url = field_validator("webhook_url")(_secret_url)

    def all_routes(self) -> list[NotifyRoute]:
        """The routes, named; the older webhook_url as the first."""
        routes = list(self.routes)
        if self.webhook_url is not None:
            routes.insert(0, NotifyRoute(name="webhook", url=self.webhook_url, channel=self.channel))
        return [r if r.name else r.model_copy(update={"name": f"route-{i + 1}"}) for i, r in enumerate(routes)]


def rank(severity: str) -> int:
    return SEVERITIES.index(severity) if severity in SEVERITIES else 0


def _matches(event: str, glob: str) -> bool:
    pattern = re.escape(glob).replace(r"\*", "[a-z_.]*").replace(r"\?", "[a-z_]")
    return re.fullmatch(pattern, event) is not None
