"""HTTP adapters: the /api/health checker (notification receivers: services/adapters/notify_http.py)."""

from __future__ import annotations

import httpx

from services.core.masking import mask_text
from services.core.ports import HealthResult


class HttpHealth:
    def __init__(self, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    def check(self, url: str) -> HealthResult:
        try:
            response = httpx.get(url, timeout=self.timeout_s)
        except httpx.HTTPError as err:
            return HealthResult(False, None, mask_text(f"{url}: {type(err).__name__}: {err}"))
        return HealthResult(response.is_success, response.status_code, mask_text(response.text[:200]),
                            _reported_version(response))


def _reported_version(response: httpx.Response) -> str | None:
    """The "version" of a JSON object body ({"status":"ok","version":"1.4.2"}); None if there is none."""
    try:
        body = response.json()
    except ValueError:  # not JSON
        return None
    version = body.get("version") if isinstance(body, dict) else None
    if isinstance(version, bool) or not isinstance(version, str | int | float) or str(version) == "":
        return None
    return mask_text(str(version))
