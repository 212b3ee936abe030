"""The canary's metrics read straight from the app's /metrics, for environments without Prometheus.

Each sample GETs every /metrics URL of each series (config `[environments.X.metrics].scrape`),
parses the Prometheus text format, and compares it with the previous scrape of the same URL:

- error_rate: 5xx / all of the increase of `http_requests_total` (label `status`, `code` or
  `status_code`);
- p95_ms: histogram_quantile(0.95) over the increase of `http_request_duration_seconds_bucket`,
  interpolated linearly within a bucket as Prometheus does;
- requests_per_s: the increase of `http_requests_total` per second;
- cpu_percent: the increase of `process_cpu_seconds_total` per second, in percent of one core,
  averaged over the series' instances;
- memory_percent: `process_resident_memory_bytes` over `app_memory_limit_bytes` (a gauge the app
  exposes: its container's memory limit), summed over the instances. A gauge: no first-scrape gap.

Counts are summed over a series' URLs. The first scrape of a URL has nothing to compare with: its
rates are None, "first scrape: no rate yet". An unreachable or unreadable URL makes all of its
series' values None: a partial sum would look healthier than the series is.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from services.adapters.prometheus import redact
from services.core.config import METRICS, SERIES, MetricsConfig, ReleaseConfig
from services.core.ports import MetricSnapshot

REQUESTS = "http_requests_total"
BUCKETS = "http_request_duration_seconds_bucket"
CPU = "process_cpu_seconds_total"
RSS = "process_resident_memory_bytes"
MEMORY_LIMIT = "app_memory_limit_bytes"
STATUS_LABELS = ("status", "code", "status_code")
QUANTILE = 0.95
ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"  # the classic text format, not OpenMetrics

# --- the Prometheus text exposition format (0.0.4) --------------------------------------------

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ParseError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True)
class Sample:
    name: str
    labels: Mapping[str, str]
    value: float
    timestamp_ms: int | None = None


def parse_text(text: str) -> list[Sample]:
    """The samples of a /metrics page in the Prometheus text format. Comments (HELP, TYPE) are
    skipped: a histogram is read from its _bucket samples. Raises ParseError naming the line."""
    samples: list[Sample] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        samples.append(_parse_line(line, number))
    return samples


def _parse_line(line: str, number: int) -> Sample:
    match = _NAME.match(line)
    if not match:
        raise ParseError(number, f"no metric name at {line[:40]!r}")
    name, i = match.group(0), match.end()
    labels: dict[str, str] = {}
    if i < len(line) and line[i] == "{":
        i = _parse_labels(line, i + 1, labels, number)
    rest = line[i:]
    if rest and not rest[0].isspace():
        raise ParseError(number, f"unexpected {rest[0]!r} after {name}")
    fields = rest.split()
    if len(fields) not in (1, 2):
        raise ParseError(number, f"expected a value (and a timestamp) after {name}, got {rest.strip()[:40]!r}")
    try:
        value = float(fields[0])
        timestamp = int(fields[1]) if len(fields) == 2 else None
    except ValueError:
        raise ParseError(number, f"not a number: {' '.join(fields)[:40]!r}") from None
    return Sample(name, labels, value, timestamp)


def _parse_labels(line: str, i: int, labels: dict[str, str], number: int) -> int:
    """Reads `name="value",...}` from line[i:] into labels; returns the index after the `}`."""
    while True:
        while i < len(line) and line[i] in " \t":
            i += 1
        if i < len(line) and line[i] == "}":
            return i + 1
        match = _LABEL.match(line, i)
        if not match:
            raise ParseError(number, f"bad label name at column {i + 1}")
        key, i = match.group(0), match.end()
        for expected in '="':
            while i < len(line) and line[i] in " \t":
                i += 1
            if line[i:i + 1] != expected:
                raise ParseError(number, f'expected ="..." after label {key}')
            i += 1
        value: list[str] = []
        while True:
            if i >= len(line):
                raise ParseError(number, f"unterminated value of label {key}")
            char = line[i]
            if char == "\\" and i + 1 < len(line):
                value.append(_ESCAPES.get(line[i + 1], "\\" + line[i + 1]))
                i += 2
            elif char == '"':
                i += 1
                break
            else:
                value.append(char)
                i += 1
        if key in labels:
            raise ParseError(number, f"label {key} given twice")
        labels[key] = "".join(value)
        while i < len(line) and line[i] in " \t":
            i += 1
        if i < len(line) and line[i] == ",":
            i += 1
        elif i < len(line) and line[i] == "}":
            return i + 1
        else:
            raise ParseError(number, f"expected , or }} after label {key}")


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs.

    Linear interpolation within the bucket the rank falls in; the lowest bucket starts at 0
    (unless its bound is <= 0); a rank in the +Inf bucket gives the highest finite bound.
    None where Prometheus gives NaN: no +Inf bucket, fewer than two buckets, no observations.
    """
    if math.isnan(q):
        return None
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    merged: dict[float, float] = {}
    for bound, count in buckets:  # the same bound twice (e.g. "1" and "1.0"): added up
        merged[bound] = merged.get(bound, 0.0) + count
    ordered = sorted(merged.items())
    if not ordered or not math.isinf(ordered[-1][0]) or len(ordered) < 2:
        return None
    counts, highest = [], 0.0
    for _, count in ordered:  # cumulative counts never fall (scrapes may race with observations)
        highest = max(highest, count)
        counts.append(highest)
    observations = counts[-1]
    if observations == 0:
        return None
    rank = q * observations
    b = next((i for i in range(len(ordered) - 1) if counts[i] >= rank), len(ordered) - 1)
    if b == len(ordered) - 1:
        return ordered[-2][0]
    if b == 0 and ordered[0][0] <= 0:
        return ordered[0][0]
    start, end, count = 0.0, ordered[b][0], counts[b]
    if b > 0:
        start = ordered[b - 1][0]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        return None
    return start + (end - start) * (rank / count)


