"""marketing_view's own Prometheus metrics (beside the shared ones in shared/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

PROJECTED = Counter(
    "marketing_view_projected_total", "Entity writes to Redis: changed, or unchanged (duplicate or older version)",
    ["kind", "outcome"],
)
SKIPPED = Counter(
    "marketing_view_skipped_events_total",
    "Events not applied by the live consumer because no read model exists yet (a rebuild replays them)",
)
SERVING = Gauge("marketing_view_read_model_serving", "1 when a current generation exists and answers reads")
REBUILD_PROGRESS = Gauge("marketing_view_rebuild_progress", "Fraction of the history replayed by the running rebuild")
REBUILDS = Counter("marketing_view_rebuilds_total", "Rebuilds finished or failed", ["outcome", "reason"])
DATA_LOSSES = Counter("marketing_view_data_losses_total", "Times the current generation vanished from Redis")
