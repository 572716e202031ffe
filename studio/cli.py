"""A command-line client for the studio's REST API: upload files, list assets, download one.

    export STUDIO_TOKEN=…            # an API token (Account → API tokens)
    export STUDIO_URL=https://studio.example.com   # default http://127.0.0.1:8000
    studio upload "My first project" shot-01.mp4 script.fountain
    studio assets --project PROJECT_ID
    studio download ASSET_ID -o ./downloads/

`studio` is the console script the project installs (.venv/bin/studio, from any directory);
`python -m studio.cli` is the same program. A project is named by its id or its name (exact, else in
any case); a name several projects answer to is refused with their ids.

Uploads and downloads are streamed (httpx reads and writes 64 KB at a time), so a 2 GB video needs no
more memory than a small one, and a progress line shows on a terminal. A refused file prints the
server's reason (its error code and message) and the exit status is 1; the other files still upload.

It talks only HTTP to the API (no Django import), so it runs anywhere with httpx installed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(30.0, read=600.0)  # the server inspects a large upload before it answers
CHUNK = 64 * 1024


class CliError(Exception):
    """A failure worth one line on stderr and exit status 1."""


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def api_error(response: httpx.Response) -> str:
    """The API's error body as one line: `code: message`, with field errors when they add something."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code} {response.reason_phrase}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}: {body}"
    text = f"{error.get('code', 'error')}: {error.get('message', '')}"
    fields = error.get("fields") or {}
    details = [f"{name}: {' '.join(map(str, msgs))}" for name, msgs in fields.items()
               if isinstance(msgs, list) and " ".join(map(str, msgs)) != error.get("message")]
    return text + (f" ({'; '.join(details)})" if details else "")


class Progress:
    """One line on stderr, redrawn at most ten times a second; silent when stderr is not a terminal."""

    def __init__(self, label: str, total: int | None, *, stream: IO[str] | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.started = time.monotonic()
        self.drawn = 0.0

    def advance(self, count: int) -> None:
        if not count:
            return
        self.done += count
        now = time.monotonic()
        if self.enabled and (now - self.drawn > 0.1 or (self.total and self.done >= self.total)):
            self.drawn = now
            rate = self.done / max(now - self.started, 1e-6)
            share = f" {self.done * 100 // self.total:3d}%" if self.total else ""
            of = f" / {human(self.total)}" if self.total else ""
            self.stream.write(f"\r{self.label}  {human(self.done)}{of}{share}  {human(rate)}/s  ")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class ProgressReader:
    """A file wrapper that reports what httpx reads from it. httpx takes the length from fileno() and
    streams the multipart body with read(), so the file is never read whole."""

    def __init__(self, fh: IO[bytes], progress: Progress) -> None:
        self.fh = fh
        self.progress = progress

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(size)
        self.progress.advance(len(data))
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.fh.seek(offset, whence)

    def tell(self) -> int:
        return self.fh.tell()

    def fileno(self) -> int:
        return self.fh.fileno()


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}",
                                                             "User-Agent": "studio-cli"}, timeout=TIMEOUT)

    def close(self) -> None:
        self.http.close()

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise CliError(f"Could not reach {self.url}: {exc}") from exc
        if response.status_code != 200:
            raise CliError(api_error(response))
        return response.json()

    def project_id(self, ref: str) -> str:
        """The id of the project `ref` names: an id is used as it is (the server answers 404 for one
        that is not yours); a name is looked up in your projects, exactly, else in any case."""
        ref = ref.strip()
        try:
            return str(uuid.UUID(ref))
        except ValueError:
            pass
        projects: list[dict[str, Any]] = []
        path: str | None = "/api/v1/projects"
        while path:
            page = self.get_json(path)
            projects.extend(page.get("results", []))
            path = page.get("next")
        matches = ([p for p in projects if p["name"] == ref]
                   or [p for p in projects if p["name"].casefold() == ref.casefold()])
        if len(matches) == 1:
            return str(matches[0]["id"])
        if not matches:
            raise CliError(f"No project named {ref!r}. Your projects: "
                           + ("; ".join(f"{p['name']!r} ({p['id']})" for p in projects) or "none") + ".")
        listing = "; ".join(f"{p['name']!r} ({p['id']})" for p in matches)
        raise CliError(f"{ref!r} matches {len(matches)} projects: {listing}. Pass the id.")

    def upload(self, project: str, path: Path, *, keep_location: bool, out: IO[str]) -> bool:
        size = path.stat().st_size
        progress = Progress(path.name, size)
        with path.open("rb") as fh:
            data = {"project": project, **({"keep_location": "true"} if keep_location else {})}
            files = {"file": (path.name, ProgressReader(fh, progress), "application/octet-stream")}
            try:
                response = self.http.post("/api/v1/assets", data=data, files=files)
            except httpx.HTTPError as exc:
                progress.finish()
                sys.stderr.write(f"{path}: upload failed: {exc}\n")
                return False
        progress.finish()
        if response.status_code != 201:
            sys.stderr.write(f"{path}: refused: {api_error(response)}\n")
            return False
        asset = response.json()
        out.write(f"{asset['id']}  {asset['kind']:<5}  {human(asset['size']):>9}  {asset['name']}\n")
        return True

    def assets(self, project: str | None) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] | None = {"project": project} if project else None
        path: str | None = "/api/v1/assets"
        while path:
            page = self.get_json(path, params)
            yield from page.get("results", [])
            path, params = page.get("next"), None  # `next` carries every parameter

    def download(self, asset_id: str, output: str | None, *, force: bool, out: IO[str]) -> Path:
        asset = self.get_json(f"/api/v1/assets/{asset_id}")
        target = _target_path(output, asset["name"])
        if target.exists() and not force:
            raise CliError(f"{target} exists; pass --force to overwrite it.")
        url = asset["download_url"]
        # Our own download endpoint needs the token; a presigned S3 URL must not get it (it is
        # signed already, and the token would leak to another host).
        ours = urlsplit(url).netloc in ("", urlsplit(self.url).netloc)
        partial = target.with_name(f".{target.name}.part")
        progress = Progress(target.name, asset.get("size"))
        request = self.http if ours else httpx.Client(timeout=TIMEOUT)
        try:
            with request.stream("GET", url) as response:
                if response.status_code != 200:
                    response.read()
                    raise CliError(f"Download failed: {api_error(response)}")
                with partial.open("wb") as fh:
                    for chunk in response.iter_bytes(CHUNK):
                        fh.write(chunk)
                        progress.advance(len(chunk))
            os.replace(partial, target)
        except httpx.HTTPError as exc:
            raise CliError(f"Download failed: {exc}") from exc
        finally:
            progress.finish()
            partial.unlink(missing_ok=True)
            if not ours:
                request.close()
        out.write(f"{target}\n")
        return target


