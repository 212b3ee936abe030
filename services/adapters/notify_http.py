"""Notification receivers over HTTP: Slack-compatible, generic JSON and PagerDuty Events v2.

The payload is built from a Notification already masked (services/core/notify.py); the URL and a
PagerDuty routing key are secrets, and an error names the receiver and the HTTP status only.
"""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from services.core.masking import mask_text
from services.core.notify import NotSent
from services.core.ports import Notification

PD_SEVERITY = {"critical": "critical", "warning": "warning", "info": "info"}


def text_of(message: Notification) -> str:
    """One line for a chat: severity, where, what version, what happened, who."""
    version = f" {message.version}" if message.version else ""
    who = f" ({message.operator})" if message.operator else ""
    return mask_text(f"[{message.severity}] {message.env}{version}: {message.reason} [{message.event}]{who}")


def slack(message: Notification, channel: str | None) -> dict[str, Any]:
    return {"text": text_of(message), **({"channel": channel} if channel else {})}


def generic(message: Notification) -> dict[str, Any]:
    return {"event": message.event, "severity": message.severity, "env": message.env,
            "operation": message.operation, "op_id": message.op_id, "version": message.version,
            "reason": message.reason, "operator": message.operator, "at": message.at}


def pagerduty(message: Notification, routing_key: str) -> dict[str, Any]:
    """Events v2: one alert per operation (dedup_key), so its later events update the same incident."""
    dedup = f"release-console/{message.env}/{message.op_id or message.event}"
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "payload": {
            "summary": text_of(message)[:1024],
            "source": f"release-console/{message.env}",
            "severity": PD_SEVERITY.get(message.severity, "info"),
            "component": message.operation or None,
            "group": message.env,
            "class": message.event,
            "custom_details": generic(message),
        },
    }


class HttpReceiver:
    def __init__(self, name: str, format: str, url: SecretStr, *, channel: str | None = None,
                 routing_key: SecretStr | None = None, timeout_s: float = 10.0) -> None:
        self.name, self.format, self.channel = name, format, channel
        self._url, self._routing_key, self.timeout_s = url, routing_key, timeout_s

    def payload(self, message: Notification) -> dict[str, Any]:
        if self.format == "pagerduty":
            assert self._routing_key is not None
            return pagerduty(message, self._routing_key.get_secret_value())
        if self.format == "json":
            return generic(message)
        return slack(message, self.channel)

    def send(self, message: Notification) -> None:
        try:
            response = httpx.post(self._url.get_secret_value(), json=self.payload(message), timeout=self.timeout_s)
        except httpx.HTTPError as err:
            # The exception's text carries the URL, which holds the receiver's token.
            raise NotSent(type(err).__name__) from None
        if not response.is_success:
            raise NotSent(f"HTTP {response.status_code}")