# --- what one scrape says about the metrics we judge ------------------------------------------


@dataclass(frozen=True)
class Reading:
    """The parts of one /metrics page the canary needs, taken at `at` (monotonic seconds)."""

    at: float
    requests: float | None  # all of http_requests_total; None: not exposed
    errors: float  # its 5xx part
    buckets: Mapping[float, float] = field(default_factory=dict)  # le -> cumulative count
    cpu_seconds: float | None = None
    rss_bytes: float | None = None
    memory_limit_bytes: float | None = None


def read(samples: Iterable[Sample], at: float) -> Reading:
    """Sums the samples we need over their other labels (method, route, instance ...)."""
    requests: float | None = None
    errors = 0.0
    buckets: dict[float, float] = {}
    gauges: dict[str, float] = {}
    for sample in samples:
        if sample.name == REQUESTS:
            requests = (requests or 0.0) + sample.value
            status = next((sample.labels[k] for k in STATUS_LABELS if k in sample.labels), "")
            if status.startswith("5"):
                errors += sample.value
        elif sample.name == BUCKETS and "le" in sample.labels:
            try:
                bound = float(sample.labels["le"])
            except ValueError:
                continue
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
        elif sample.name in (CPU, RSS, MEMORY_LIMIT):
            gauges[sample.name] = gauges.get(sample.name, 0.0) + sample.value
    return Reading(at, requests, errors, buckets, gauges.get(CPU), gauges.get(RSS), gauges.get(MEMORY_LIMIT))


def missing(reading: Reading) -> list[str]:
    """The metric families a reading lacks, with the canary metric each one is needed for."""
    needs = [(REQUESTS, reading.requests is None, "error_rate, requests_per_s"),
             (BUCKETS, not reading.buckets, "p95_ms"), (CPU, reading.cpu_seconds is None, "cpu_percent"),
             (RSS, reading.rss_bytes is None, "memory_percent"),
             (MEMORY_LIMIT, reading.memory_limit_bytes is None, "memory_percent")]
    return [f"{name} (for {what})" for name, absent, what in needs if absent]


