"""Fetches are fenced (review findings 15 and 16, and the suspected vendor-supplied URLs): no input picture and no
result is fetched from loopback, private, link-local or other non-public addresses, after DNS and on every redirect,
unless BACKDROP_FETCH_ALLOW_NETWORKS opens the network; every fetch has a deadline and a byte cap; results come only
over https or from the API's own host; presigned query strings are redacted."""

from __future__ import annotations

import http.server
import io
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backdrop.client import BackdropClient
from backdrop.errors import DownloadError, InputRejected
from backdrop.fences import AddressFence, FetchRefused, forbidden_reason, parse_networks, redact_url
from backdrop.pipeline.preflight import prepare_input
from backdrop.settings import BackdropSettings

pytestmark = pytest.mark.anyio


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


class Server:
    """A loopback HTTP server that counts every request it gets, by path."""

    def __init__(self, host: str) -> None:
        self.hits: Counter[str] = Counter()
        self.redirect_to = ""
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                owner.hits[self.path] += 1
                if self.path.startswith("/pic.jpg"):
                    self._send(200, _jpeg())
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/slow":  # slowloris: one byte a second, forever
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(60):
                        try:
                            self.wfile.write(b"\xff")
                            self.wfile.flush()
                        except OSError:
                            return
                        time.sleep(1.0)
                elif self.path == "/big":  # no Content-Length: the cap must hold while streaming
                    self.send_response(200)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    for _ in range(40):
                        try:
                            self.wfile.write(b"\0" * 10_000)
                        except OSError:
                            return
                    self.close_connection = True
                else:
                    self._send(404, b"no")

            def _send(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.httpd = _Server((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def inside() -> Iterator[Server]:
    """An 'internal service' on 127.0.0.1: nothing may reach it."""
    server = Server("127.0.0.1")
    yield server
    server.close()


@pytest.fixture
def catalogue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """An internal catalogue on 127.0.0.2, opened by BACKDROP_FETCH_ALLOW_NETWORKS (127.0.0.1 stays closed)."""
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "127.0.0.2/32")
    server = Server("127.0.0.2")
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKDROP_FETCH_ALLOW_NETWORKS", raising=False)


async def _code(url: str, tmp_path: Path) -> str:
    try:
        await prepare_input(url, base_dir=tmp_path, staging_dir=tmp_path / "stage")
    except InputRejected as exc:
        return str(exc.report_code)
    return "accepted"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "127.1"])
async def test_loopback_is_refused_before_any_request(tmp_path: Path, inside: Server, host: str) -> None:
    assert await _code(f"http://{host}:{inside.port}/pic.jpg", tmp_path) == "input_address_refused"
    assert inside.hits == Counter()


