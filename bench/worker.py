"""The bench's Celery worker: the studio's own app and tasks, plus what only the bench needs.

`configure()` runs in both the bench process and this worker, before either touches the broker:

- the `bench` provider (bench.instant.InstantProvider) joins the provider registry;
- a result backend, for `bench.noop` only (the studio's tasks keep `task_ignore_result`; their state
  lives in the Generation row): files under $STUDIO_VAR_DIR/results beside the filesystem broker, or
  the same Redis as the broker;
- BENCH_BROKER_POLLING_INTERVAL, when set, overrides the filesystem broker's polling interval (the
  studio's BROKER_POLLING_INTERVAL, 0.1 s by default: a worker that finds the queue empty sleeps that
  long; see docs/BENCHMARKS.md). Atomic message writes come from config/broker.py, as in the studio.

Run as `python -m bench.worker <celery worker options>` from the project root; bench/run.py does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

from config.celery import app  # noqa: E402

_configured = False


def uses_filesystem_broker() -> bool:
    from django.conf import settings

    return settings.CELERY_BROKER_URL.startswith("filesystem://")


def configure() -> None:
    global _configured
    if _configured:
        return
    from django.conf import settings

    from generations.providers.registry import PROVIDERS

    PROVIDERS["bench"] = "bench.instant.InstantProvider"
    # A platform key for it, as a real provider would have, so its model is available to the bench user.
    settings.PROVIDER_KEYS["bench"] = "bench-platform-key"
    if uses_filesystem_broker():
        results = Path(settings.VAR_DIR) / "results"
        results.mkdir(parents=True, exist_ok=True)
        app.conf.result_backend = f"file://{results.resolve()}"
        polling = os.environ.get("BENCH_BROKER_POLLING_INTERVAL", "")
        if polling:
            app.conf.broker_transport_options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS,
                                                 "polling_interval": float(polling)}
    else:
        app.conf.result_backend = settings.CELERY_BROKER_URL
    _configured = True


@app.task(name="bench.noop", ignore_result=False)
def noop() -> None:
    """The baseline: one broker hop to the worker and one result back, no work and no database."""
    return None


def main(argv: list[str]) -> None:
    import django

    django.setup()
    configure()
    app.worker_main(["worker", *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
