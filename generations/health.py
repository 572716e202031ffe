"""Provider health: every attempt's outcome is recorded; a circuit breaker stops sending work to a
provider that keeps failing transiently, for a while.

The breaker lives in the shared cache (Redis in production), so every web process and worker sees the
same state: after CIRCUIT_FAILURES transient failures of one provider within CIRCUIT_WINDOW seconds,
the circuit opens for CIRCUIT_COOLDOWN seconds. While it is open, the runner sends the job to a
fallback model if the job has one the user can pay for, and otherwise re-queues it for when the
circuit closes (without spending one of its attempts). A success closes it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Avg, Count, Q
from django.utils import timezone

from generations.models import ProviderOutcome


def _failures_key(provider: str) -> str:
    return f"circuit:{provider}:failures"


def _open_key(provider: str) -> str:
    return f"circuit:{provider}:open-until"


def record_outcome(*, provider: str, model: str, ok: bool, transient: bool = False, error_code: str = "",
                   latency_ms: float = 0) -> None:
    ProviderOutcome.objects.create(provider=provider, model=model, ok=ok, transient=transient,
                                   error_code=error_code[:40], latency_ms=max(0, int(latency_ms)))
    if provider == "local":
        return  # runs in our own worker: no circuit to open; its health is the worker's
    if ok:
        cache.delete_many([_failures_key(provider), _open_key(provider)])
        return
    if not transient:
        return  # a bad prompt or a rejected input says nothing about the provider's health
    key = _failures_key(provider)
    cache.add(key, 0, timeout=settings.CIRCUIT_WINDOW)
    try:
        failures = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.CIRCUIT_WINDOW)
        failures = 1
    if failures >= settings.CIRCUIT_FAILURES:
        cache.set(_open_key(provider), time.time() + settings.CIRCUIT_COOLDOWN, timeout=settings.CIRCUIT_COOLDOWN)


def circuit_open_for(provider: str) -> float:
    """Seconds until the provider's circuit closes; 0 when it is closed."""
    until = cache.get(_open_key(provider))
    return max(0.0, float(until) - time.time()) if until else 0.0


@dataclass
class HealthRow:
    provider: str
    model: str
    attempts: int
    success_rate: float
    avg_latency_ms: float
    transient_failures: int
    circuit_open_seconds: float


def provider_health(*, window: timedelta = timedelta(hours=1)) -> list[HealthRow]:
    """Rolling success rate and latency per provider and model over `window` (for the admin)."""
    since = timezone.now() - window
    rows = (ProviderOutcome.objects.filter(created_at__gte=since).values("provider", "model")
            .annotate(attempts=Count("id"), n_ok=Count("id", filter=Q(ok=True)),
                      n_transient=Count("id", filter=Q(ok=False, transient=True)),
                      latency=Avg("latency_ms", filter=Q(ok=True)))
            .order_by("provider", "model"))
    return [HealthRow(provider=r["provider"], model=r["model"], attempts=r["attempts"],
                      success_rate=r["n_ok"] / r["attempts"] if r["attempts"] else 0.0,
                      avg_latency_ms=float(r["latency"] or 0), transient_failures=r["n_transient"],
                      circuit_open_seconds=circuit_open_for(r["provider"])) for r in rows]


def outcomes_prune(*, older_than: timedelta = timedelta(days=30)) -> int:
    deleted, _ = ProviderOutcome.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted




def typical_seconds(model_ids: list[str], *, window: timedelta = timedelta(days=7)) -> dict[str, float]:
    """Average successful run time per model over the window, for "how long will this take" hints.
    One query; models with no recent runs are absent."""
    since = timezone.now() - window
    rows = (ProviderOutcome.objects.filter(created_at__gte=since, ok=True, model__in=model_ids)
            .values("model").annotate(latency=Avg("latency_ms")))
    return {row["model"]: float(row["latency"]) / 1000 for row in rows}
