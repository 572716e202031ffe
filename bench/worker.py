"""The bench's Celery worker: the studio's own app and tasks, plus what only the bench needs.

`configure()` runs in both the bench process and this worker, before either touches the broker:

- the `bench` provider (bench.instant.InstantProvider) joins the provider registry;
- a result backend, for `bench.noop` only (the studio's tasks keep `task_ignore_result`; their state
  lives in the Generation row): files under $STUDIO_VAR_DIR/results beside the filesystem broker, or
  the same Redis as the broker;
- BENCH_BROKER_POLLING_INTERVAL, when set, overrides kombu's filesystem transport polling interval
  (1 s by default: a worker that finds the queue empty sleeps that long; see docs/BENCHMARKS.md);
- kombu's filesystem transport writes each message atomically (see `_atomic_filesystem_put`).

Run as `python -m bench.worker <celery worker options>` from the project root; bench/run.py does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from config.celery import app  # noqa: E402

_configured = False


def uses_filesystem_broker() -> bool:
    from django.conf import settings

    return settings.CELERY_BROKER_URL.startswith("filesystem://")


def _atomic_filesystem_put() -> None:
    """kombu's filesystem transport creates a message file and then writes it, while a consumer moves
    and reads any `*.msg` file it lists, without the producer's lock. A worker that lists the folder
    in between reads an empty message, and its consumer dies with JSONDecodeError (the symptom of
    celery/kombu#1551); the message is lost. The bench hit it within a few hundred jobs at a 5 ms
    polling interval. Here a message is written under a name the consumer skips, then renamed into
    place, which is atomic within one filesystem."""
    import uuid
    from time import monotonic

    from kombu.exceptions import ChannelError
    from kombu.transport import filesystem
    from kombu.utils.encoding import str_to_bytes
    from kombu.utils.json import dumps

    def _put(self: filesystem.Channel, queue: str, payload: dict, **kwargs: object) -> None:
        name = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        partial = f"{name}.partial"  # the consumer matches on the exact suffix ".<queue>.msg"
        try:
            with open(partial, "wb") as fh:
                fh.write(str_to_bytes(dumps(payload)))
            os.replace(partial, name)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc

    filesystem.Channel._put = _put


def configure() -> None:
    global _configured
    if _configured:
        return
    from django.conf import settings

    from generations.providers.registry import PROVIDERS

    PROVIDERS["bench"] = "bench.instant.InstantProvider"
    if uses_filesystem_broker():
        results = Path(settings.VAR_DIR) / "results"
        results.mkdir(parents=True, exist_ok=True)
        app.conf.result_backend = f"file://{results.resolve()}"
        _atomic_filesystem_put()
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