def _increase(now: float, before: float) -> float:
    """A counter's increase; a drop means it was reset (a restart), as Prometheus' rate() reads it."""
    return now - before if now >= before else now


def compute(pairs: list[tuple[Reading | None, Reading]]) -> tuple[dict[str, float | None], dict[str, str]]:
    """One series' metrics from (previous, current) readings of each of its URLs."""
    values: dict[str, float | None] = dict.fromkeys(METRICS)
    reasons: dict[str, str] = {}
    current = [now for _, now in pairs]

    # memory: a gauge, readable from one scrape
    if any(r.rss_bytes is None for r in current):
        reasons["memory_percent"] = f"no {RSS} on /metrics"
    elif any(not r.memory_limit_bytes for r in current):
        reasons["memory_percent"] = f"no {MEMORY_LIMIT} gauge on /metrics: the limit is unknown"
    else:
        values["memory_percent"] = 100 * sum(r.rss_bytes or 0.0 for r in current) / sum(
            r.memory_limit_bytes or 0.0 for r in current)

    rates = ("error_rate", "p95_ms", "cpu_percent", "requests_per_s")
    if any(before is None for before, _ in pairs):
        reasons.update(dict.fromkeys(rates, "first scrape: no rate yet"))
        return values, reasons
    steps = [(before, now, now.at - before.at) for before, now in pairs if before is not None]
    if any(seconds <= 0 for _, _, seconds in steps):
        reasons.update(dict.fromkeys(rates, "no time between scrapes"))
        return values, reasons

    if any(b.requests is None or n.requests is None for b, n, _ in steps):
        reasons["error_rate"] = reasons["requests_per_s"] = f"no {REQUESTS} on /metrics"
    else:
        total = errors = per_second = 0.0
        for before, now, seconds in steps:
            assert before.requests is not None and now.requests is not None
            reset = now.requests < before.requests or now.errors < before.errors
            increase = now.requests if reset else now.requests - before.requests
            total += increase
            errors += now.errors if reset else now.errors - before.errors
            per_second += increase / seconds
        values["requests_per_s"] = per_second
        if total > 0:
            values["error_rate"] = errors / total
        else:
            reasons["error_rate"] = "no requests between scrapes"

    if any(not b.buckets or not n.buckets for b, n, _ in steps):
        reasons["p95_ms"] = f"no {BUCKETS} on /metrics"
    else:
        summed: dict[float, float] = {}
        for before, now, _ in steps:
            reset = any(count < before.buckets.get(bound, 0.0) for bound, count in now.buckets.items())
            for bound, count in now.buckets.items():
                summed[bound] = summed.get(bound, 0.0) + (count if reset else count - before.buckets.get(bound, 0.0))
        seconds_p95 = histogram_quantile(QUANTILE, summed.items())
        if seconds_p95 is not None and math.isfinite(seconds_p95):
            values["p95_ms"] = 1000 * seconds_p95
        elif summed.get(math.inf, 0.0) == 0:
            reasons["p95_ms"] = "no requests between scrapes"
        else:
            reasons["p95_ms"] = f"{BUCKETS} has no +Inf bucket"

    if any(b.cpu_seconds is None or n.cpu_seconds is None for b, n, _ in steps):
        reasons["cpu_percent"] = f"no {CPU} on /metrics"
    else:
        values["cpu_percent"] = 100 * sum(
            _increase(n.cpu_seconds or 0.0, b.cpu_seconds or 0.0) / seconds for b, n, seconds in steps) / len(steps)
    return values, reasons


# --- the adapter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why a URL gave no reading. `unreachable`: nothing answered; otherwise it answered badly."""

    reason: str
    unreachable: bool