def _target_path(output: str | None, name: str) -> Path:
    safe = Path(name.replace("\\", "/")).name or "download"  # the server's name, never a path
    if not output:
        return Path.cwd() / safe
    path = Path(output)
    if path.is_dir() or output.endswith(("/", os.sep)):  # a directory, existing or to make
        path.mkdir(parents=True, exist_ok=True)
        return path / safe
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description=(
        "Upload, list and download studio assets through the REST API."))
    parser.add_argument("--url", default=os.environ.get("STUDIO_URL", DEFAULT_URL),
                        help=f"The studio's address (env STUDIO_URL; default {DEFAULT_URL}).")
    parser.add_argument("--token", default=os.environ.get("STUDIO_TOKEN", ""),
                        help="An API token from Account → API tokens (env STUDIO_TOKEN).")
    commands = parser.add_subparsers(dest="command", required=True)
    upload = commands.add_parser("upload", help="Upload files to a project.")
    upload.add_argument("project", help="The project's name or id (the id is in the project page's address).")
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    upload.add_argument("--keep-location", action="store_true",
                        help="Keep GPS location in photos (removed by default).")
    listing = commands.add_parser("assets", help="List your assets, newest first.")
    listing.add_argument("--project", help="Only this project's assets (its name or id).")
    download = commands.add_parser("download", help="Download an asset's file.")
    download.add_argument("asset", help="The asset's id.")
    download.add_argument("-o", "--output",
                          help="A file name, or a directory to save it in under its own name (default: here).")
    download.add_argument("--force", action="store_true", help="Overwrite an existing file.")
    return parser


def main(argv: list[str] | None = None, *, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    if not args.token:
        sys.stderr.write("No API token: set STUDIO_TOKEN or pass --token (create one under Account → API tokens).\n")
        return 2
    client = Client(args.url, args.token)
    try:
        if args.command == "upload":
            missing = [str(p) for p in args.files if not p.is_file()]
            if missing:
                raise CliError(f"No such file: {', '.join(missing)}")
            project = client.project_id(args.project)
            results = [client.upload(project, path, keep_location=args.keep_location, out=out)
                       for path in args.files]
            return 0 if all(results) else 1
        if args.command == "assets":
            for asset in client.assets(client.project_id(args.project) if args.project else None):
                out.write(f"{asset['id']}  {asset['kind']:<5}  {human(asset['size']):>9}  {asset['name']}\n")
            return 0
        client.download(args.asset, args.output, force=args.force, out=out)
        return 0
    except CliError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
