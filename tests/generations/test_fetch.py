"""The output downloader refuses everything it should, before a byte of it reaches storage."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generations.fetch import FetchRefused, fetch_output, host_allowed
from tests.fakes.server import FakeServer, JSONHandler, LocalCA

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


class FilesHandler(JSONHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.record()
        if self.path == "/file.png":
            self.send_bytes(200, PNG, "image/png")
        elif self.path == "/hop":
            self.send_bytes(302, b"", "text/plain", {"Location": "/file.png"})
        elif self.path == "/loop":
            self.send_bytes(302, b"", "text/plain", {"Location": "/loop"})
        elif self.path == "/to-metadata":
            self.send_bytes(302, b"", "text/plain", {"Location": "https://169.254.169.254/latest/meta-data/"})
        elif self.path == "/to-elsewhere":
            self.send_bytes(302, b"", "text/plain", {"Location": "https://evil.example.net/x.png"})
        elif self.path == "/to-http":
            self.send_bytes(302, b"", "text/plain", {"Location": f"http://127.0.0.1:{self.server.server_address[1]}/file.png"})
        elif self.path == "/declared-huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(200 * 1024 * 1024))
            self.end_headers()
        elif self.path == "/streamed-huge":
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"\0" * (1024 * 1024)
            try:
                for _ in range(60):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif self.path == "/unavailable":
            self.send_json(503, {"detail": "try later"})
        else:
            self.send_json(404, {"detail": "no"})


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return LocalCA(Path(tmp_path_factory.mktemp("ca")))


@pytest.fixture
def files(ca: LocalCA, settings: Any) -> Iterator[FakeServer]:
    with FakeServer(FilesHandler, ca=ca) as server:
        settings.PROVIDER_CA_BUNDLE = str(ca.ca_file)
        settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST = [f"127.0.0.1:{server.port}"]
        yield server


def fetch(url: str, hosts: tuple[str, ...] = ("127.0.0.1",), kind: str = "image") -> bytes:
    result = fetch_output(url, allowed_hosts=hosts, kind=kind)
    return result.file.read()


def test_an_allowed_https_output_is_downloaded(files: FakeServer) -> None:
    assert fetch(f"{files.url}/file.png") == PNG


def test_a_redirect_within_the_allowed_host_is_followed(files: FakeServer) -> None:
    assert fetch(f"{files.url}/hop") == PNG


def test_plain_http_is_refused(files: FakeServer) -> None:
    with pytest.raises(FetchRefused, match="https"):
        fetch(f"http://127.0.0.1:{files.port}/file.png")
    with pytest.raises(FetchRefused, match="https"):
        fetch(f"{files.url}/to-http")


def test_a_host_off_the_providers_list_is_refused(files: FakeServer) -> None:
    with pytest.raises(FetchRefused, match="not one this provider serves"):
        fetch(f"{files.url}/file.png", hosts=("v3.fal.media",))
    with pytest.raises(FetchRefused, match="not one this provider serves"):
        fetch(f"{files.url}/to-elsewhere")


def test_loopback_is_refused_unless_it_is_the_exact_test_allowance(files: FakeServer, settings: Any) -> None:
    settings.OUTPUT_FETCH_PRIVATE_ALLOWLIST = []
    with pytest.raises(FetchRefused, match="non-public address"):
        fetch(f"{files.url}/file.png")
    assert not files.requests  # refused before connecting
    with pytest.raises(FetchRefused, match="non-public address"):
        fetch(f"https://localhost:{files.port}/file.png", hosts=("localhost",))


@pytest.mark.parametrize("address", ["169.254.169.254", "10.0.0.7", "192.168.1.1", "172.16.0.1", "100.64.0.1",
                                     "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1"])
def test_private_link_local_metadata_and_reserved_addresses_are_refused(address: str, files: FakeServer,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: [(family, socket.SOCK_STREAM, 6, "", (address, port))])
    with pytest.raises(FetchRefused, match="non-public address"):
        fetch("https://cdn.example.com/x.png", hosts=("cdn.example.com",))


def test_a_name_that_resolves_to_public_and_private_addresses_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443)),
               (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443))]
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, port, **kw: answers)
    with pytest.raises(FetchRefused, match="non-public address"):
        fetch("https://cdn.example.com/x.png", hosts=("cdn.example.com",))


def test_each_redirect_hop_is_checked_again(files: FakeServer) -> None:
    with pytest.raises(FetchRefused):
        fetch(f"{files.url}/to-metadata", hosts=("127.0.0.1", "169.254.169.254"))
    with pytest.raises(FetchRefused, match="too many times"):
        fetch(f"{files.url}/loop")


def test_size_caps_hold_for_declared_and_streamed_lengths(files: FakeServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from generations import fetch as fetch_module

    monkeypatch.setitem(fetch_module.SIZE_LIMITS, "image", 5 * 1024 * 1024)
    with pytest.raises(FetchRefused, match="larger than") as declared:
        fetch(f"{files.url}/declared-huge")
    assert declared.value.code == "output_too_large"
    with pytest.raises(FetchRefused, match="larger than"):
        fetch(f"{files.url}/streamed-huge")


def test_a_server_error_is_retryable_and_a_missing_file_is_not(files: FakeServer) -> None:
    with pytest.raises(FetchRefused) as unavailable:
        fetch(f"{files.url}/unavailable")
    assert unavailable.value.retryable
    with pytest.raises(FetchRefused) as missing:
        fetch(f"{files.url}/nothing-here")
    assert not missing.value.retryable


def test_data_uris_are_decoded_under_the_same_caps(monkeypatch: pytest.MonkeyPatch) -> None:
    from generations import fetch as fetch_module

    assert fetch("data:image/png;base64," + base64.b64encode(PNG).decode(), hosts=()) == PNG
    monkeypatch.setitem(fetch_module.SIZE_LIMITS, "image", 10)
    with pytest.raises(FetchRefused, match="larger than"):
        fetch("data:image/png;base64," + base64.b64encode(b"x" * 100).decode(), hosts=())
    with pytest.raises(FetchRefused, match="base64"):
        fetch("data:image/png;base64,@@@", hosts=())


def test_host_patterns_match_subdomains_only_when_asked() -> None:
    assert host_allowed("v3.fal.media", ["*.fal.media"])
    assert not host_allowed("fal.media", ["*.fal.media"])
    assert not host_allowed("fal.media.evil.com", ["*.fal.media"])
    assert host_allowed("replicate.delivery", ["replicate.delivery"])
