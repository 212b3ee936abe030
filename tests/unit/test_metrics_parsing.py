"""The canary metrics' pure parts: the text-format parser, histogram_quantile, the rates between two
scrapes, Prometheus answers, query placeholders, the config checks and the source picker."""

from __future__ import annotations

import math
from typing import Any

import pytest

from services.adapters.metrics import metrics_source
from services.adapters.prometheus import PrometheusMetrics, placeholders, read_vector, redact, render
from services.adapters.scrape import (
    ParseError,
    Reading,
    Sample,
    ScrapeMetrics,
    compute,
    histogram_quantile,
    missing,
    parse_text,
    read,
)
from services.core import config
from services.core.config import DEFAULT_QUERIES, ConfigError, UnknownEnvironment
from services.core.operations import StepFailed

PAGE = """\
# HELP http_requests_total HTTP requests by status.
# TYPE http_requests_total counter
http_requests_total{method="GET",status="200"} 1027 1395066363000
http_requests_total{method="POST",status="500"} 3
http_requests_total{method="GET",status="503",} 2

# HELP http_request_duration_seconds HTTP request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.1"} 500
http_request_duration_seconds_bucket{le="0.5"} 900
http_request_duration_seconds_bucket{le="1"} 1000
http_request_duration_seconds_bucket{le="+Inf"} 1032
http_request_duration_seconds_sum 300.5
http_request_duration_seconds_count 1032
process_cpu_seconds_total 12.5
process_resident_memory_bytes 1.048576e+08
app_memory_limit_bytes 268435456
msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9
metric_without_labels_or_timestamp -Inf
odd_value NaN
"""


# --- parse_text ----------------------------------------------------------------------------------


def test_parses_counters_gauges_and_buckets_with_labels() -> None:
    samples = parse_text(PAGE)
    by_key = {(s.name, tuple(sorted(s.labels.items()))): s for s in samples}
    assert len(samples) == 15  # comments and blank lines skipped
    ok = by_key[("http_requests_total", (("method", "GET"), ("status", "200")))]
    assert ok.value == 1027 and ok.timestamp_ms == 1395066363000
    assert by_key[("http_requests_total", (("method", "GET"), ("status", "503")))].value == 2  # trailing comma
    assert by_key[("http_request_duration_seconds_bucket", (("le", "+Inf"),))].value == 1032
    assert by_key[("process_resident_memory_bytes", ())].value == 104857600
    assert by_key[("metric_without_labels_or_timestamp", ())].value == -math.inf
    assert math.isnan(by_key[("odd_value", ())].value)


def test_label_values_unescape_backslash_quote_and_newline() -> None:
    (sample,) = [s for s in parse_text(PAGE) if s.name == "msdos_file_access_time_seconds"]
    assert sample.labels == {"path": "C:\\DIR\\FILE.TXT", "error": 'Cannot find file:\n"FILE.TXT"'}
    assert sample.value == 1.458255915e9


def test_spaces_around_labels_and_tabs_are_accepted() -> None:
    (sample,) = parse_text('requests_total{ a = "x" ,\tb="y,}" }\t7\n')
    assert sample.labels == {"a": "x", "b": "y,}"} and sample.value == 7


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("http_requests_total", "expected a value"),
        ('http_requests_total{status="200} 5', "unterminated value"),
        ("http_requests_total{status=200} 5", 'expected ="..."'),
        ('http_requests_total{status="200" code="1"} 5', "expected , or }"),
        ("http_requests_total 5 6 7", "expected a value"),
        ("http_requests_total five", "not a number"),
        ("9lives 1", "no metric name"),
        ('x{a="1",a="2"} 1', "given twice"),
        ("<html><body>Not found</body></html>", "no metric name"),
    ],
)
def test_malformed_lines_name_the_line(line: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_text(f"# TYPE ok gauge\nok 1\n{line}\n")
    assert caught.value.line == 3
    assert message in str(caught.value) and str(caught.value).startswith("line 3:")


def test_read_sums_our_metrics_over_other_labels() -> None:
    reading = read(parse_text(PAGE), at=10.0)
    assert reading.requests == 1032 and reading.errors == 5  # 500 + 503
    assert reading.buckets == {0.1: 500, 0.5: 900, 1.0: 1000, math.inf: 1032}
    assert (reading.cpu_seconds, reading.rss_bytes, reading.memory_limit_bytes) == (12.5, 104857600, 268435456)
    assert missing(reading) == []
    assert read([Sample("http_requests_total", {"code": "502"}, 4)], 0).errors == 4  # other status label names
    bare = read(parse_text("up 1\n"), 0)
    assert missing(bare) == [
        "http_requests_total (for error_rate, requests_per_s)",
        "http_request_duration_seconds_bucket (for p95_ms)",
        "process_cpu_seconds_total (for cpu_percent)",
        "process_resident_memory_bytes (for memory_percent)",
        "app_memory_limit_bytes (for memory_percent)",
    ]


# --- histogram_quantile ----------------------------------------------------------------------------

BUCKETS = [(0.1, 50.0), (0.5, 90.0), (1.0, 100.0), (math.inf, 100.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.95, 0.75),  # rank 95 in (0.5, 1]: 0.5 + 0.5 * 5/10
        (0.5, 0.1),  # rank 50: the top of the first bucket
        (0.25, 0.05),  # the first bucket starts at 0
        (0.7, 0.3),  # rank 70 in (0.1, 0.5]: 0.1 + 0.4 * 20/40
        (1.0, 1.0),
    ],
)
def test_quantile_interpolates_linearly_within_the_bucket(q: float, expected: float) -> None:
    assert histogram_quantile(q, BUCKETS) == pytest.approx(expected)


