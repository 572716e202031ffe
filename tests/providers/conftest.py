"""Fixtures the provider tests share: a loopback fake of a provider's API pointed at by settings, and the
race of a user's cancel against the runner's polls (polling a job to its end: tests/providers/support.py).

A test module that drives its adapter against a fake names it with a module-scoped `fake_api` fixture
(`tests.fakes.server.FakeApi(handler, provider, path)`); `fake_server` then runs one server for the module (stopping one
waits out serve_forever's 0.5 s poll) and `fake` hands each test that server, emptied, with the
provider's base URL and key in settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from generations import attempts
from generations.providers.base import ProviderJob, ProviderStatus
from generations.providers.registry import get_provider
from tests.fakes.server import FakeApi, FakeServer


@pytest.fixture(scope="module")
def fake_server(fake_api: FakeApi) -> Iterator[FakeServer]:
    with FakeServer(fake_api.handler) as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeServer, fake_api: FakeApi, settings: Any) -> Iterator[FakeServer]:
    fake_server.requests.clear()
    fake_server.state.clear()
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, fake_api.provider: f"{fake_server.url}{fake_api.path}"}
    settings.PROVIDER_KEYS = {**settings.PROVIDER_KEYS, fake_api.provider: "test-key"}
    settings.GENERATION_POLL_INTERVAL = 0.01
    yield fake_server
    gate = fake_server.state.get("gate")
    if gate is not None:
        gate.set()  # let a call still waiting in the fake finish


CancelDuringPoll = Callable[..., None]


@pytest.fixture
def cancel_during_poll(monkeypatch: pytest.MonkeyPatch) -> CancelDuringPoll:
    """The user presses cancel while the runner polls: `arrange(provider_name, cancel, when=...)` has the
    provider's poll call `cancel()` after each poll whose (status, number of polls so far) `when`
    accepts, and the runner looks for a cancel after every poll instead of at most twice a second."""
    monkeypatch.setattr(attempts.Attempt, "CANCEL_CHECK", timedelta(0))

    def arrange(provider_name: str, cancel: Callable[[], object], *,
                when: Callable[[ProviderStatus, int], bool]) -> None:
        provider = get_provider(provider_name)
        real_poll = provider.poll
        polls = 0

        def poll(job: ProviderJob, **kwargs: Any) -> ProviderStatus:
            nonlocal polls
            status = real_poll(job, **kwargs)
            polls += 1
            if when(status, polls):
                cancel()
            return status

        monkeypatch.setattr(provider, "poll", poll)

    return arrange
