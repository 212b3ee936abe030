"""The canary metrics sources against the rig: Prometheus scraping two sample-app containers (a
"stable" and a "canary" with 5 % errors, slower responses, more CPU and memory), and the same
containers' /metrics read directly.

The sample app's counters grow with its uptime (SYNTHETIC_RPS requests a second, a share
ERROR_RATE of them 5xx, each LATENCY_MS long; CPU_PERCENT of a core; MEMORY_PERCENT of its
app_memory_limit_bytes), so every expected value below is known in advance.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from rig import config_builder as toml
from rig.helpers import SampleApp, free_port, unique_name, wait_until, write_prom_targets

from services.adapters.metrics import metrics_source
from services.adapters.prometheus import PrometheusMetrics
from services.adapters.scrape import ScrapeMetrics
from services.core.config import ReleaseConfig
from services.core.ports import MetricSnapshot

pytestmark = pytest.mark.timeout(120)

WINDOW_S = 10  # the rig's Prometheus scrapes every second
RPS = 100  # synthetic requests a second: enough that 5 % is a whole number of errors each second
STABLE = {"VERSION": "1.0.0", "ERROR_RATE": "0", "LATENCY_MS": "20", "CPU_PERCENT": "20", "MEMORY_PERCENT": "40"}
CANARY = {"VERSION": "1.1.0", "ERROR_RATE": "0.05", "LATENCY_MS": "200", "CPU_PERCENT": "70", "MEMORY_PERCENT": "60"}
# histogram_quantile(0.95) of requests that all take 20 ms (bucket 0.01-0.025 s) and 200 ms (0.1-0.25 s)
P95_STABLE_MS = 1000 * (0.01 + 0.015 * 0.95)
P95_CANARY_MS = 1000 * (0.1 + 0.15 * 0.95)
SCRAPE_GAP_S = 5  # between the two direct scrapes (counted in the app's requests): it refreshes /metrics twice a second


@dataclass
class Apps:
    stable: SampleApp
    canary: SampleApp
    job: str
    first_scrape: MetricSnapshot | None = None
    first_served: int = 0  # the stable app's requests (its own count) at the first scrape
    scraper: ScrapeMetrics | None = None


def served(app: SampleApp) -> int:
    """The requests the app has counted (synthetic and real, every status), read from its /metrics:
    the clock the scrape tests wait on, since the app makes SYNTHETIC_RPS of them a second."""
    text = httpx.get(f"{app.url}/metrics", timeout=5).text
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
               if line.startswith("http_requests_total{"))


def _run(docker_client: Any, image: Any, env: dict[str, str]) -> SampleApp:
    port = free_port()
    environment = {"PORT": str(port), "SYNTHETIC_RPS": str(RPS), **env}
    container = docker_client.containers.run(
        image.id, detach=True, network_mode="host", environment=environment,
        name=unique_name("rc-test-metrics"), labels={"release-console.test": "sample-app"})
    app = SampleApp(container, port, environment)

    def healthy() -> bool:
        container.reload()
        if container.status not in ("created", "running"):
            raise RuntimeError(f"container {container.status}: {container.logs().decode()[-2000:]}")
        return httpx.get(f"{app.url}/api/health", timeout=2).status_code == 200

    wait_until(healthy, timeout=30, what=f"sample app on port {port} answering /api/health")
    return app


def release(metrics: dict[str, Any], app_metrics: dict[str, Any] | None = None) -> ReleaseConfig:
    """A release.toml with one environment, "rig", whose metrics section is `metrics`."""
    rig = toml.environment(api_url="http://127.0.0.1", database_url="postgresql://x", redis_url="redis://x",
                           metrics=metrics)
    return toml.release({"rig": rig}, image="food-management",
                        metrics={"window": f"{WINDOW_S}s", "timeout_s": 5, **(app_metrics or {})}).parse({})


def prometheus_config(prometheus_url: str, apps: Apps, env_queries: dict[str, str] | None = None,
                      **app_metrics: Any) -> ReleaseConfig:
    selectors = {series: f'job="{apps.job}",track="{series}"' for series in ("canary", "stable")}
    return release(toml.prometheus(prometheus_url, selectors=selectors, queries=env_queries or {}), app_metrics)


def scrape_config(stable: list[str], canary: list[str]) -> ReleaseConfig:
    return release(toml.scrape(stable=stable, canary=canary))


@pytest.fixture(scope="module")
def apps(docker_client: Any, sample_app_image: Any, prom_targets_dir: Path) -> Iterator[Apps]:
    """A stable and a canary container, registered with Prometheus as job=<unique>, track=<series>.

    The first direct scrape of both is taken as soon as they answer, so the scrape test later has
    a long gap between its two scrapes without waiting for it.
    """
    started: list[SampleApp] = []
    files: list[Path] = []
    try:
        stable = _run(docker_client, sample_app_image, STABLE)
        started.append(stable)
        canary = _run(docker_client, sample_app_image, CANARY)
        started.append(canary)
        job = unique_name("metrics")
        for series, app in (("stable", stable), ("canary", canary)):
            files.append(write_prom_targets(prom_targets_dir, f"{job}-{series}", [app.target],
                                            {"job": job, "track": series}))
        scraper = ScrapeMetrics(scrape_config([f"{stable.url}/metrics"], [f"{canary.url}/metrics"]), "rig")
        first = scraper.sample()
        yield Apps(stable, canary, job, first_scrape=first, first_served=served(stable), scraper=scraper)
    finally:
        for path in files:
            path.unlink(missing_ok=True)
        for app in started:
            app.container.remove(force=True)


@pytest.fixture(scope="module")
def scraped(apps: Apps, prometheus_url: str) -> Apps:
    """Once Prometheus has scraped both containers for longer than the rate window: rate() over a
    series younger than its window underestimates it. Prometheus scrapes every second, so a series
    with WINDOW_S + 1 samples in the last WINDOW_S + 2 seconds is older than the window."""
    query = f'count_over_time(up{{job="{apps.job}"}}[{WINDOW_S + 2}s]) >= {WINDOW_S + 1}'

    def both_older_than_the_window() -> bool:
        response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": query}, timeout=5)
        return len(response.json()["data"]["result"]) == 2

    wait_until(both_older_than_the_window, timeout=60, interval=0.5,
               what=f"Prometheus to hold a full {WINDOW_S}s window of job {apps.job}")
    return apps


# --- Prometheus --------------------------------------------------------------------------------------


def test_prometheus_reads_each_series(prometheus_url: str, scraped: Apps) -> None:
    source = metrics_source(prometheus_config(prometheus_url, scraped), "rig")
    assert isinstance(source, PrometheusMetrics)
    assert source.describe() == f"prometheus {prometheus_url} (window {WINDOW_S}s)"
    before = time.time()
    snapshot = source.sample()
    assert before - 1 <= snapshot.at <= time.time()
    assert snapshot.problems == {}
    canary, stable = snapshot.series["canary"], snapshot.series["stable"]
    assert canary["error_rate"] == pytest.approx(0.05, abs=0.005)
    assert stable["error_rate"] == 0.0  # data, not a gap
    assert canary["p95_ms"] == pytest.approx(P95_CANARY_MS)
    assert stable["p95_ms"] == pytest.approx(P95_STABLE_MS)
    assert canary["cpu_percent"] == pytest.approx(70, rel=0.1)
    assert stable["cpu_percent"] == pytest.approx(20, rel=0.1)
    assert canary["memory_percent"] == pytest.approx(60)
    assert stable["memory_percent"] == pytest.approx(40)
    for values in (canary, stable):
        assert values["requests_per_s"] == pytest.approx(RPS, rel=0.1)
    assert source.query_for("canary", "requests_per_s") == (
        f'sum(rate(http_requests_total{{job="{scraped.job}",track="canary"}}[{WINDOW_S}s]))')


def test_validate_passes_the_defaults_and_names_a_typo(prometheus_url: str, scraped: Apps) -> None:
    assert PrometheusMetrics(prometheus_config(prometheus_url, scraped), "rig").validate() == []

    typos = {
        # a missing closing parenthesis: Prometheus' parser rejects it (400 bad_data)
        "error_rate": 'sum(rate(http_requests_total{status=~"5..",$selector}[$window]))'
                      " / sum(rate(http_requests_total{$selector}[$window])",
        # no $selector: canary and stable would read the same series
        "requests_per_s": 'sum(rate(http_requests_total{job="x"}[$window]))',
    }
    # in the environment's own queries: a misspelt metric name parses, but matches nothing for stable
    env_typo = {"cpu_percent": "100 * sum(rate(process_cpu_second_total{$selector}[$window]))"}
    source = PrometheusMetrics(prometheus_config(prometheus_url, scraped, env_typo, queries=typos), "rig")
    problems = source.validate()
    text = "\n".join(problems)
    assert not any("did not answer" in p for p in problems), text  # every query answered: none waited it out
    parse_error = [p for p in problems if p.startswith("metrics.queries.error_rate: bad query:")]
    assert len(parse_error) == 1, text  # said once, not once per series
    assert "parse error" in parse_error[0] and "unclosed left parenthesis" in parse_error[0], text
    assert any(p.startswith(f'environments.rig.metrics.queries.cpu_percent (stable, job="{scraped.job}"')
               and "empty result" in p for p in problems), text
    assert any(p.startswith("metrics.queries.requests_per_s: does not use $selector") for p in problems), text
    assert not any("p95_ms" in p or "memory_percent" in p for p in problems), text
    # sampling with the typo: that metric is None with Prometheus' reason; the others still read
    snapshot = source.sample()
    assert snapshot.series["canary"]["error_rate"] is None
    assert snapshot.problems["canary.error_rate"].startswith("bad query:")
    assert snapshot.series["canary"]["p95_ms"] == pytest.approx(P95_CANARY_MS)


def test_empty_nan_and_several_series_are_none_with_the_reason(prometheus_url: str, scraped: Apps) -> None:
    queries = {
        "p95_ms": "1000 * histogram_quantile(0.95, sum by (le) (rate(no_such_histogram_bucket{$selector}[$window])))",
        "error_rate": "sum(rate(http_requests_total{$selector}[$window])) * 0 / 0",  # what no traffic gives
        "requests_per_s": "rate(http_requests_total{$selector}[$window])",  # one series per status
    }
    snapshot = PrometheusMetrics(prometheus_config(prometheus_url, scraped, queries=queries), "rig").sample()
    for series in ("canary", "stable"):
        values = snapshot.series[series]
        assert values["p95_ms"] is None
        assert snapshot.problems[f"{series}.p95_ms"].startswith("empty result")
        assert values["error_rate"] is None
        assert snapshot.problems[f"{series}.error_rate"].startswith("NaN")
        assert values["requests_per_s"] is None
        assert snapshot.problems[f"{series}.requests_per_s"].startswith("2 series returned")
        assert values["memory_percent"] is not None and values["cpu_percent"] is not None
    assert set(snapshot.problems) == {f"{s}.{m}" for s in ("canary", "stable")
                                      for m in ("p95_ms", "error_rate", "requests_per_s")}


def test_prometheus_where_nothing_listens_gives_none_with_the_reason() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    source = PrometheusMetrics(release(toml.prometheus(url)), "rig")
    snapshot = source.sample()
    assert all(value is None for values in snapshot.series.values() for value in values.values())
    assert len(snapshot.problems) == 10
    assert all(reason.startswith("prometheus unreachable: ConnectError") for reason in snapshot.problems.values())
    (problem,) = source.validate()
    assert problem.startswith(f"prometheus {url} (window {WINDOW_S}s): prometheus unreachable")


def test_a_prometheus_that_does_not_answer_times_out_once() -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://user:s3cret@127.0.0.1:{silent.getsockname()[1]}"
        source = PrometheusMetrics(release(toml.prometheus(url), {"timeout_s": 0.5}), "rig")
        snapshot = source.sample()
        silent.setblocking(False)  # the connections the kernel accepted for it: one per query sent
        asked = []
        while True:
            try:
                asked.append(silent.accept()[0])
            except BlockingIOError:
                break
        for connection in asked:
            connection.close()
    assert len(asked) == 1  # one timeout, not one per query
    assert all(value is None for values in snapshot.series.values() for value in values.values())
    assert set(snapshot.problems.values()) == {"prometheus did not answer within 0.5s (ReadTimeout)"}
    assert "s3cret" not in source.describe() and source.describe().startswith("prometheus http://***@127.0.0.1:")


# --- direct scrape -------------------------------------------------------------------------------


def test_scrape_has_no_rate_at_first_then_reads_each_series(apps: Apps) -> None:
    assert apps.first_scrape is not None and apps.scraper is not None
    first = apps.first_scrape
    for series in ("canary", "stable"):
        for metric in ("error_rate", "p95_ms", "cpu_percent", "requests_per_s"):
            assert first.series[series][metric] is None
            assert first.problems[f"{series}.{metric}"] == "first scrape: no rate yet"
    assert first.series["canary"]["memory_percent"] == pytest.approx(60)  # a gauge: no rate needed
    assert first.series["stable"]["memory_percent"] == pytest.approx(40)

    wait_until(lambda: served(apps.stable) - apps.first_served >= SCRAPE_GAP_S * RPS, timeout=60, interval=0.5,
               what=f"{SCRAPE_GAP_S}s of the app's requests since the first scrape")
    second = apps.scraper.sample()
    assert second.problems == {}
    canary, stable = second.series["canary"], second.series["stable"]
    assert canary["error_rate"] == pytest.approx(0.05, abs=0.005)
    assert stable["error_rate"] == 0.0
    assert canary["p95_ms"] == pytest.approx(P95_CANARY_MS)
    assert stable["p95_ms"] == pytest.approx(P95_STABLE_MS)
    assert canary["cpu_percent"] == pytest.approx(70, rel=0.15)
    assert stable["cpu_percent"] == pytest.approx(20, rel=0.15)
    assert (canary["memory_percent"], stable["memory_percent"]) == (pytest.approx(60), pytest.approx(40))
    for values in (canary, stable):
        assert values["requests_per_s"] == pytest.approx(RPS, rel=0.15)


def test_scrape_counts_real_requests_summed_over_urls(apps: Apps) -> None:
    # Both containers as one series: their counts add up; the real requests to "/" are counted too.
    source = ScrapeMetrics(scrape_config([f"{apps.stable.url}/metrics", f"{apps.canary.url}/metrics"],
                                         [f"{apps.canary.url}/metrics"]), "rig")
    source.sample()
    before = served(apps.stable)
    with httpx.Client(timeout=5) as client:
        for _ in range(20):
            client.get(f"{apps.stable.url}/")
    wait_until(lambda: served(apps.stable) - before >= 3 * RPS + 20, timeout=60, interval=0.5,
               what="3 s of the app's requests since the first sample")
    values = source.sample().series["stable"]
    # 2 x 100 synthetic a second, plus 20 real ones (at 20 ms each) within the ~3 s
    assert values["requests_per_s"] == pytest.approx(2 * RPS + 20 / 3, rel=0.15)
    assert values["error_rate"] is not None and 0.01 < values["error_rate"] < 0.04  # 5 % of about half
    assert values["memory_percent"] == pytest.approx(50)  # (40 + 60) / 2 over equal limits
    assert values["cpu_percent"] == pytest.approx(45, rel=0.15)  # (20 + 70) / 2 per instance
    assert values["p95_ms"] is not None and P95_STABLE_MS < values["p95_ms"] <= 250
    # What the decision trace says was asked: the metric, the series and every URL read for it.
    assert source.query_for("stable", "p95_ms") == (
        f"p95_ms of stable from a scrape of {apps.stable.url}/metrics, {apps.canary.url}/metrics")


def test_scrape_of_an_unreachable_url_gives_none_for_its_series(apps: Apps) -> None:
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    source = ScrapeMetrics(scrape_config([f"{apps.stable.url}/metrics", dead], [f"{apps.canary.url}/metrics"]),
                           "rig")
    for snapshot in (source.sample(), source.sample()):
        assert all(value is None for value in snapshot.series["stable"].values())
        assert all(reason.startswith(f"{dead} unreachable: ConnectError")
                   for key, reason in snapshot.problems.items() if key.startswith("stable."))
    assert snapshot.series["canary"]["memory_percent"] == pytest.approx(60)
    assert snapshot.problems.get("canary.error_rate") != snapshot.problems["stable.error_rate"]  # not the dead URL


def test_scrape_validate(apps: Apps) -> None:
    good = ScrapeMetrics(scrape_config([f"{apps.stable.url}/metrics"], [f"{apps.canary.url}/metrics"]), "rig")
    assert good.validate() == []
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    # a canary that does not run yet is fine; a stable that does not answer, or is not /metrics, is not
    assert ScrapeMetrics(scrape_config([f"{apps.stable.url}/metrics"], [dead]), "rig").validate() == []
    problems = ScrapeMetrics(scrape_config([dead, f"{apps.stable.url}/api/health"], []), "rig").validate()
    assert len(problems) == 3, problems
    assert "environments.rig.metrics.scrape.canary: no /metrics URLs" in problems
    assert any(p.startswith(f"stable: {dead} unreachable: ConnectError") for p in problems), problems
    health = f"stable: {apps.stable.url}/api/health is not Prometheus text: line 1:"
    assert any(p.startswith(health) for p in problems), problems
