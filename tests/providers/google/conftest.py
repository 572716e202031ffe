"""The Google tests' fixtures: the fake of the Gemini Developer API and Vertex express mode
(tests/fakes/google.py), one server per test module (tests/providers/conftest.py runs it), and a fresh
adapter."""

from __future__ import annotations

import pytest

from generations.providers.google.adapter import GoogleProvider
from tests.fakes.google import GoogleFakeHandler
from tests.fakes.server import FakeApi


@pytest.fixture(scope="module")
def fake_api() -> FakeApi:
    return FakeApi(GoogleFakeHandler, "google")


@pytest.fixture
def provider() -> GoogleProvider:
    return GoogleProvider()
