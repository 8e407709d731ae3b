"""`csv` and `out` are a trust boundary: local paths inside the roots, URLs by scheme and host, short errors.

The session's roots are pytest's temporary folder (tests/conftest.py); each test here narrows or unsets them.
"""

from __future__ import annotations

import http.server
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backdrop.errors import BackdropError, ConfigError, CsvError
from backdrop.pipeline.inputs import read_rows
from backdrop.redact import SecretFilter, excerpt, register_secret
from backdrop.roots import DEMO_DIR, confine_output
from backdrop.settings import BackdropSettings
from tests.support.loopback import serve

SECRET = "sk-live-TOPSECRET-0123456789"
GOOD = "id,image_url,prompt\na,a.jpg,beach\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One input root and one output root, `tmp_path/root`; `tmp_path/outside` lies beside it."""
    folder = tmp_path / "root"
    folder.mkdir()
    (tmp_path / "outside").mkdir()
    monkeypatch.setenv("BACKDROP_INPUT_ROOTS", str(folder))
    monkeypatch.setenv("BACKDROP_OUTPUT_ROOTS", str(folder))
    return folder


def _refused(location: str) -> str:
    """The message of the CsvError reading `location` raises."""
    with pytest.raises(CsvError) as caught:
        read_rows(location)
    return caught.value.message


@pytest.mark.parametrize("location", ["/proc/self/environ", "file:///proc/self/environ", "/etc/passwd",
                                      "../outside/in.csv", "simplecache::file:///proc/self/environ",
                                      "memory://in.csv", "s3://bucket/in.csv", "http://169.254.169.254/latest",
                                      "x\x00.csv", "http://[::1"])
def test_a_csv_outside_the_roots_or_of_another_scheme_is_refused_in_one_short_line(
        root: Path, monkeypatch: pytest.MonkeyPatch, location: str) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    monkeypatch.chdir(root)
    (root.parent / "outside" / "in.csv").write_text(GOOD)
    message = _refused(location)
    assert "refused" in message and "\n" not in message and len(message) < 200
    assert SECRET not in message and "BACKDROP_API_KEY=" not in message


