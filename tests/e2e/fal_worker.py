"""The Celery app for worker processes that drive the real fal adapter against tests/fakes/fal.py: the
studio's own app, with the fake's loopback address allowed for output downloads, as the in-process
`fal` fixture allows it (tests/providers/fal/conftest.py). Started as `celery -A tests.e2e.fal_worker`."""

from __future__ import annotations

import os
from typing import Any

from celery.signals import worker_init

from config.celery import app

__all__ = ["app"]


@worker_init.connect
def _allow_the_fake(**kwargs: Any) -> None:
    # Imported here: Django is set up by Celery's own worker_init handler, which runs before this one.
    from django.conf import settings

    from generations.providers.fal.adapter import FalProvider

    # The prefork pool's children are forked after this, so they inherit both.
    settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST = [os.environ["TEST_FAL_FAKE_ADDRESS"]]
    FalProvider.output_hosts = (*FalProvider.output_hosts, "127.0.0.1")
