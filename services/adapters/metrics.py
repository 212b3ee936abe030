"""Which metrics source an environment uses: its Prometheus, else a direct scrape of /metrics."""

from __future__ import annotations

from services.adapters.prometheus import PrometheusMetrics
from services.adapters.scrape import ScrapeMetrics
from services.core.config import ReleaseConfig
from services.core.operations import StepFailed
from services.core.ports import MetricsSource


def metrics_source(config: ReleaseConfig, env: str) -> MetricsSource:
    """PrometheusMetrics when prometheus_url is set, else ScrapeMetrics when scrape URLs are set.

    An unknown environment raises UnknownEnvironment; one with neither raises StepFailed.
    """
    metrics = config.environment(env).metrics
    if metrics.prometheus_url:
        return PrometheusMetrics(config, env)
    if any(metrics.scrape.values()):
        return ScrapeMetrics(config, env)
    raise StepFailed(
        f"no metrics source for {env}: set prometheus_url, or the /metrics URLs to scrape,"
        f" under [environments.{env}.metrics]",
        (f'add prometheus_url = "http://prometheus:9090" under [environments.{env}.metrics]',
         'or add scrape = { stable = ["http://host:3000/metrics"], canary = [...] } there',
         "see \"Canary metrics\" in docs/operations.md"),
    )
