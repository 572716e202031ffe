"""The management commands a person runs: demo setup, tokens, and the `generate` CLI."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import ApiToken, User

pytestmark = pytest.mark.django_db


def test_demo_setup_creates_the_account_once_and_keeps_one_token(settings: Any, tmp_path: Any, catalog: None) -> None:
    settings.VAR_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()
    call_command("demo_setup", stdout=first)
    call_command("demo_setup", stdout=second)
    user = User.objects.get(email="demo@studio.local")
    assert user.projects.count() == 1
    assert ApiToken.objects.filter(user=user).count() == 1
    password = (tmp_path / "demo-password.txt").read_text()
    assert password in first.getvalue() and password in second.getvalue()
    assert user.check_password(password)
    assert "500 available" in second.getvalue()


def _printed_token(out: io.StringIO) -> str:
    return next(line.split()[-1] for line in out.getvalue().splitlines() if line.strip().startswith("API token"))


def test_demo_setup_prints_the_same_working_token_on_every_start(settings: Any, tmp_path: Any) -> None:
    from rest_framework.test import APIClient

    settings.VAR_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()
    call_command("demo_setup", stdout=first)
    call_command("demo_setup", stdout=second)
    token = _printed_token(first)
    assert _printed_token(second) == token
    assert (tmp_path / "demo-token").stat().st_mode & 0o777 == 0o600
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert client.get("/api/v1/me").json()["email"] == "demo@studio.local"


def test_demo_setup_makes_a_kept_secret_readable_by_its_owner_only_again(settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()
    call_command("demo_setup", stdout=first)
    for name in ("demo-token", "demo-password.txt"):
        (tmp_path / name).chmod(0o644)  # widened by hand, or copied under another umask
    call_command("demo_setup", stdout=second)
    assert _printed_token(second) == _printed_token(first)
    for name in ("demo-token", "demo-password.txt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name


def test_demo_setup_makes_a_new_token_when_the_kept_one_was_revoked(settings: Any, tmp_path: Any) -> None:
    settings.VAR_DIR = tmp_path
    first, second = io.StringIO(), io.StringIO()
    call_command("demo_setup", stdout=first)
    ApiToken.objects.filter(user__email="demo@studio.local").delete()
    call_command("demo_setup", stdout=second)
    token = _printed_token(second)
    assert token != _printed_token(first)
    assert (tmp_path / "demo-token").read_text().strip() == token
    assert ApiToken.objects.filter(user__email="demo@studio.local").count() == 1


def test_api_token_create_prints_a_working_token(owner: Any) -> None:
    from rest_framework.test import APIClient

    out = io.StringIO()
    call_command("api_token_create", "--user", owner.email, "--name", "ci", stdout=out)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {out.getvalue().strip()}")
    assert client.get("/api/v1/me").json()["email"] == owner.email


def test_generate_refuses_bad_input_with_a_readable_error(owner: Any, project: Any, catalog: None) -> None:
    with pytest.raises(CommandError, match="inputs.width"):
        call_command("generate", "--user", owner.email, "--project", project.name, "--model", "local/sketch",
                     "--input", "prompt=boat", "--input", "width=100", "--no-wait")
    with pytest.raises(CommandError, match="No project named"):
        call_command("generate", "--user", owner.email, "--project", "Nope", "--model", "local/sketch",
                     "--input", "prompt=boat")


def test_generate_submits_through_the_pipeline_and_reports_json(owner: Any, project: Any, catalog: None,
                                                                 settings: Any) -> None:
    settings.GENERATION_POLL_INTERVAL = 0.01
    out = io.StringIO()
    call_command("generate", "--user", owner.email, "--project", project.name, "--model", "local/sketch",
                 "--input", "prompt=a boat", "--input", "width=256", "--input", "height=256", "--json", "--no-wait",
                 stdout=out)
    body = json.loads(out.getvalue())
    assert body["status"] == "queued" and body["credits"]["estimated"] == 1
    from generations.runner import generation_run

    generation_run(body["id"])
    out = io.StringIO()
    call_command("generate", "--user", owner.email, "--project", project.name, "--model", "local/upscale",
                 "--input", f"image={_first_asset(owner)}", "--json", "--no-wait", stdout=out)
    assert json.loads(out.getvalue())["model"] == "local/upscale"


def test_generate_takes_the_project_by_id_or_by_name_in_any_case(owner: Any, project: Any, outsider: Any,
                                                                   catalog: None) -> None:
    from generations.models import Generation
    from projects.services import project_create

    theirs = project_create(owner=outsider, name="Their film")
    for ref in (str(project.pk), project.name, project.name.upper()):
        err = io.StringIO()
        call_command("generate", "--user", owner.email, "--project", ref, "--model", "local/sketch",
                     "--input", "prompt=boat", "--no-wait", stdout=io.StringIO(), stderr=err)
        assert "estimated 1 credit." in err.getvalue()  # not "1 credits"
    assert Generation.objects.filter(project=project).count() == 3
    with pytest.raises(CommandError, match="No project named"):
        call_command("generate", "--user", owner.email, "--project", str(theirs.pk), "--model", "local/sketch",
                     "--input", "prompt=boat", "--no-wait")
    assert not Generation.objects.filter(project=theirs).exists()


def test_generate_lists_the_ids_when_a_name_matches_several_projects(owner: Any, catalog: None) -> None:
    from generations.models import Generation
    from projects.services import project_create

    first = project_create(owner=owner, name="Dusk")
    second = project_create(owner=owner, name="DUSK")
    with pytest.raises(CommandError, match="matches 2 projects") as refused:
        call_command("generate", "--user", owner.email, "--project", "dusk", "--model", "local/sketch",
                     "--input", "prompt=boat", "--no-wait")
    assert str(first.pk) in str(refused.value) and str(second.pk) in str(refused.value)
    assert not Generation.objects.exists()


def _first_asset(user: Any) -> str:
    from assets.models import Asset

    return str(Asset.objects.filter(owner=user).values_list("pk", flat=True).first())


def test_the_admin_shows_provider_health(client: Any) -> None:
    from generations.health import record_outcome

    admin = User.objects.create_superuser(email="admin@example.com", password="x" * 12)
    client.force_login(admin)
    record_outcome(provider="replicate", model="nightmareai/real-esrgan", ok=True, latency_ms=2300)
    record_outcome(provider="replicate", model="nightmareai/real-esrgan", ok=False, transient=True, error_code="upstream_503")
    page = client.get("/admin/generations/provideroutcome/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "nightmareai/real-esrgan" in html and "50%" in html and "2300 ms" in html


def test_provider_check_says_clearly_when_there_is_no_key(settings: Any) -> None:
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, "fal": ""}
    with pytest.raises(CommandError, match="No platform key for fal: set FAL_KEY"):
        call_command("provider_check", "fal")
