# mypy: disable-error-code="no-untyped-call"
"""What a scrape of ``/metrics`` reads, and the answer to one in the format the scraper asks
for."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    multiprocess,
)
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from adapters.prometheus.metrics import metrics, multiprocess_dir, process_registry


def scrape_registry(collectors: Sequence[Collector] = ()) -> CollectorRegistry:
    """What a scrape reads: this process's metrics (or, in multi-process mode, every process's,
    from the shared directory), process figures where they are meaningful, and ``collectors``."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        metrics()
        registry = CollectorRegistry()
        registry.register(_Forward(process_registry()))
        registry.register(PROCESS_COLLECTOR)
        registry.register(PLATFORM_COLLECTOR)
    for collector in collectors:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> Callable[[str], tuple[int, str, bytes]]:
    """Answers a GET of ``/metrics``: given the Accept header, (200, content type, body) in
    Prometheus text or OpenMetrics, whichever the scraper asks for."""

    def answer(accept: str) -> tuple[int, str, bytes]:
        encoder, content_type = choose_encoder(accept)
        return 200, content_type, encoder(registry)

    return answer


class _Forward(Collector):
    """Serves another registry's metrics (ours stays free of scrape-time collectors)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()
