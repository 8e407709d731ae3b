"""Vendor-variant settings and profiles: each one really changes what the API answers, over HTTP."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import pytest
from PIL import Image

from backdrop.sandbox import SandboxServer, SandboxSettings
from backdrop.sandbox.__main__ import main as sandbox_main
from backdrop.sandbox.imaging import scaled_size
from backdrop.sandbox.profiles import PROFILES, VARIANT_FIELDS, patch_body, with_profile
from tests.support.images import picture
from tests.support.sandbox import SandboxHandle
from tests.support.vendor_api import Upload, create, poll, poll_until_done, storage

HISTORY = "/s2s/v1.0/client/credit/history"
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _succeed(api: httpx.Client, upload: Upload, n: int, data: bytes | None = None) -> list[str]:
    """n tasks created and finished one after the other (so charged in this order)."""
    ids = []
    for _ in range(n):
        task_id = create(api, src_file_id=upload(data))
        assert poll_until_done(api, task_id)["task_status"] == "success"
        ids.append(task_id)
    return ids


def _history(api: httpx.Client, page_size: int = 30) -> list[dict[str, Any]]:
    """Every history entry, following next_token page by page."""
    rows: list[dict[str, Any]] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"page_size": page_size} | ({"starting_token": token} if token else {})
        resp = api.get(HISTORY, params=params)
        assert resp.status_code == 200, resp.text
        result = resp.json()["result"]
        assert len(result["history"]) <= page_size
        rows += result["history"]
        pages += 1
        token = result["next_token"]
        if not token:
            return rows
        assert pages < 50, "history paging does not end"


def _result(api: httpx.Client, upload: Upload, data: bytes) -> tuple[str, httpx.Response]:
    """(result URL, download) of one task made from `data`, after a real create/poll/download."""
    task_id = create(api, src_file_id=upload(data))
    done = poll_until_done(api, task_id)
    assert done["task_status"] == "success", done
    url: str = done["results"]["url"]
    resp = storage.get(url)
    assert resp.status_code == 200, resp.text
    return url, resp


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


# --- the settings, one by one --------------------------------------------------------------------


def test_defaults_are_todays_behaviour() -> None:
    cfg = SandboxSettings()
    assert (cfg.profile, cfg.history_order, cfg.result_size, cfg.result_format) == (
        "default", "newest_first", "input", "jpeg")
    assert (cfg.history_timestamp_offset_s, cfg.polling_window_s) == (0.0, 600.0)


@pytest.mark.parametrize("page_size", [2, 30])
def test_history_order_oldest_first_across_pages(api: httpx.Client, upload: Upload,
                                                 sandbox: SandboxHandle, page_size: int) -> None:
    ids = _succeed(api, upload, 5)
    newest = [h["target_id"] for h in _history(api, page_size)]
    assert newest == ids[::-1]
    assert sandbox.configure(history_order="oldest_first")["history_order"] == "oldest_first"
    oldest = _history(api, page_size)
    assert [h["target_id"] for h in oldest] == ids
    stamps = [h["timestamp"] for h in oldest]
    assert stamps == sorted(stamps)
    # the first page alone is the oldest entries, not the newest ones re-sorted
    first = api.get(HISTORY, params={"page_size": 2}).json()["result"]
    assert [h["target_id"] for h in first["history"]] == ids[:2] and first["next_token"]


def test_history_timestamp_offset_shifts_every_entry(api: httpx.Client, upload: Upload,
                                                     sandbox: SandboxHandle) -> None:
    _succeed(api, upload, 2)
    before = _history(api)
    now_ms = time.time() * 1000
    assert all(abs(h["timestamp"] - now_ms) < 60_000 for h in before)  # UTC, as today
    sandbox.configure(history_timestamp_offset_s=32400)
    after = _history(api)
    assert [h["id"] for h in after] == [h["id"] for h in before]
    for old, new in zip(before, after, strict=True):
        assert abs(new["timestamp"] - old["timestamp"] - 32_400_000) <= 1
    sandbox.configure(history_timestamp_offset_s=-3600)
    behind = _history(api)
    assert all(abs(b["timestamp"] - a["timestamp"] + 3_600_000) <= 1 for a, b in zip(before, behind, strict=True))


def test_result_size_scaled_keeps_aspect(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    _, same = _result(api, upload, picture(640, 480))
    assert _size(same.content) == (640, 480)
    sandbox.configure(result_size="scaled")
    _, scaled = _result(api, upload, picture(640, 480))
    assert _size(scaled.content) == (480, 360)
    _, odd = _result(api, upload, picture(101, 37))
    assert _size(odd.content) == (76, 28)  # 75.75 x 27.75, rounded
    assert scaled.content.startswith(JPEG_MAGIC)


def test_scaled_result_keeps_at_least_one_pixel_a_side(api: httpx.Client, upload: Upload,
                                                       sandbox: SandboxHandle) -> None:
    sandbox.configure(result_size="scaled")
    _, resp = _result(api, upload, picture(40, 1, "PNG"))
    assert _size(resp.content) == (30, 1)
    # at 3/4 a side never rounds to 0; a smaller factor would
    assert scaled_size((40, 1), 0.25) == (10, 1) and scaled_size((1, 1), 0.1) == (1, 1)


def test_result_format_png(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    url, jpeg = _result(api, upload, picture(64, 48))
    assert jpeg.content.startswith(JPEG_MAGIC) and ".jpg?" in url
    sandbox.configure(result_format="png")
    url, png = _result(api, upload, picture(64, 48))
    assert png.content.startswith(PNG_MAGIC) and ".png?" in url
    assert png.headers["content-type"] == "binary/octet-stream"
    with Image.open(io.BytesIO(png.content)) as img:
        assert (img.format, img.size) == ("PNG", (64, 48))


def test_result_format_webp(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    sandbox.configure(result_format="webp")
    url, webp = _result(api, upload, picture(64, 48))
    assert webp.content[:4] == b"RIFF" and webp.content[8:12] == b"WEBP" and ".webp?" in url
    assert webp.headers["content-type"] == "binary/octet-stream"
    with Image.open(io.BytesIO(webp.content)) as img:
        assert (img.format, img.size) == ("WEBP", (64, 48))


def test_switching_to_png_leaves_finished_results_alone(api: httpx.Client, upload: Upload,
                                                            sandbox: SandboxHandle) -> None:
    # a task finished as JPEG keeps its bytes and URL when the key switches to PNG afterwards
    task_id = create(api, src_file_id=upload())
    assert poll_until_done(api, task_id)["task_status"] == "success"
    sandbox.configure(result_format="png")
    url = poll(api, task_id).json()["data"]["results"]["url"]
    resp = storage.get(url)
    assert ".jpg?" in url and resp.status_code == 200 and resp.content.startswith(JPEG_MAGIC)


# --- profiles ------------------------------------------------------------------------------------


def test_profile_names_and_contents() -> None:
    assert list(PROFILES) == ["default", "oldest-first", "resized", "png", "short-window",
                              "shifted-clock", "hostile"]
    assert PROFILES["default"] == {}
    assert PROFILES["shifted-clock"] == {"history_timestamp_offset_s": 9 * 3600.0}
    hostile = SandboxSettings(profile="hostile")
    assert (hostile.history_order, hostile.result_size, hostile.result_format) == (
        "oldest_first", "scaled", "png")
    assert hostile.history_timestamp_offset_s == 32400 and hostile.polling_window_s == 20
    for name, values in PROFILES.items():
        assert set(values) <= set(VARIANT_FIELDS)
        cfg = SandboxSettings(profile=name)
        assert {f: getattr(cfg, f) for f in values} == values
        assert set(patch_body(name)) == {"profile", *VARIANT_FIELDS}


def test_explicit_fields_win_over_the_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SandboxSettings(profile="hostile", polling_window_s=60).polling_window_s == 60
    monkeypatch.setenv("BACKDROP_SANDBOX_PROFILE", "png")
    monkeypatch.setenv("BACKDROP_SANDBOX_HISTORY_ORDER", "oldest_first")
    cfg = SandboxSettings()
    assert (cfg.profile, cfg.result_format, cfg.history_order) == ("png", "png", "oldest_first")
    monkeypatch.setenv("BACKDROP_SANDBOX_RESULT_FORMAT", "jpeg")
    assert SandboxSettings().result_format == "jpeg"
    # an argument (the CLI's --profile) wins over the environment's profile
    assert SandboxSettings(profile="resized").result_size == "scaled"
    # re-validating a dump (as the per-key config does) keeps every value
    hostile = SandboxSettings(profile="hostile")
    assert SandboxSettings.model_validate(hostile.model_dump()).public() == hostile.public()


def test_profile_applied_to_a_key_by_patch_body(api: httpx.Client, upload: Upload,
                                                sandbox: SandboxHandle) -> None:
    before = _succeed(api, upload, 3)
    config = sandbox.configure(**patch_body("hostile"))
    assert config["profile"] == "hostile"
    assert {f: config[f] for f in PROFILES["hostile"]} == PROFILES["hostile"]
    after = _succeed(api, upload, 2, picture(64, 48))
    rows = _history(api, page_size=2)
    assert [h["target_id"] for h in rows] == before + after  # oldest first, across pages
    assert all(h["timestamp"] > time.time() * 1000 + 32_400_000 - 60_000 for h in rows)
    url, resp = _result(api, upload, picture(64, 48))
    assert resp.content.startswith(PNG_MAGIC) and _size(resp.content) == (48, 36)
    # "default" undoes it
    config = sandbox.configure(**patch_body("default"))
    assert {f: config[f] for f in VARIANT_FIELDS} == {f: SandboxSettings.model_fields[f].default
                                                      for f in VARIANT_FIELDS}
    _, resp = _result(api, upload, picture(64, 48))
    assert resp.content.startswith(JPEG_MAGIC) and _size(resp.content) == (64, 48)


def test_profile_by_name_in_patch(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    config = sandbox.configure(profile="png", history_order="oldest_first")
    assert (config["profile"], config["result_format"], config["history_order"]) == (
        "png", "png", "oldest_first")
    _, resp = _result(api, upload, picture(32, 32))
    assert resp.content.startswith(PNG_MAGIC)
    assert api.get("/_sandbox/config").json()["result_format"] == "png"
    # another key on the same server is untouched
    with httpx.Client(base_url=sandbox.base_url, trust_env=False,
                      headers={"Authorization": "Bearer sandbox-profile-neighbour"}) as other:
        assert other.get("/_sandbox/config").json()["result_format"] == "jpeg"


def test_unknown_profile_is_refused_with_the_names(sandbox: SandboxHandle) -> None:
    resp = sandbox.admin.patch("/_sandbox/config", json={"profile": "evil"})
    assert resp.status_code == 400
    message = resp.json()["error"]
    assert "evil" in message and all(name in message for name in PROFILES)
    assert sandbox.admin.get("/_sandbox/config").json()["profile"] == "default"
    with pytest.raises(ValueError, match="known profiles: default, oldest-first"):
        patch_body("evil")
    with pytest.raises(ValueError, match="hostile"):
        SandboxSettings(profile="evil")
    with pytest.raises(ValueError, match="hostile"):
        with_profile("evil")


def test_short_window_profile_expires_an_unpolled_task(api: httpx.Client, upload: Upload,
                                                       sandbox: SandboxHandle) -> None:
    # 20 vendor s at 100x = 0.2 s real
    sandbox.configure(time_scale=100)
    kept = create(api, src_file_id=upload())
    time.sleep(0.4)
    assert poll(api, kept).json()["data"]["task_status"] == "success"  # 600 s window: still there
    sandbox.configure(**patch_body("short-window"))
    lost = create(api, src_file_id=upload())
    time.sleep(0.4)
    resp = poll(api, lost)
    assert (resp.status_code, resp.json()["error_code"]) == (400, "InvalidTaskId")


def test_shifted_clock_profile(api: httpx.Client, upload: Upload, sandbox: SandboxHandle) -> None:
    _succeed(api, upload, 1)
    (plain,) = _history(api)
    sandbox.configure(**patch_body("shifted-clock"))
    (shifted,) = _history(api)
    assert abs(shifted["timestamp"] - plain["timestamp"] - 9 * 3_600_000) <= 1


# --- entry points --------------------------------------------------------------------------------


def test_server_started_with_a_profile() -> None:
    with SandboxServer(SandboxSettings(duration_mode="immediate", rate_limit_per_ip=False),
                       profile="resized") as server:
        assert server.settings.duration_mode == "immediate"  # the given settings are kept
        with httpx.Client(base_url=server.base_url, trust_env=False,
                          headers={"Authorization": "Bearer sandbox-key"}) as client:
            config = client.get("/_sandbox/config").json()
            assert (config["profile"], config["result_size"]) == ("resized", "scaled")


def test_env_profile_reaches_a_default_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKDROP_SANDBOX_PROFILE", "oldest-first")
    assert SandboxServer().settings.history_order == "oldest_first"
    assert SandboxServer(profile="png").settings.history_order == "newest_first"


def test_cli_refuses_an_unknown_profile(capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exc:
        sandbox_main(["--port", "0", "--profile", "evil"])
    assert exc.value.code == 2
    assert "shifted-clock" in capsys.readouterr().err
    monkeypatch.setenv("BACKDROP_SANDBOX_PROFILE", "evil")
    with pytest.raises(SystemExit) as exc:
        sandbox_main(["--port", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "unknown sandbox profile 'evil'" in err and "hostile" in err


def test_cli_profile_reaches_the_served_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[SandboxSettings] = []
    monkeypatch.setattr("backdrop.sandbox.__main__.serve", lambda *a, **kw: served.append(a[2]))
    monkeypatch.setenv("BACKDROP_SANDBOX_PROFILE", "png")
    sandbox_main(["--port", "0", "--profile", "shifted-clock", "--time-scale", "5"])
    sandbox_main(["--port", "0"])
    flagged, env = served
    assert (flagged.profile, flagged.history_timestamp_offset_s, flagged.time_scale) == ("shifted-clock", 32400, 5)
    assert flagged.result_format == "jpeg"  # the flag's profile replaces the environment's
    assert (env.profile, env.result_format) == ("png", "png")
