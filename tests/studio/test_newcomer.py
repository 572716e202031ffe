"""What a newcomer meets beyond `make run`: branded 403/404/500 pages when DEBUG is off, sign-up emails
that name this studio rather than "example.com", and one "Accounts"-like section per app in the admin."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path, reverse

from accounts.models import User
from projects.services import project_create

pytestmark = pytest.mark.django_db


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


# This module is the URLconf of the tests marked with it: two routes that fail on purpose, then the studio.
urlpatterns = [path("test-boom", _boom), path("test-forbidden", _forbidden), path("", include("config.urls"))]


@pytest.fixture
def production(settings: Any) -> None:
    settings.DEBUG = False


def _is_branded(html: str) -> bool:
    return "◐ Studio" in html and "studio/studio.css" in html


def test_another_users_project_is_a_branded_404_that_does_not_name_it(production: None, client: Any, owner: Any,
                                                                       outsider: Any) -> None:
    secret = project_create(owner=owner, name="Top secret launch", description="")
    client.force_login(outsider)
    response = client.get(reverse("studio:project", kwargs={"project_id": secret.pk}))
    html = response.content.decode()
    assert response.status_code == 404
    assert _is_branded(html) and "Page not found" in html and 'href="/gallery/"' in html
    assert "Top secret" not in html


def test_an_unknown_address_is_the_same_404_signed_out(production: None, client: Any) -> None:
    response = client.get("/no/such/page")
    html = response.content.decode()
    assert response.status_code == 404 and _is_branded(html) and "Page not found" in html
    assert reverse("account_login") in html


@pytest.mark.urls(__name__)
def test_a_server_error_is_a_branded_500_that_needs_no_request_context(production: None, owner: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(owner)
    response = client.get("/test-boom")
    html = response.content.decode()
    assert response.status_code == 500
    assert _is_branded(html) and "Something went wrong" in html
    assert owner.email not in html and "RuntimeError" not in html  # rendered without the request's user


@pytest.mark.urls(__name__)
def test_a_forbidden_page_is_a_branded_403(production: None, client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.get("/test-forbidden")
    html = response.content.decode()
    assert response.status_code == 403 and _is_branded(html) and "Not allowed" in html


def test_sign_up_emails_name_the_configured_site_not_example_com(settings: Any, client: Any) -> None:
    settings.SITE_URL = "https://studio.example.org"
    settings.SITE_NAME = "Harbour Studio"
    call_command("migrate", verbosity=0)  # the Site row is written at migrate (accounts/apps.py)
    mail.outbox.clear()
    response = client.post(reverse("account_signup"), {
        "email": "new@example.net", "password1": "a-long-Passphrase-42", "password2": "a-long-Passphrase-42"})
    assert response.status_code == 302
    assert User.objects.filter(email="new@example.net").exists()
    [message] = mail.outbox
    assert "Harbour Studio" in message.subject
    assert "studio.example.org" in message.body and "Harbour Studio" in message.body
    assert "example.com" not in message.subject + message.body


def test_the_admin_index_shows_each_app_section_once(admin_client: Any) -> None:
    html = admin_client.get("/admin/").content.decode()
    captions = re.findall(r'<caption>\s*<a [^>]*>([^<]+)</a>', html)
    assert captions and len(captions) == len(set(captions)), captions
    assert "Users and API tokens" in captions and "Accounts" in captions
