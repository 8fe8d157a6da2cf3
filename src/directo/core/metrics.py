"""Prometheus metrics, served at ``/metrics``.

The workers of ``directo serve --workers N`` run with ``PROMETHEUS_MULTIPROC_DIR`` set by their
supervisor (directo/workers.py): prometheus_client then keeps every value in a file of that
directory, and whichever worker answers ``/metrics`` sums them all."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

registry = CollectorRegistry()
requests = Histogram("directo_http_request_seconds", "HTTP requests by route and status",
                     ["method", "route", "status"], registry=registry,
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
messages_sent = Counter("directo_messages_sent_total", "messages committed", registry=registry)
events_delivered = Counter("directo_events_delivered_total", "events pushed to clients",
                           ["transport"], registry=registry)
commit_batch_jobs = Histogram("directo_commit_batch_jobs",
                              "writes committed together by one SQLite group commit",
                              registry=registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
broker_failures = Counter("directo_broker_failures_total",
                          "broker operations (Redis, or the hub of --workers) that failed; the "
                          "database catch-up covers them", ["operation"], registry=registry)
streams_open = Gauge("directo_streams_open", "open WebSocket streams", registry=registry,
                     multiprocess_mode="livesum")

gc_pauses = Histogram("directo_gc_pause_seconds",
                      "garbage-collector pauses (the event loop stands still) by generation",
                      ["generation"], registry=registry,
                      buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                               1, 2.5))
gc_frozen = Gauge("directo_gc_frozen_objects",
                  "objects alive after start-up, which the garbage collector no longer walks "
                  "(with several workers, the most of any one)",
                  registry=registry, multiprocess_mode="livemax")


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    requests.labels(method, route, str(status)).observe(seconds)


def render() -> bytes:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:  # every worker's values, summed
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker)
        return generate_latest(every_worker)
    return generate_latest(registry)


def time_gc_pauses() -> None:
    """Observe every collection's pause in ``directo_gc_pause_seconds`` (once per process)."""
    if _gc_pause in gc.callbacks:
        return
    gc.callbacks.append(_gc_pause)


_gc_began = 0.0


def _gc_pause(phase: str, info: dict[str, Any]) -> None:
    global _gc_began
    if phase == "start":
        _gc_began = time.perf_counter()
    else:
        gc_pauses.labels(str(info["generation"])).observe(time.perf_counter() - _gc_began)
