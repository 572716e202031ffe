"""The command-line client against a live server (pytest-django's live_server), through real HTTP:
upload (streamed, several files, one refused with the server's reason), list, download."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from accounts.services import api_token_create
from assets.models import Asset
from studio import cli
from tests.assets.test_uploads import FOUNTAIN, exif_of, exif_with_gps, jpeg_bytes, png_bytes

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def token(owner: Any) -> str:
    return api_token_create(user=owner, name="cli")[1]


def run(live_server: Any, token: str, *args: str, capsys: Any) -> tuple[int, str, str]:
    out = io.StringIO()
    status = cli.main(["--url", live_server.url, "--token", token, *args], out=out)
    return status, out.getvalue(), capsys.readouterr().err


def test_upload_list_and_download_round_trip(live_server: Any, token: str, project: Any, tmp_path: Path,
                                             capsys: Any) -> None:
    image = tmp_path / "poster.png"
    image.write_bytes(png_bytes((320, 200), noise=True))
    script = tmp_path / "scene.fountain"
    script.write_bytes(FOUNTAIN)
    status, out, err = run(live_server, token, "upload", str(project.pk), str(image), str(script), capsys=capsys)
    assert status == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith("poster.png") and lines[1].endswith("scene.fountain")
    assert {a.name for a in Asset.objects.all()} == {"poster.png", "scene.fountain"}

    status, out, _ = run(live_server, token, "assets", "--project", str(project.pk), capsys=capsys)
    assert status == 0
    listed = out.strip().splitlines()
    assert [line.split()[-1] for line in listed] == ["scene.fountain", "poster.png"]  # newest first
    poster_id = listed[1].split()[0]

    target = tmp_path / "downloads"
    status, out, _ = run(live_server, token, "download", poster_id, "-o", f"{target}{os.sep}", capsys=capsys)
    assert status == 0
    saved = target / "poster.png"
    assert out.strip() == str(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == Asset.objects.get(pk=poster_id).sha256
    assert [p.name for p in target.iterdir()] == ["poster.png"]  # no partial file left

    status, _, err = run(live_server, token, "download", poster_id, "-o", str(saved), capsys=capsys)
    assert status == 1 and "exists; pass --force" in err


def test_a_refused_file_prints_the_servers_reason_and_the_others_still_upload(
        live_server: Any, token: str, project: Any, tmp_path: Path, capsys: Any) -> None:
    fake = tmp_path / "cat.png"
    fake.write_bytes(b"<html><script>alert(1)</script></html>")
    good = tmp_path / "ok.png"
    good.write_bytes(png_bytes())
    status, out, err = run(live_server, token, "upload", str(project.pk), str(fake), str(good), capsys=capsys)
    assert status == 1
    assert f"{fake}: refused: unsupported_file: This file is HTML, SVG or XML markup" in err
    assert out.strip().endswith("ok.png")
    assert list(Asset.objects.values_list("name", flat=True)) == ["ok.png"]


def test_keep_location_is_passed_through(live_server: Any, token: str, project: Any, tmp_path: Path,
                                         capsys: Any) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg_bytes(exif=exif_with_gps()))
    assert run(live_server, token, "upload", str(project.pk), str(photo), capsys=capsys)[0] == 0
    assert run(live_server, token, "upload", str(project.pk), str(photo), "--keep-location", capsys=capsys)[0] == 0
    stored = [exif_of(a.file.read()).get_ifd(0x8825) for a in Asset.objects.order_by("created_at")]
    assert stored[0] == {} and stored[1]


def test_errors_are_one_clear_line(live_server: Any, token: str, outsider: Any, project: Any, tmp_path: Path,
                                   capsys: Any) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    status, _, err = run(live_server, "wrong-token", "assets", capsys=capsys)
    assert status == 1 and err.startswith("authentication_failed:")
    theirs = api_token_create(user=outsider, name="cli")[1]
    status, _, err = run(live_server, theirs, "upload", str(project.pk), str(image), capsys=capsys)
    assert status == 1 and "refused: not_found:" in err  # another user's project is simply not there
    status, _, err = run(live_server, token, "upload", str(project.pk), str(tmp_path / "missing.png"), capsys=capsys)
    assert status == 1 and "No such file" in err
    status, _, err = run(live_server, token, "download", "00000000-0000-0000-0000-000000000000", capsys=capsys)
    assert status == 1 and err.startswith("not_found:")


def test_it_runs_as_a_module_and_needs_a_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "STUDIO_TOKEN"}
    helped = subprocess.run([sys.executable, "-m", "studio.cli", "--help"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert helped.returncode == 0 and "upload" in helped.stdout and "STUDIO_TOKEN" in helped.stdout
    missing = subprocess.run([sys.executable, "-m", "studio.cli", "assets"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "No API token" in missing.stderr


def test_the_studio_console_script_runs_from_any_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("studio")  # installed by `uv sync` ([project.scripts])
    env = {k: v for k, v in os.environ.items() if k not in ("STUDIO_TOKEN", "PYTHONPATH")}
    helped = subprocess.run([str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: studio") and "upload" in helped.stdout


def test_upload_and_assets_take_the_project_by_name_or_id(live_server: Any, token: str, owner: Any, project: Any,
                                                          tmp_path: Path, capsys: Any) -> None:
    from projects.services import project_create

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    for ref in (project.name, project.name.upper(), str(project.pk)):
        status, _, err = run(live_server, token, "upload", ref, str(image), capsys=capsys)
        assert status == 0, err
    assert Asset.objects.filter(project=project).count() == 3
    status, out, _ = run(live_server, token, "assets", "--project", project.name, capsys=capsys)
    assert status == 0 and len(out.strip().splitlines()) == 3

    status, _, err = run(live_server, token, "upload", "No such film", str(image), capsys=capsys)
    assert status == 1 and "No project named 'No such film'" in err and str(project.pk) in err
    first = project_create(owner=owner, name="Dusk")
    second = project_create(owner=owner, name="DUSK")
    status, _, err = run(live_server, token, "upload", "dusk", str(image), capsys=capsys)
    assert status == 1 and "matches 2 projects" in err and str(first.pk) in err and str(second.pk) in err
    assert Asset.objects.count() == 3


def test_the_progress_line_shows_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    shown = Terminal()
    progress = cli.Progress("clip.mp4", 4 * 1024 * 1024, stream=shown)
    reader = cli.ProgressReader(io.BytesIO(bytes(4 * 1024 * 1024)), progress)
    while reader.read(1024 * 1024):
        pass
    progress.finish()
    assert "\rclip.mp4  4.0 MB / 4.0 MB 100%" in shown.getvalue() and shown.getvalue().endswith("\n")
    piped = io.StringIO()
    quiet = cli.Progress("clip.mp4", 10, stream=piped)
    quiet.advance(10)
    quiet.finish()
    assert piped.getvalue() == ""
