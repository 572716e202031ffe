"""Storage use and the plan's quota.

What counts: the sum of `Asset.size` (the original files) of everything a user owns, the trash
included until it is purged (a trashed file still takes space). Previews and thumbnails are not
counted: the studio makes them, and they are a few percent of the originals.

The sum is one aggregate over the user's rows, found by an owner-leading index (`assets_owner_recent`,
or the owner foreign key's): at 100,000 assets of one user it takes about 30 ms on SQLite and 60 ms on
PostgreSQL (docs/assets/uploads.md), twice per upload. A cached counter would be faster to read but
would have to be kept right by every create, purge, project delete and admin edit; an (owner, size)
index would make it an index-only scan if it ever matters.

The quota is the plan's `storage_quota_mb` (MiB; empty means unlimited), read at each check, so a
plan change applies to the next upload.

Uploads are refused at the limit (`QuotaExceeded`, API 400 `quota_exceeded`, with used/limit/size).
The check runs twice: once before the file is written to storage (a fast refusal that writes nothing),
and again under a lock on the owner's user row in the transaction that inserts the asset, so two
uploads racing for the last free megabytes cannot both pass: the bound is exact for uploads.

Generated outputs are never refused: the user has paid for them, and throwing one away at the end of a
job would be worse than going over. They are stored, the account is then over quota, and uploads are
refused until space is freed (the storage endpoint and the account page say so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Sum
from django.template.defaultfilters import filesizeformat
from rest_framework import status

from assets.models import Asset
from billing.limits import plan_for_user
from core.errors import ServiceError
from projects.selectors import project_list_for_user

if TYPE_CHECKING:
    from accounts.models import User
    from billing.models import Plan

MIB = 1024 * 1024


@dataclass(frozen=True)
class StorageUse:
    used: int  # bytes
    limit: int | None  # bytes; None is unlimited
    plan_code: str
    plan_name: str

    @property
    def available(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)

    @property
    def over_quota(self) -> bool:
        """The quota is used up (reached, or passed by generated outputs): uploads are refused and new
        jobs wait until space is freed."""
        return self.limit is not None and self.used >= self.limit

    @property
    def percent(self) -> int | None:
        """For a progress bar: 0-100, rounded down, so 100 means full (99.6% shows 99)."""
        if self.limit is None:
            return None
        return min(100, self.used * 100 // self.limit) if self.limit else 100


class QuotaExceeded(ServiceError):
    code = "quota_exceeded"
    http_status = status.HTTP_400_BAD_REQUEST

    def __init__(self, *, use: StorageUse, size: int) -> None:
        assert use.limit is not None
        message = (f"Storage full: this file is {human(size)}, and your {use.plan_name} plan's "
                   f"{human(use.limit)} has {human(use.available or 0)} left ({human(use.used)} used). "
                   "Delete files or empty the trash to make room, or move to a larger plan.")
        super().__init__(message, fields={"file": [message]},
                         extra={"storage": {"used": use.used, "limit": use.limit, "size": size}})
        self.use = use
        self.size = size


def human(size: int) -> str:
    return str(filesizeformat(size)).replace("\xa0", " ")


def storage_used(*, owner_id: Any) -> int:
    """Bytes of a user's assets, trash included."""
    return Asset.objects.filter(owner_id=owner_id).aggregate(used=Sum("size"))["used"] or 0


def storage_by_project(*, owner_id: Any) -> dict[Any, dict[str, int]]:
    """{project_id: {"used": bytes, "assets": count}} for the projects that hold assets."""
    rows = (Asset.objects.filter(owner_id=owner_id).order_by().values("project_id")
            .annotate(used=Sum("size"), assets=Count("id")))
    return {row["project_id"]: {"used": row["used"] or 0, "assets": row["assets"]} for row in rows}


def _use(owner: User, plan: Plan) -> StorageUse:
    limit = plan.storage_quota_mb * MIB if plan.storage_quota_mb is not None else None
    return StorageUse(used=storage_used(owner_id=owner.pk), limit=limit, plan_code=plan.code, plan_name=plan.name)


def storage_use(*, owner: User) -> StorageUse:
    return _use(owner, plan_for_user(owner))


def quota_check(*, owner: User, size: int) -> StorageUse:
    """Raise QuotaExceeded if `size` more bytes would take `owner` over their plan's quota. A check
    without a lock: the fast refusal before anything is written."""
    use = storage_use(owner=owner)
    if use.limit is not None and use.used + size > use.limit:
        raise QuotaExceeded(use=use, size=size)
    return use


def quota_reserve(*, owner: User, size: int) -> None:
    """The same check, under a lock on the owner's row, inside the caller's transaction: the caller
    inserts the asset before committing, so concurrent uploads of one user are counted one after
    another. Locks only when there is a limit."""
    plan = plan_for_user(owner)
    if plan.storage_quota_mb is None:
        return
    assert transaction.get_connection().in_atomic_block, "quota_reserve must run inside the inserting transaction"
    list(get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk", flat=True))
    use = _use(owner, plan)
    if use.used + size > (use.limit or 0):
        raise QuotaExceeded(use=use, size=size)


def storage_summary_for_user(user: User) -> dict[str, Any]:
    """What the storage endpoint and the account page show: the total, the plan's limit and each of the
    user's projects (largest first), in three queries."""
    use = storage_use(owner=user)
    per_project = storage_by_project(owner_id=user.pk)
    projects: list[dict[str, Any]] = [
        {"id": row["id"], "name": row["name"], **per_project.get(row["id"], {"used": 0, "assets": 0})}
        for row in project_list_for_user(user).order_by().values("id", "name")]
    projects.sort(key=lambda p: (-p["used"], p["name"].lower()))
    return {"used": use.used, "limit": use.limit, "available": use.available, "over_quota": use.over_quota,
            "percent": use.percent, "plan": {"code": use.plan_code, "name": use.plan_name}, "projects": projects}