def test_quantile_of_the_sample_apps_histogram() -> None:
    # Every request takes 200 ms: all of them land in (0.1, 0.25]; Prometheus says 0.2425.
    bounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, math.inf]
    assert histogram_quantile(0.95, [(b, 0 if b < 0.2 else 400) for b in bounds]) == pytest.approx(0.2425)
    assert histogram_quantile(0.95, [(b, 0 if b < 0.02 else 400) for b in bounds]) == pytest.approx(0.02425)


def test_quantile_edge_cases_follow_prometheus() -> None:
    # the rank falls in the +Inf bucket: the highest finite bound
    assert histogram_quantile(0.95, [(1.0, 90.0), (math.inf, 100.0)]) == 1.0
    # order does not matter; a count that falls (a racing scrape) is raised to the one below
    assert histogram_quantile(0.95, list(reversed(BUCKETS))) == pytest.approx(0.75)
    assert histogram_quantile(0.5, [(0.1, 50.0), (0.5, 40.0), (1.0, 100.0), (math.inf, 100.0)]) == pytest.approx(0.1)
    # a lowest bucket with a bound <= 0 is not interpolated
    assert histogram_quantile(0.1, [(-1.0, 20.0), (1.0, 100.0), (math.inf, 100.0)]) == -1.0
    # NaN in Prometheus: None here
    assert histogram_quantile(0.95, [(0.1, 0.0), (math.inf, 0.0)]) is None  # no observations
    assert histogram_quantile(0.95, [(0.1, 5.0), (1.0, 10.0)]) is None  # no +Inf bucket
    assert histogram_quantile(0.95, [(math.inf, 10.0)]) is None  # a single bucket
    assert histogram_quantile(math.nan, BUCKETS) is None
    assert histogram_quantile(1.5, BUCKETS) == math.inf and histogram_quantile(-0.5, BUCKETS) == -math.inf


# --- rates between two scrapes -------------------------------------------------------------------


def reading(at: float, requests: float, errors: float, fast: float, cpu: float,
            rss: float = 100.0, limit: float | None = 400.0) -> Reading:
    """`requests` of which `errors` failed, `fast` of them within 0.1 s, the rest within 0.5 s."""
    buckets = {0.1: fast, 0.5: requests, math.inf: requests}
    return Reading(at, requests, errors, buckets, cpu, rss, limit)


def test_first_scrape_has_no_rate_but_memory_is_a_gauge() -> None:
    values, reasons = compute([(None, reading(0, 100, 5, 50, 1.0))])
    assert values == {"error_rate": None, "p95_ms": None, "cpu_percent": None, "memory_percent": 25.0,
                      "requests_per_s": None}
    assert reasons == dict.fromkeys(["error_rate", "p95_ms", "cpu_percent", "requests_per_s"],
                                    "first scrape: no rate yet")


