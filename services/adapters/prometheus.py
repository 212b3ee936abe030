"""The canary's metrics from Prometheus' HTTP API (instant queries through httpx).

One query per series and metric: the app's query (config `[metrics].queries`) with `$selector`
replaced by the series' label matchers and `$window` by the rate window. A value Prometheus
cannot give (no series, NaN, several series, an error, Prometheus down or slow) is None with its
reason, never an exception and never a number that looks healthy.
"""

from __future__ import annotations

import math
import re
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from services.core.config import EnvironmentMetrics, MetricsConfig, ReleaseConfig
from services.core.ports import MetricSnapshot

_PLACEHOLDER = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
KNOWN_PLACEHOLDERS = ("selector", "window")


def redact(url: str) -> str:
    """The URL without user:password@, for describe(), reasons and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def render(query: str, selector: str, window: str) -> str:
    """The query for one series: $selector and $window substituted (also as ${selector})."""
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name == "selector":
            return selector
        if name == "window":
            return window
        return match.group(0)  # unknown: left for unknown_placeholders() to report

    return _PLACEHOLDER.sub(substitute, query)


def placeholders(query: str) -> list[str]:
    """The $names a query uses, e.g. ["selector", "window"]."""
    return [m.group(1) or m.group(2) for m in _PLACEHOLDER.finditer(query)]


@dataclass(frozen=True)
class Answer:
    """One instant query's outcome: a value, or None and why."""

    value: float | None
    reason: str = ""
    # value, empty, nan, inf, several (series), bad_query (400 bad_data: a typo), error (Prometheus
    # could not run it, or answered oddly), unreachable (no answer at all: no point asking again now)
    kind: str = "value"