def test_file_urls_once_allowed_still_obey_the_roots(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_CSV_URL_SCHEMES", "https,file")
    (root / "in.csv").write_text(GOOD)
    rows, base = read_rows((root / "in.csv").as_uri())
    assert [r.row_id for r in rows] == ["a"] and base == root.resolve()
    assert "outside the folders" in _refused("file:///proc/self/environ")


def test_a_symlink_in_a_root_that_points_outside_is_refused(root: Path) -> None:
    outside = root.parent / "outside" / "secret.csv"
    outside.write_text(GOOD)
    (root / "link.csv").symlink_to(outside)
    (root / "dir").symlink_to(outside.parent, target_is_directory=True)
    assert "outside the folders" in _refused(str(root / "link.csv"))
    assert "outside the folders" in _refused(str(root / "dir" / "secret.csv"))
    (root / "inside.csv").write_text(GOOD)
    (root / "alias.csv").symlink_to(root / "inside.csv")
    rows, _ = read_rows(str(root / "alias.csv"))  # a link that stays inside is fine
    assert rows[0].row_id == "a"


def test_a_symlink_to_the_environment_is_refused(root: Path) -> None:
    (root / "environ.csv").symlink_to("/proc/self/environ")
    assert "outside the folders" in _refused(str(root / "environ.csv"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_csv_that_is_not_a_regular_file_is_refused(root: Path) -> None:
    os.mkfifo(root / "pipe.csv")  # reading it would hang the run
    assert "not a regular file" in _refused(str(root / "pipe.csv"))


def test_by_default_the_current_folder_and_its_subfolders_are_the_roots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's `backdrop run photos.csv --out results/`: the CLI's default roots."""
    monkeypatch.delenv("BACKDROP_INPUT_ROOTS")
    monkeypatch.delenv("BACKDROP_OUTPUT_ROOTS")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "photos.csv").write_text(GOOD)
    (work / "sub" / "more.csv").write_text(GOOD)
    (tmp_path / "elsewhere.csv").write_text(GOOD)
    monkeypatch.chdir(work)
    assert read_rows("photos.csv")[1] == work.resolve()
    assert read_rows(str(work / "sub" / "more.csv"))[0][0].row_id == "a"
    assert confine_output("results/") == work.resolve() / "results"
    assert "outside the folders" in _refused(str(tmp_path / "elsewhere.csv"))
    with pytest.raises(ConfigError, match="BACKDROP_OUTPUT_ROOTS"):
        confine_output(str(tmp_path / "results"))
    # the bundled demo is part of Backdrop: readable from any folder
    assert len(read_rows(str(DEMO_DIR / "products.csv"))[0]) == 14


def test_an_output_folder_outside_the_roots_is_refused(root: Path) -> None:
    assert confine_output(str(root / "out")) == root.resolve() / "out"
    assert confine_output(str(root)) == root.resolve()
    (root / "escape").symlink_to(root.parent / "outside", target_is_directory=True)
    for bad in (str(root.parent / "outside"), str(root / ".." / "outside"), str(root / "escape" / "out"),
                "/etc", "", "out\x00"):
        with pytest.raises(ConfigError, match="outside the folders runs may write") as caught:
            confine_output(bad)
        assert len(caught.value.message) < 200


def test_roots_settings_take_a_path_list_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_INPUT_ROOTS", os.pathsep.join(["/data/in", "inbox"]))
    monkeypatch.setenv("BACKDROP_OUTPUT_ROOTS", '["/data/out", "inbox-output"]')
    monkeypatch.setenv("BACKDROP_CSV_URL_HOSTS", "Data.Example.com., *.cdn.example.org")
    s = BackdropSettings()
    assert (s.input_roots, s.output_roots) == (["/data/in", "inbox"], ["/data/out", "inbox-output"])
    assert (s.csv_url_schemes, s.csv_url_hosts) == (["https"], ["data.example.com", "*.cdn.example.org"])
    monkeypatch.setenv("BACKDROP_INPUT_ROOTS", "")
    assert BackdropSettings().input_roots == []  # empty: no folder at all, not the default


def test_an_unreadable_csv_quotes_a_few_scrubbed_characters_at_most(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The error that used to list the whole header (so /proc/self/environ's every variable)."""
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    (root / "env.csv").write_bytes(f"BACKDROP_API_KEY={SECRET}\0PRIVATE_NOTE=launch-plan-x\0".encode())
    (root / "other.csv").write_text("PRIVATE_NOTE=launch-plan-x,SHELL=/bin/bash,HOME=/root\n1,2,3\n")
    for name in ("env.csv", "other.csv"):
        message = _refused(str(root / name))
        assert "missing the column 'image_url'" in message and len(message) < 250, message
        assert SECRET not in message and "launch-plan" not in message and "SHELL" not in message


def test_excerpt_masks_secrets_before_cutting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    assert excerpt(f"K={SECRET}tail", 20) == "K=***tail"
    assert excerpt("a\x00b\nc" + "x" * 40, 8) == "a?b?cxxx…"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server over `tmp_path/www`; `/hop` redirects to localhost (another host name)."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "in.csv").write_text(GOOD)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object) -> None:
            super().__init__(*a, directory=str(www))  # type: ignore[arg-type]

        def do_GET(self) -> None:  # the stdlib's name
            if self.path == "/hop":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_port}/in.csv")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield url


def test_csv_urls_need_an_allowed_scheme_and_host_on_every_hop(web: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "http: URLs are not allowed" in _refused(f"{web}/in.csv")  # https only by default
    monkeypatch.setenv("BACKDROP_CSV_URL_SCHEMES", "https,http")
    assert "host '127.0.0.1' is not allowed" in _refused(f"{web}/in.csv")  # no host by default
    monkeypatch.setenv("BACKDROP_CSV_URL_HOSTS", "127.0.0.1")
    # an allowed host name is not enough: its address is loopback, which the fence refuses until opened
    assert "loopback address" in _refused(f"{web}/in.csv")
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "127.0.0.1/32")
    rows, base = read_rows(f"{web}/in.csv")
    assert base is None and rows[0].row_id == "a"
    assert "host 'localhost' is not allowed" in _refused(f"{web}/hop")  # the redirect's target is checked
    monkeypatch.setenv("BACKDROP_CSV_URL_HOSTS", "127.0.0.1,localhost")
    assert read_rows(f"{web}/hop")[0][0].row_id == "a"
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "")
    assert "loopback address" in _refused(f"{web}/hop")  # every hop goes through the fence
    monkeypatch.setenv("BACKDROP_FETCH_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv("BACKDROP_CSV_MAX_BYTES", "10")
    assert "larger than 10 bytes" in _refused(f"{web}/in.csv")


def test_host_patterns() -> None:
    from backdrop.roots import host_allowed

    allowed = ["data.example.com", ".cdn.example.org", "*.img.example.net"]
    assert host_allowed("DATA.example.com.", allowed)
    assert host_allowed("a.cdn.example.org", allowed) and host_allowed("x.y.img.example.net", allowed)
    assert not host_allowed("cdn.example.org.evil.com", allowed)
    assert not host_allowed("evil-data.example.com", allowed) and not host_allowed(None, allowed)
    assert host_allowed("anything.test", ["*"])


def test_errors_and_log_lines_never_carry_the_key_or_the_webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_API_KEY", SECRET)
    monkeypatch.setenv("BACKDROP_WEBHOOK_SECRET", "whsec_c2VjcmV0LXNpZ25pbmcta2V5")
    block_key = f"from-a-block-{os.getpid()}-abcdef"
    register_secret(block_key)
    err = BackdropError(f"boom {SECRET} whsec_c2VjcmV0LXNpZ25pbmcta2V5 {block_key}")
    assert str(err) == "boom *** *** ***"
    record = logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "read %s", (SECRET,), None)
    try:
        raise ValueError(f"header was BACKDROP_API_KEY={SECRET}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert SecretFilter().filter(record) is True
    formatted = logging.Formatter().format(record)
    assert SECRET not in formatted and "read ***" in formatted and "BACKDROP_API_KEY=***" in formatted

