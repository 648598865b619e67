"""Figures: an organization's /v1/stats, and the service-wide Prometheus text for /metrics."""

from __future__ import annotations

from typing import Any

from tuneyard.planning.calibration import accuracy
from tuneyard.scheduler.workers import alive_window_seconds, workers_alive
from tuneyard.settings import Settings
from tuneyard.store import stats as store
from tuneyard.store.engine import Database
from tuneyard.store.observability import jobs_by_org, service_figures
from tuneyard.store.throughput import memory_errors

# Latency buckets (seconds) for claim latency and job duration: from sub-second to a day.
BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def org_stats(db: Database, settings: Settings, org_id: str) -> store.Stats:
    """Jobs by status, queue depth, model and dataset counts, workers alive."""
    # A worker is alive while its heartbeat is younger than a lease: after that its jobs are reaped.
    return store.stats(db, org_id, worker_window_s=_alive_window(settings))


def memory_estimate_accuracy(db: Database, org_id: str) -> dict[str, Any]:
    """The running error of the memory estimates over the organization's finished jobs."""
    return accuracy(memory_errors(db, org_id))


def _alive_window(settings: Settings) -> float:
    return alive_window_seconds(settings.lease_seconds, settings.heartbeat_seconds)


def prometheus_text(db: Database, settings: Settings) -> str:
    """Queue depth, jobs by status, claim latency and job durations, in the text exposition format;
    jobs by organization and status too when `settings.metrics_org_labels` is on (off by default:
    a scrape then names no organization)."""
    figures = service_figures(db)
    alive = workers_alive(db, _alive_window(settings))
    lines = [
        "# HELP tuneyard_queue_depth Jobs waiting for a worker.",
        "# TYPE tuneyard_queue_depth gauge",
        f"tuneyard_queue_depth {figures.jobs_by_status.get('queued', 0)}",
        "# HELP tuneyard_workers_alive Workers that heartbeat recently.",
        "# TYPE tuneyard_workers_alive gauge",
        f"tuneyard_workers_alive {alive}",
        "# HELP tuneyard_jobs Jobs by status.",
        "# TYPE tuneyard_jobs gauge",
        *(f'tuneyard_jobs{{status="{s}"}} {n}' for s, n in sorted(figures.jobs_by_status.items())),
    ]
    lines += _histogram("tuneyard_claim_latency_seconds", "From submission to the first claim.",
                        {"": figures.claim_latencies_s})
    lines += _histogram("tuneyard_job_duration_seconds", "From the first claim to the end, by final status.",
                        {f'status="{s}"': v for s, v in sorted(figures.durations_s.items())})
    if settings.metrics_org_labels:
        lines += ["# HELP tuneyard_org_jobs Jobs by organization and status.", "# TYPE tuneyard_org_jobs gauge",
                  *(f'tuneyard_org_jobs{{org="{org}",status="{s}"}} {n}'
                    for (org, s), n in sorted(jobs_by_org(db).items()))]
    return "\n".join(lines) + "\n"


def _histogram(name: str, help_text: str, series: dict[str, list[float]]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} histogram"]
    for labels, values in series.items():
        sep = "," if labels else ""
        for bound in (*BUCKETS, float("inf")):
            le = "+Inf" if bound == float("inf") else f"{bound:g}"
            count = sum(1 for v in values if v <= bound)
            lines.append(f'{name}_bucket{{{labels}{sep}le="{le}"}} {count}')
        braces = f"{{{labels}}}" if labels else ""
        lines.append(f"{name}_sum{braces} {sum(values):.6f}")
        lines.append(f"{name}_count{braces} {len(values)}")
    return lines