def read_vector(body: Any) -> Answer:
    """The one value of a successful /api/v1/query answer (its JSON), or None and why."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return Answer(None, "malformed answer: no data", "error")
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _number(result[1])
    if kind != "vector" or not isinstance(result, list):
        return Answer(None, f"unexpected result type {kind!r}: the query must return one instant value", "error")
    if not result:
        return Answer(None, "empty result: no series matched (no data yet, or a selector that matches nothing)",
                      "empty")
    if len(result) > 1:
        return Answer(None, f"{len(result)} series returned: the query must return one (aggregate it, e.g. sum(...))",
                      "several")
    sample = result[0].get("value") if isinstance(result[0], dict) else None
    if not isinstance(sample, list) or len(sample) != 2:
        return Answer(None, "malformed answer: no value", "error")
    return _number(sample[1])


def _number(text: Any) -> Answer:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return Answer(None, f"not a number: {str(text)[:40]!r}", "error")
    if math.isnan(value):
        return Answer(None, "NaN: nothing to divide by in the window (e.g. no requests)", "nan")
    if math.isinf(value):
        return Answer(None, f"{'+' if value > 0 else '-'}Inf: division by zero in the query", "inf")
    return Answer(value)


class PrometheusMetrics:
    """MetricsSource over Prometheus' HTTP API, for one environment (`[environments.X.metrics]`)."""

    def __init__(self, config: ReleaseConfig, env: str, client: httpx.Client | None = None) -> None:
        metrics: EnvironmentMetrics = config.environment(env).metrics
        if not metrics.prometheus_url:
            raise ValueError(f"environments.{env}.metrics.prometheus_url is not set")
        self.env = env
        self.settings: MetricsConfig = config.metrics
        self.url = metrics.prometheus_url.rstrip("/")
        self.selectors = dict(metrics.selectors)
        self.queries = {**self.settings.queries, **metrics.queries}
        # where each query is configured, for validate()'s messages
        self.keys = {metric: f"environments.{env}.metrics.queries.{metric}" if metric in metrics.queries
                     else f"metrics.queries.{metric}" for metric in self.queries}
        self._client = client or httpx.Client(timeout=self.settings.timeout_s, follow_redirects=False)

    def describe(self) -> str:
        return f"prometheus {redact(self.url)} (window {self.settings.window})"

    def query_for(self, series: str, metric: str) -> str:
        """The PromQL sent for one series and metric (for the decision trace)."""
        return render(self.queries[metric], self.selectors[series], self.settings.window)

    def query(self, promql: str) -> Answer:
        """One instant query. Never raises for an unreachable, slow or failing Prometheus."""
        timeout = self.settings.timeout_s
        # Prometheus gives up a little before we do, so a slow query says so itself (503 timeout)
        # and a client timeout means Prometheus itself is not answering.
        params = {"query": promql, "timeout": f"{max(int(timeout * 800), 100)}ms"}
        try:
            response = self._client.get(f"{self.url}/api/v1/query", params=params, timeout=timeout)
        except httpx.TimeoutException as err:
            return Answer(None, f"prometheus did not answer within {timeout:g}s ({type(err).__name__})",
                          "unreachable")
        except httpx.HTTPError as err:
            return Answer(None, f"prometheus unreachable: {type(err).__name__}: {self._scrub(str(err))}",
                          "unreachable")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict) and body.get("status") == "success":
            return read_vector(body)
        if isinstance(body, dict) and body.get("status") == "error":
            kind, message = body.get("errorType", "error"), self._scrub(str(body.get("error", "")))
            if kind == "bad_data" and ('parameter "query"' in message or "parse error" in message):
                return Answer(None, f"bad query: {message}", "bad_query")
            return Answer(None, f"prometheus {kind} (HTTP {response.status_code}): {message}", "error")
        return Answer(None, f"prometheus answered HTTP {response.status_code} without a query result"
                            " (a proxy in front of it?)", "error")

    def sample(self) -> MetricSnapshot:
        """Every series' every metric. The first query goes alone: a Prometheus that does not answer
        costs one timeout, not one per query. Once it answered, the others go together, so a sample
        costs about two round trips, not ten (it is on a deploy's path: the post-deploy baseline)."""
        at = time.time()
        asked = [(name, metric) for name in self.selectors for metric in self.queries]
        answers = {asked[0]: self.query(self.query_for(*asked[0]))} if asked else {}
        down = next((a.reason for a in answers.values() if a.kind == "unreachable"), None)
        if down is not None:  # Prometheus did not answer: do not wait once per query
            answers.update({key: Answer(None, down, "unreachable") for key in asked[1:]})
        elif asked[1:]:
            with ThreadPoolExecutor(len(asked) - 1, thread_name_prefix="prometheus") as pool:
                answers.update(zip(asked[1:], pool.map(lambda key: self.query(self.query_for(*key)), asked[1:]),
                                   strict=True))
        series: dict[str, dict[str, float | None]] = {name: {} for name in self.selectors}
        problems: dict[str, str] = {}
        for (name, metric), answer in answers.items():
            series[name][metric] = answer.value
            if answer.value is None:
                problems[f"{name}.{metric}"] = answer.reason
        return MetricSnapshot(at, series, problems)

    def validate(self) -> list[str]:
        """Problems with the queries, found before a canary starts.

        Each query runs once per series: Prometheus rejects a typo (400 bad_data) with its
        parser's message; one that returns several series can never give a value. A query that
        ignores $selector would give canary and stable the same value. Stable is running, so a
        query that matches nothing for it is a problem too (a misspelt metric or label); canary
        may legitimately have no data yet. NaN is not a problem here: a quiet hour has no requests.
        """
        problems: list[str] = []
        for metric, query in self.queries.items():
            where = self.keys[metric]
            used = placeholders(query)
            unknown = sorted({f"${name}" for name in used if name not in KNOWN_PLACEHOLDERS})
            if unknown:
                problems.append(f"{where}: unknown placeholder {', '.join(unknown)}; use $selector and $window")
            if "selector" not in used:
                problems.append(f"{where}: does not use $selector, so canary and stable would read the same series")
        for metric in self.queries:
            for name in self.selectors:
                answer = self.query(self.query_for(name, metric))
                if answer.kind == "unreachable":
                    return [*problems, f"{self.describe()}: {answer.reason}"]
                if answer.kind == "bad_query":
                    problems.append(f"{self.keys[metric]}: {answer.reason}")
                    break  # the same typo for the other series: say it once
                if answer.kind in ("several", "error") or (answer.kind == "empty" and name == "stable"):
                    problems.append(f"{self.keys[metric]} ({name}, {self.selectors[name]}): {answer.reason}")
        return problems

    def close(self) -> None:
        self._client.close()

    def _scrub(self, text: str) -> str:
        return text.replace(self.url, redact(self.url))
