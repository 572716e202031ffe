from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.http import Http404

from accounts.models import User
from assets.services import asset_create
from assets.uploads.inspection import RefusedFile
from billing.wording import credits_display
from core.errors import ServiceError
from generations.models import Generation, Status
from generations.services import generation_create
from projects.selectors import AmbiguousProject, project_get_by_ref_for_user


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


class Command(BaseCommand):
    help = ("Submit a generation through the same pipeline as the API and web app, wait for the worker "
            "to finish it, and print its status, credits and output files. "
            "Example: manage.py generate --user demo@studio.local --project 'My first project' "
            "--model local/sketch --input prompt='a lighthouse at dusk'")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--user", required=True, help="The account's email.")
        parser.add_argument("--project", required=True, help="The project's name or id.")
        parser.add_argument("--model", required=True, help="A catalog model id, e.g. local/sketch.")
        parser.add_argument("--input", action="append", default=[], metavar="KEY=VALUE",
                            help="An input; repeat for more. Values are JSON when they parse (width=512), "
                                 "else text. KEY=@path uploads a file into the project and passes it.")
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of text.")
        parser.add_argument("--no-wait", action="store_true", help="Submit and return at once.")
        parser.add_argument("--timeout", type=float, default=900, help="Seconds to wait (default 900).")

    def handle(self, *args: Any, **opts: Any) -> None:
        user = User.objects.filter(email__iexact=opts["user"]).first()
        if user is None:
            raise CommandError(f"No user with email {opts['user']!r}.")
        try:
            project = project_get_by_ref_for_user(user, opts["project"])
        except (Http404, AmbiguousProject) as exc:
            raise CommandError(str(exc)) from exc
        inputs: dict[str, Any] = {}
        for item in opts["input"]:
            key, sep, raw = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--input takes KEY=VALUE, got {item!r}.")
            inputs[key] = self._upload(project, raw[1:]) if raw.startswith("@") else _parse_value(raw)
        try:
            generation = generation_create(user=user, project_id=project.pk, model_id=opts["model"], inputs=inputs)
        except ServiceError as exc:  # every refusal, InsufficientCredits and BudgetExceeded included
            details = "; ".join(f"{k}: {', '.join(v)}" for k, v in exc.fields.items())
            raise CommandError(f"{exc.message}" + (f" ({details})" if details and details not in exc.message else ""))
        if not opts["json"]:
            self.stderr.write(f"Submitted {generation.pk} ({generation.model_id}), "
                              f"estimated {credits_display(generation.credits_estimated)}.")
        if not opts["no_wait"]:
            generation = self._wait(generation, opts["timeout"], quiet=opts["json"])
        self._report(generation, as_json=opts["json"])
        if generation.status in (Status.FAILED, Status.CANCELED):
            sys.exit(1)

    def _upload(self, project: Any, path: str) -> str:
        file = Path(path).expanduser()
        if not file.is_file():
            raise CommandError(f"No such file: {path}")
        try:
            with file.open("rb") as fh:
                asset = asset_create(project=project, fh=fh, name=file.name, size=file.stat().st_size)
        except RefusedFile as exc:
            raise CommandError(f"{file.name}: {exc.message}") from exc
        return str(asset.pk)

    def _wait(self, generation: Generation, timeout: float, *, quiet: bool) -> Generation:
        deadline = time.monotonic() + timeout
        shown = (None, None)
        while time.monotonic() < deadline:
            generation.refresh_from_db()
            state = (generation.status, generation.progress)
            if not quiet and state != shown:
                bar = "#" * (generation.progress // 5)
                self.stderr.write(f"\r{generation.status:<9} [{bar:<20}] {generation.progress:3d}%", ending="")
                shown = state
            if not generation.is_active:
                if not quiet:
                    self.stderr.write("")
                return generation
            time.sleep(0.25)
        if not quiet:
            self.stderr.write("")
        hint = " Is a worker running? `make run` starts one." if generation.status == Status.QUEUED else ""
        raise CommandError(f"Still {generation.status} after {timeout:.0f}s: {generation.pk}.{hint}")

    def _report(self, generation: Generation, *, as_json: bool) -> None:
        generation.refresh_from_db()
        outputs = list(generation.outputs.all())
        files = []
        for asset in outputs:
            try:
                files.append(asset.file.path)
            except NotImplementedError:  # remote storage has no local path
                files.append(asset.file.url)
        result = {
            "id": str(generation.pk), "model": generation.model_id, "status": generation.status,
            "credits": {"estimated": generation.credits_estimated, "charged": generation.credits_charged},
            "provider_cost_usd": str(generation.provider_cost_usd) if generation.provider_cost_usd is not None else None,
            "outputs": [{"asset": str(a.pk), "kind": a.kind, "mime": a.mime, "file": f} for a, f in zip(outputs, files, strict=True)],
            "error": {"code": generation.error_code, "message": generation.error_message} if generation.error_code else None,
        }
        if as_json:
            self.stdout.write(json.dumps(result, indent=2))
            return
        self.stdout.write(f"{generation.status}: {generation.model_id} {generation.pk}")
        self.stdout.write(f"credits: {generation.credits_charged} charged (estimated {generation.credits_estimated})")
        if generation.error_message:
            self.stdout.write(f"error: {generation.error_message}")
        for path in files:
            self.stdout.write(path)
