"""Thin tasks for assets: they take ids and call services that tests can call directly."""

from __future__ import annotations

import logging
import random

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded

from assets.library.organise import assets_purge_trash
from assets.previews import service as previews
from assets.storage import files_delete

logger = logging.getLogger(__name__)

PREVIEW_MAX_RETRIES = 6  # 10 s, 20 s, 40 s ... about 10 minutes of storage outage in all
PREVIEW_SOFT_TIME_LIMIT = 240
PREVIEW_TIME_LIMIT = 300


def _backoff(retries: int) -> float:
    return min(10 * 2**retries, 600) * random.uniform(0.8, 1.2)  # jittered so a backlog does not retry in step


# reject_on_worker_lost=False, unlike the generation tasks: a file that crashes the decoder (or gets the
# child killed at the hard time limit) must not be re-delivered into the next worker forever. The message
# is acknowledged and the asset stays pending until `manage.py previews_backfill` retries it on purpose.
# The time limits are enforced by the prefork pool (the default); the soft one lets us record why.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=False, max_retries=PREVIEW_MAX_RETRIES,
             soft_time_limit=PREVIEW_SOFT_TIME_LIMIT, time_limit=PREVIEW_TIME_LIMIT)
def asset_preview_make(self, asset_id: str, force: bool = False) -> str | None:  # type: ignore[no-untyped-def]
    try:
        return previews.preview_make(asset_id, force=force)
    except previews.PreviewRetry as exc:
        if self.request.retries >= self.max_retries:
            logger.warning("preview of asset %s gave up after %d retries: %s", asset_id, self.request.retries, exc)
            return previews.preview_fail(asset_id, "Storage was unavailable while making the preview; "
                                                   "it will be tried again by the next backfill.")
        raise self.retry(countdown=_backoff(self.request.retries), exc=exc)
    except SoftTimeLimitExceeded:
        return previews.preview_fail(asset_id, "Making the preview took too long.", force=True)
    except Exception:
        logger.exception("preview of asset %s crashed", asset_id)
        previews.preview_fail(asset_id, "The studio hit an internal error making this preview.", force=True)
        raise


@shared_task
def assets_purge_trash_task() -> int:
    """Beat, daily: assets in the trash for 30 days are deleted for good (config/settings/base.py CELERY_BEAT_SCHEDULE)."""
    return assets_purge_trash()


FILES_DELETE_MAX_RETRIES = 6


@shared_task(bind=True, max_retries=FILES_DELETE_MAX_RETRIES)
def assets_files_delete(self, names: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Delete stored files whose rows are gone (assets.storage.files_delete_on_commit); the ones that
    fail are retried with backoff, then logged by name for an operator."""
    failed = files_delete(names)
    if failed:
        if self.request.retries >= self.max_retries:
            logger.error("gave up deleting %d stored files: %s", len(failed), ", ".join(failed[:50]))
        else:
            raise self.retry(args=[failed], countdown=_backoff(self.request.retries))
    return len(names) - len(failed)