async def test_ipv6_loopback_is_refused(tmp_path: Path) -> None:
    try:
        server = Server("::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert await _code(f"http://[::1]:{server.port}/pic.jpg", tmp_path) == "input_address_refused"
        assert server.hits == Counter()
    finally:
        server.close()


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/iam/", "http://10.0.0.1/pic.jpg", "http://192.168.1.1/pic.jpg",
    "http://172.16.0.1/pic.jpg", "http://100.64.0.1/pic.jpg", "http://0.0.0.0/pic.jpg", "http://224.0.0.1/pic.jpg",
    "http://240.0.0.1/pic.jpg", "https://[fe80::1]/pic.jpg", "http://[fd00::1]/pic.jpg", "http://[::]/pic.jpg",
    "http://[64:ff9b::a9fe:a9fe]/pic.jpg", "http://[2002:7f00:1::]/pic.jpg",
])
async def test_non_public_addresses_are_refused(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpcore

    async def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("connected to a refused address")

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", never)  # no socket is even opened
    started = time.monotonic()
    assert await _code(url, tmp_path) == "input_address_refused"
    assert time.monotonic() - started < 2  # refused, not timed out


async def test_a_name_that_resolves_inside_is_refused(tmp_path: Path, inside: Server,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every address of a name is checked: one public address beside a loopback one does not let it through."""
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "pics.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", inside.port)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", inside.port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    assert await _code(f"http://pics.example.test:{inside.port}/pic.jpg", tmp_path) == "input_address_refused"
    assert inside.hits == Counter()


async def test_dns_rebinding_connects_to_the_checked_address(tmp_path: Path, inside: Server, catalogue: Server,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The name answers the allowed address once, then loopback: the connection goes where the check looked."""
    real, answers = socket.getaddrinfo, iter(["127.0.0.2"])

    def fake(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers, "127.0.0.1"), port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    inside.httpd.server_close()  # the same port on 127.0.0.1 must not be reached either way
    url = f"http://rebind.example.test:{catalogue.port}/pic.jpg"
    assert await _code(url, tmp_path) == "accepted"
    assert catalogue.hits == Counter({"/pic.jpg": 1})
    assert await _code(url, tmp_path) == "input_address_refused"  # the second answer is loopback: refused


async def test_an_allowed_network_is_fetched(tmp_path: Path, catalogue: Server) -> None:
    got = await prepare_input(f"{catalogue.base}/pic.jpg?w=64", base_dir=tmp_path, staging_dir=tmp_path / "s")
    assert (got.width, got.height) == (64, 48)
    assert catalogue.hits == Counter({"/pic.jpg?w=64": 1})


async def test_a_redirect_from_an_allowed_server_to_loopback_is_refused(tmp_path: Path, catalogue: Server,
                                                                        inside: Server) -> None:
    for target in (f"{inside.base}/pic.jpg", f"http://localhost:{inside.port}/pic.jpg",
                   "http://169.254.169.254/latest/meta-data/"):
        catalogue.redirect_to = target
        assert await _code(f"{catalogue.base}/redirect", tmp_path) == "input_address_refused"
    assert catalogue.hits["/redirect"] == 3
    assert inside.hits == Counter()


async def test_a_slowloris_server_is_cut_by_the_deadline(tmp_path: Path, catalogue: Server,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_FETCH_DEADLINE_SECONDS", "2")
    started = time.monotonic()
    assert await _code(f"{catalogue.base}/slow", tmp_path) == "input_timeout"
    assert time.monotonic() - started < 5  # the read timeout (30 s) never fires: one byte a second keeps it alive


async def test_a_body_over_the_cap_is_refused(tmp_path: Path, catalogue: Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_FETCH_MAX_BYTES", "100000")
    assert await _code(f"{catalogue.base}/big", tmp_path) == "exceed_max_filesize"  # 400 KB, streamed


def test_the_allowance_is_a_list_of_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "10.20.0.0/16, fd00::/8 192.168.5.7")
    assert BackdropSettings().fetch_allow_networks == "10.20.0.0/16,fd00::/8,192.168.5.7/32"
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "intranet")
    with pytest.raises(ValueError, match="not a network"):
        BackdropSettings()
    fence = AddressFence(parse_networks("10.20.0.0/16"))
    fence.check("cat.internal", "10.20.3.4")
    fence.check("cat.internal", "::ffff:10.20.3.4")
    with pytest.raises(FetchRefused, match="private"):
        fence.check("other.internal", "10.21.0.1")


def test_forbidden_reason_sorts_addresses() -> None:
    import ipaddress

    def reason(a: str) -> str | None:
        return forbidden_reason(ipaddress.ip_address(a))

    assert [reason(a) for a in ("127.0.0.1", "::1", "169.254.169.254", "10.1.2.3", "0.0.0.0", "239.1.1.1")] == [
        "loopback", "loopback", "link-local", "private", "unspecified", "multicast"]
    assert reason("93.184.216.34") is None and reason("2606:4700::1111") is None
    assert reason("::ffff:127.0.0.1") is not None and reason("64:ff9b::7f00:1") is not None


# --- result downloads ---------------------------------------------------------------------------------------------


def _client(api_url: str) -> BackdropClient:
    return BackdropClient(BackdropSettings(api_url=api_url, api_key="sandbox-test-key", max_retries=0))


async def test_a_result_over_http_from_another_host_is_refused(tmp_path: Path, catalogue: Server,
                                                               inside: Server) -> None:
    """http only from the API's own origin: here the API is 127.0.0.1:<inside>, the result names 127.0.0.2."""
    async with _client(inside.base) as client:
        with pytest.raises(DownloadError, match="not the API's host"):
            await client.download(f"{catalogue.base}/pic.jpg?X-Amz-Signature=abc", tmp_path / "r.jpg")
        # the API's own origin (the sandbox serves its results itself) is fetched
        got = await client.download(f"{inside.base}/pic.jpg", tmp_path / "ok.jpg")
    assert (got.width, got.height) == (64, 48)
    assert catalogue.hits == Counter() and inside.hits == Counter({"/pic.jpg": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.jpg"]


async def test_a_result_redirected_off_the_api_host_is_refused(tmp_path: Path, catalogue: Server,
                                                               inside: Server) -> None:
    async with _client(catalogue.base) as client:
        catalogue.redirect_to = f"{inside.base}/pic.jpg"
        with pytest.raises(DownloadError, match="not the API's host"):
            await client.download(f"{catalogue.base}/redirect", tmp_path / "r.jpg")
        catalogue.redirect_to = f"https://127.0.0.1:{inside.port}/pic.jpg"  # https, but to loopback
        with pytest.raises(DownloadError, match="loopback"):
            await client.download(f"{catalogue.base}/redirect", tmp_path / "r.jpg")
    assert catalogue.hits["/redirect"] == 2 and inside.hits == Counter()


async def test_an_https_result_on_a_private_address_is_refused(tmp_path: Path, inside: Server) -> None:
    async with _client("https://yce-api-01.makeupar.com") as client:
        for url in (f"https://127.0.0.1:{inside.port}/pic.jpg", "https://169.254.169.254/latest/meta-data/",
                    f"http://127.0.0.1:{inside.port}/pic.jpg"):
            with pytest.raises(DownloadError, match="refused"):
                await client.download(url, tmp_path / "r.jpg")
    assert inside.hits == Counter()


# --- presigned URLs in what Backdrop writes -----------------------------------------------------------------------


@pytest.mark.parametrize(("url", "shown"), [
    ("https://b.s3.amazonaws.com/in.csv?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc123",
     "https://b.s3.amazonaws.com/in.csv?…"),
    ("https://storage.googleapis.com/b/p.jpg?X-Goog-Signature=ff&X-Goog-Expires=60",
     "https://storage.googleapis.com/b/p.jpg?…"),
    ("https://acct.blob.core.windows.net/c/p.jpg?sv=2022&se=2030&sp=r&sig=zz", "https://acct.blob.core.windows.net/c/p.jpg?…"),
    ("https://d1.cloudfront.net/p.jpg?Expires=1&Signature=x&Key-Pair-Id=K", "https://d1.cloudfront.net/p.jpg?…"),
    ("https://user:pw@cdn.example.com/p.jpg?token=t", "https://cdn.example.com/p.jpg?…"),
    ("https://cdn.example.com/p.jpg?w=640&h=480", "https://cdn.example.com/p.jpg?w=640&h=480"),
    ("shots/p.jpg", "shots/p.jpg"),
    ("/data/in.csv", "/data/in.csv"),
])
def test_redact_url_hides_signatures_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
