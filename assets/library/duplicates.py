"""Duplicates among a user's own assets (never across users; the trash left out).

*Exact*: the same bytes, the same SHA-256. One indexed lookup on (owner, sha256), index
`assets_live_owner_sha256` (migration 0004, partial: live assets only).

*Near*: the same picture re-encoded, resized or lightly edited, by perceptual hash. `Asset.phash` is a
64-bit DCT hash (imagehash's `phash`, 16 hex digits) written by the preview worker; two assets of the
same kind are near duplicates when their hashes differ in at most NEAR_THRESHOLD bits. 6 of 64 is
imagehash's usual "same image" cut-off: re-encodes and resizes land at 0-4, crops and colour edits at
4-10, different pictures around 32 (half the bits).

Cost of "near": a Hamming distance has no useful B-tree index, so this reads the (id, phash) pairs of
the user's assets of that kind that have a hash, newest first, at most NEAR_SCAN_LIMIT of them, and
compares them in Python (an XOR and a popcount per row: about 10 ms per 100,000 rows, plus fetching
the pairs through the owner's index). Past the limit the oldest are not compared and the answer says
`near_truncated`. A prefix-bucket or BK-tree index would make it sub-linear, at the price of extra
columns or a table kept in step with every hash write; at tens of thousands of images per user the
scan is fast enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assets.library.selectors import asset_get_for_user, asset_list_for_user
from assets.models import Asset

if TYPE_CHECKING:
    from accounts.models import User

NEAR_THRESHOLD = 6  # bits of 64
NEAR_SCAN_LIMIT = 50_000
MAX_SHOWN = 50


@dataclass
class Duplicates:
    asset: Asset
    exact: list[Asset]
    near: list[tuple[Asset, int]]  # (asset, Hamming distance), closest first
    near_truncated: bool


def phash_distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def _valid_phash(value: str) -> int | None:
    if len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def asset_duplicates(*, user: User, asset_id: Any, threshold: int = NEAR_THRESHOLD) -> Duplicates:
    asset = asset_get_for_user(user, asset_id)
    others = asset_list_for_user(user).exclude(pk=asset.pk)
    exact = list(others.filter(sha256=asset.sha256).select_related("project").order_by("-created_at", "-id")[:MAX_SHOWN])
    near: list[tuple[Asset, int]] = []
    truncated = False
    target = _valid_phash(asset.phash)
    if target is not None:
        rows = list(others.filter(kind=asset.kind).exclude(phash="").exclude(sha256=asset.sha256)
                    .order_by("-created_at", "-id").values_list("pk", "phash")[:NEAR_SCAN_LIMIT + 1])
        truncated = len(rows) > NEAR_SCAN_LIMIT
        close: dict[Any, int] = {}
        for pk, value in rows[:NEAR_SCAN_LIMIT]:
            other = _valid_phash(value)
            if other is None:  # exact copies are left out by the query (same sha256)
                continue
            distance = (target ^ other).bit_count()
            if distance <= threshold:
                close[pk] = distance
        best = sorted(close.items(), key=lambda kv: kv[1])[:MAX_SHOWN]
        found = {a.pk: a for a in asset_list_for_user(user).filter(pk__in=[pk for pk, _ in best])
                 .select_related("project")}
        near = [(found[pk], d) for pk, d in best if pk in found]
    return Duplicates(asset=asset, exact=exact, near=near, near_truncated=truncated)