class ScrapeMetrics:
    """MetricsSource that scrapes the app's /metrics URLs itself (`[environments.X.metrics].scrape`)."""

    def __init__(self, config: ReleaseConfig, env: str, client: httpx.Client | None = None) -> None:
        metrics = config.environment(env).metrics
        if not any(metrics.scrape.values()):
            raise ValueError(f"environments.{env}.metrics.scrape has no /metrics URLs")
        self.env = env
        self.settings: MetricsConfig = config.metrics
        self.urls: dict[str, list[str]] = {series: list(metrics.scrape.get(series, [])) for series in SERIES}
        self._client = client or httpx.Client(timeout=self.settings.timeout_s, follow_redirects=False)
        self._last: dict[str, Reading] = {}
        self._lock = threading.Lock()

    def describe(self) -> str:
        count = sum(len(urls) for urls in self.urls.values())
        return f"scrape of {count} /metrics endpoint{'s' if count != 1 else ''}"

    def query_for(self, series: str, metric: str) -> str:
        return f"{metric} of {series} from a scrape of " + (", ".join(map(redact, self.urls[series])) or "no URL")

    def fetch(self, url: str) -> Reading | Failure:
        """One scrape: a Reading, or why there is none. Never raises."""
        timeout = self.settings.timeout_s
        where = redact(url)
        try:
            response = self._client.get(url, headers={"Accept": ACCEPT}, timeout=timeout)
        except httpx.TimeoutException as err:
            return Failure(f"{where} did not answer within {timeout:g}s ({type(err).__name__})", True)
        except httpx.HTTPError as err:
            return Failure(f"{where} unreachable: {type(err).__name__}: {str(err).replace(url, where)}", True)
        at = time.monotonic()
        if response.status_code != 200:
            return Failure(f"{where} answered HTTP {response.status_code}", False)
        try:
            return read(parse_text(response.text), at)
        except ParseError as err:
            return Failure(f"{where} is not Prometheus text: {err}", False)

    def sample(self) -> MetricSnapshot:
        at = time.time()
        series: dict[str, dict[str, float | None]] = {}
        problems: dict[str, str] = {}
        with self._lock:
            # Each URL once per sample, even if two series list it: a second read moments after
            # the first would make a rate over milliseconds.
            readings = {url: self.fetch(url) for url in dict.fromkeys(u for urls in self.urls.values() for u in urls)}
            pairs = {url: (self._last.get(url), reading) for url, reading in readings.items()}
            for url, reading in readings.items():
                if isinstance(reading, Failure):
                    self._last.pop(url, None)  # the next rate must not span the gap
                else:
                    self._last[url] = reading
        for name, urls in self.urls.items():
            if not urls:
                values: dict[str, float | None] = dict.fromkeys(METRICS)
                unset = f"no /metrics URLs for {name} in environments.{self.env}.metrics.scrape"
                reasons = dict.fromkeys(METRICS, unset)
            else:
                values, reasons = self._series([pairs[url] for url in urls])
            series[name] = values
            problems.update({f"{name}.{metric}": reason for metric, reason in reasons.items()})
        return MetricSnapshot(at, series, problems)

    @staticmethod
    def _series(
        pairs: list[tuple[Reading | None, Reading | Failure]],
    ) -> tuple[dict[str, float | None], dict[str, str]]:
        failures = [now.reason for _, now in pairs if isinstance(now, Failure)]
        if failures:
            reason = failures[0] + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
            return dict.fromkeys(METRICS), dict.fromkeys(METRICS, reason)
        return compute([(before, now) for before, now in pairs if isinstance(now, Reading)])

    def validate(self) -> list[str]:
        """Every series has URLs; each reachable one parses and exposes what the metrics need.

        Stable must answer now; a canary URL that does not answer is fine (it may not run yet).
        Does not count as a scrape: the first sample still has no rate.
        """
        problems: list[str] = []
        for name, urls in self.urls.items():
            if not urls:
                problems.append(f"environments.{self.env}.metrics.scrape.{name}: no /metrics URLs")
            for url in urls:
                reading = self.fetch(url)
                if isinstance(reading, Failure):
                    if name == "stable" or not reading.unreachable:
                        problems.append(f"{name}: {reading.reason}")
                    continue
                lacking = missing(reading)
                if lacking:
                    problems.append(f"{name}: {redact(url)} lacks {', '.join(lacking)}")
        return problems

    def close(self) -> None:
        self._client.close()
