"""Prometheus metrics, served at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

registry = CollectorRegistry()
requests = Histogram("directo_http_request_seconds", "HTTP requests by route and status",
                     ["method", "route", "status"], registry=registry,
                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
messages_sent = Counter("directo_messages_sent_total", "messages committed", registry=registry)
events_delivered = Counter("directo_events_delivered_total", "events pushed to clients",
                           ["transport"], registry=registry)
streams_open = Gauge("directo_streams_open", "open WebSocket streams", registry=registry)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    requests.labels(method, route, str(status)).observe(seconds)


def render() -> bytes:
    return generate_latest(registry)
