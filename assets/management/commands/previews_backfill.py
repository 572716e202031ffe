from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from assets.models import AssetKind
from assets.previews.service import previews_backfill


class Command(BaseCommand):
    help = ("Queue preview making (thumbnails, blurhash, poster frames, waveforms, PDF pages) for assets whose "
            "preview is pending or failed; with --all for every asset. The worker does the work.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--all", action="store_true", dest="everything",
                            help="Remake every asset's previews, ready ones included.")
        parser.add_argument("--kind", choices=AssetKind.values, help="Only assets of this kind.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read and queued per batch.")
        parser.add_argument("--inline", action="store_true",
                            help="Make them in this process instead of queueing them (no worker needed).")

    def handle(self, *args: Any, everything: bool, kind: str | None, batch_size: int, inline: bool,
               **options: Any) -> None:
        verb = "made" if inline else "queued"
        total = previews_backfill(everything=everything, kind=kind, batch_size=max(1, batch_size), inline=inline,
                                  progress=lambda n: self.stdout.write(f"{n} {verb}…"))
        self.stdout.write(self.style.SUCCESS(f"{total} asset previews {verb}."))
