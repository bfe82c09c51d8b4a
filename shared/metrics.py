"""Prometheus metrics every service exposes on /metrics (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_PROCESSED = Counter(
    "marketing_events_processed_total", "Messages applied (including duplicates skipped)",
    ["service", "topic", "event_type", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "marketing_events_dead_lettered_total", "Messages parked on a dead-letter topic",
    ["service", "topic", "reason"],
)
EVENTS_REJECTED = Counter(
    "marketing_events_rejected_total", "Business rejections (recorded, announced, not errors)",
    ["service", "event_type", "reason"],
)
PROCESSING_SECONDS = Histogram(
    "marketing_batch_processing_seconds", "Time to apply one polled batch of one partition",
    ["service", "topic"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENT_AGE_SECONDS = Histogram(
    "marketing_event_age_seconds", "From the message's Kafka timestamp to its effect committed",
    ["service", "topic"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CONSUMER_LAG = Gauge(
    "marketing_consumer_lag", "Messages behind the partition's high watermark",
    ["service", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge("marketing_outbox_backlog", "Outbox rows not yet published", ["service"])
OUTBOX_PUBLISHED = Counter("marketing_outbox_published_total", "Outbox rows published", ["service", "topic"])
DEPENDENCY_UP = Gauge("marketing_dependency_up", "1 when the dependency answered the last check",
                      ["service", "dependency"])
HTTP_REQUESTS = Counter("marketing_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
HTTP_SECONDS = Histogram(
    "marketing_http_request_seconds", "HTTP request latency", ["service", "method", "route"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
