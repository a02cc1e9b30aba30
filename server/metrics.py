"""The Prometheus metrics the product records (served at ``/metrics`` by ``observability``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("flowdesk_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram("flowdesk_http_request_seconds", "HTTP request latency", ["endpoint"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
TIMER_LATENESS = Histogram("flowdesk_timer_lateness_seconds", "Timer fired_at − due_at",
                           buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300))
