from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from generations.catalog import CatalogError, catalog_load


class Command(BaseCommand):
    help = "Load the model catalog from generations/catalog/*.json (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("files", nargs="*", type=Path, help="Catalog files (default: all of them).")

    def handle(self, *args: Any, files: list[Path], **options: Any) -> None:
        try:
            result = catalog_load(files or None)
        except (CatalogError, OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Catalog: {result.created} new, {result.updated} updated, "
                          f"{result.new_prices} new price cards, {result.deactivated} deactivated.")