def test_rates_between_two_scrapes_summed_over_urls() -> None:
    a = (reading(0, 1000, 10, 500, 10.0), reading(10, 2000, 60, 1000, 12.0))  # +1000 req, +50 err, cpu 0.2/s
    b = (reading(5, 500, 0, 250, 3.0), reading(10, 1000, 0, 500, 6.0, rss=300))  # +500 req in 5 s, cpu 0.6/s
    values, reasons = compute([a, b])
    assert reasons == {}
    assert values["requests_per_s"] == pytest.approx(100 + 100)
    assert values["error_rate"] == pytest.approx(50 / 1500)
    # 750 of 1500 within 0.1 s, the rest in (0.1, 0.5]: rank 1425 -> 0.1 + 0.4 * 675/750
    assert values["p95_ms"] == pytest.approx(1000 * (0.1 + 0.4 * 675 / 750))
    assert values["cpu_percent"] == pytest.approx((20 + 60) / 2)  # average per instance, % of one core
    assert values["memory_percent"] == pytest.approx(100 * (100 + 300) / (400 + 400))


def test_a_counter_reset_counts_from_zero_like_rate() -> None:
    before, after = reading(0, 5000, 100, 5000, 50.0), reading(10, 200, 20, 100, 1.0)  # restarted
    values, _ = compute([(before, after)])
    assert values["requests_per_s"] == pytest.approx(20)
    assert values["error_rate"] == pytest.approx(0.1)
    assert values["cpu_percent"] == pytest.approx(10)
    assert values["p95_ms"] == pytest.approx(1000 * (0.1 + 0.4 * 90 / 100))


def test_no_requests_and_missing_families_say_why() -> None:
    quiet = reading(0, 100, 0, 100, 1.0)
    values, reasons = compute([(quiet, reading(10, 100, 0, 100, 1.0, limit=None))])
    assert values["requests_per_s"] == 0.0 and values["cpu_percent"] == 0.0
    assert values["error_rate"] is None and reasons["error_rate"] == "no requests between scrapes"
    assert values["p95_ms"] is None and reasons["p95_ms"] == "no requests between scrapes"
    assert values["memory_percent"] is None and "app_memory_limit_bytes" in reasons["memory_percent"]
    empty = Reading(10, None, 0.0)
    values, reasons = compute([(Reading(0, None, 0.0), empty)])
    assert all(v is None for v in values.values())
    assert reasons["error_rate"] == reasons["requests_per_s"] == "no http_requests_total on /metrics"
    assert reasons["p95_ms"] == "no http_request_duration_seconds_bucket on /metrics"
    assert reasons["cpu_percent"] == "no process_cpu_seconds_total on /metrics"


# --- Prometheus answers and queries ----------------------------------------------------------------


def vector(*values: str) -> dict[str, Any]:
    result = [{"metric": {"instance": f"i{n}"}, "value": [1700000000.1, v]} for n, v in enumerate(values)]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


def test_read_vector_values_and_reasons() -> None:
    assert read_vector(vector("0.05")).value == 0.05
    assert read_vector({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "3"]}}).value == 3.0
    for body, kind, text in [
        (vector(), "empty", "empty result"),
        (vector("NaN"), "nan", "NaN"),
        (vector("+Inf"), "inf", "+Inf"),
        (vector("1", "2", "3"), "several", "3 series returned"),
        ({"status": "success", "data": {"resultType": "matrix", "result": []}}, "error", "unexpected result type"),
        ({"status": "success"}, "error", "malformed"),
    ]:
        answer = read_vector(body)
        assert answer.value is None and answer.kind == kind and text in answer.reason


def test_render_substitutes_selector_and_window_only() -> None:
    query = 'label_replace(sum(rate(x{a="b",$selector}[${window}])), "d", "$1", "s", "(.*)") + $other'
    assert render(query, 'track="canary"', "2m") == (
        'label_replace(sum(rate(x{a="b",track="canary"}[2m])), "d", "$1", "s", "(.*)") + $other')
    assert placeholders(query) == ["selector", "window", "other"]
    for text in DEFAULT_QUERIES.values():
        assert set(placeholders(text)) <= {"selector", "window"} and "selector" in placeholders(text)


def test_redact_hides_credentials() -> None:
    assert redact("https://admin:hunter2@prom.example.com:9443/prom") == "https://***@prom.example.com:9443/prom"
    assert redact("http://127.0.0.1:9090") == "http://127.0.0.1:9090"


# --- config and the source picker ------------------------------------------------------------------


def release(metrics: dict[str, Any] | None = None, app_metrics: dict[str, Any] | None = None) -> config.ReleaseConfig:
    env: dict[str, Any] = {"api_url": "http://app", "database_url": "postgresql://db", "redis_url": "redis://r"}
    if metrics is not None:
        env["metrics"] = metrics
    raw: dict[str, Any] = {"app": {"name": "food", "image": "food"}, "environments": {"staging": env}}
    if app_metrics is not None:
        raw["metrics"] = app_metrics
    return config.parse(raw, {})


def config_problems(metrics: dict[str, Any] | None = None, app_metrics: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        release(metrics, app_metrics)
    return str(caught.value)


def test_config_merges_queries_and_rejects_typos() -> None:
    cfg = release(app_metrics={"queries": {"p95_ms": "histogram_quantile(0.95, x{$selector})"}})
    assert cfg.metrics.queries["p95_ms"] == "histogram_quantile(0.95, x{$selector})"
    assert cfg.metrics.queries["error_rate"] == DEFAULT_QUERIES["error_rate"]
    assert "unknown metric 'p59_ms'" in config_problems(app_metrics={"queries": {"p59_ms": "x"}})
    assert "empty query for cpu_percent" in config_problems(app_metrics={"queries": {"cpu_percent": " "}})
    assert "metrics.window" in config_problems(app_metrics={"window": "1 minute"})


def test_an_environment_can_replace_some_queries() -> None:
    cpu = "100 * sum(rate(container_cpu_usage_seconds_total{$selector}[$window]))"
    cfg = release({"prometheus_url": "http://prom:9090", "queries": {"cpu_percent": cpu}},
                  {"queries": {"p95_ms": "max(p95{$selector})"}})
    source = PrometheusMetrics(cfg, "staging")
    assert source.queries == {**DEFAULT_QUERIES, "cpu_percent": cpu, "p95_ms": "max(p95{$selector})"}
    assert source.keys["cpu_percent"] == "environments.staging.metrics.queries.cpu_percent"
    assert source.keys["p95_ms"] == "metrics.queries.p95_ms"
    assert "unknown metric 'cpu'" in config_problems({"queries": {"cpu": "x"}})


def test_config_checks_selectors_scrape_series_and_urls() -> None:
    cfg = release({"selectors": {"canary": 'app="food",track="canary",', "stable": 'track="stable"'}})
    assert cfg.environment("staging").metrics.selectors["canary"] == 'app="food",track="canary"'
    assert "define exactly the series canary and stable" in config_problems({"selectors": {"canary": "a=\"b\""}})
    assert "without braces" in config_problems({"selectors": {"canary": '{track="c"}', "stable": 'track="s"'}})
    assert "unknown series 'canery'" in config_problems({"scrape": {"canery": ["http://a/metrics"]}})
    problems = config_problems({"prometheus_url": "prom.internal:9090"})
    assert "environments.staging.metrics.prometheus_url" in problems and "http://" in problems
    secret = config_problems({"scrape": {"stable": ["ftp://user:pw@host/metrics"]}})
    assert "pw" not in secret and "host/metrics" in secret


def test_metrics_source_picks_prometheus_then_scrape_else_refuses() -> None:
    prom = metrics_source(release({"prometheus_url": "http://u:p@prom:9090/"}), "staging")
    assert isinstance(prom, PrometheusMetrics)
    assert prom.describe() == "prometheus http://***@prom:9090 (window 1m)"
    both = {"prometheus_url": "http://prom:9090", "scrape": {"stable": ["http://a:3000/metrics"]}}
    assert isinstance(metrics_source(release(both), "staging"), PrometheusMetrics)
    scrape = metrics_source(release({"scrape": {"stable": ["http://a:3000/metrics", "http://b:3000/metrics"],
                                                "canary": ["http://c:3000/metrics"]}}), "staging")
    assert isinstance(scrape, ScrapeMetrics)
    assert scrape.describe() == "scrape of 3 /metrics endpoints"
    with pytest.raises(StepFailed) as caught:
        metrics_source(release(), "staging")
    assert "[environments.staging.metrics]" in str(caught.value)
    assert any("prometheus_url" in option for option in caught.value.next_options)
    with pytest.raises(UnknownEnvironment):
        metrics_source(release(), "production")
