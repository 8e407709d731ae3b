"""Thumbnails: size, orientation, transparency, and what is not a picture."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from backdrop.gallery.pictures import make_thumb
from backdrop.pipeline.inputs import csv_base_dir


def test_make_thumb_shrinks_a_large_jpeg_and_applies_exif_rotation(tmp_path: Path) -> None:
    src = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; viewers rotate it 90° clockwise
    Image.new("RGB", (4000, 3000), (200, 30, 30)).save(src, exif=exif)
    made = make_thumb(src, tmp_path / "thumbs")
    assert made is not None
    thumb, width, height = made
    assert (width, height) == (180, 240)  # portrait, as people see it
    with Image.open(thumb) as im:
        assert im.size == (180, 240) and im.format == "JPEG"


def test_make_thumb_flattens_transparency_on_white(tmp_path: Path) -> None:
    src = tmp_path / "cut.png"
    Image.new("RGBA", (100, 50), (0, 0, 255, 0)).save(src)
    made = make_thumb(src, tmp_path / "thumbs")
    assert made is not None and made[1:] == (100, 50)  # small pictures are not enlarged
    with Image.open(made[0]) as im:
        assert all(c > 245 for c in im.convert("RGB").getpixel((50, 25)))  # type: ignore[union-attr]


def test_make_thumb_reuses_a_thumbnail_keyed_by_content_hash(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    Image.new("RGB", (300, 300), (10, 200, 10)).save(src)
    first = make_thumb(src, tmp_path / "thumbs", "ab" * 32)
    assert first is not None and first[0].name == f"{'ab' * 20}-240.jpg"
    src.unlink()  # the same hash needs no picture: the thumbnail is already there
    assert make_thumb(src, tmp_path / "thumbs", "ab" * 32) == first


def test_make_thumb_of_a_non_picture_is_none(tmp_path: Path) -> None:
    src = tmp_path / "notes.jpg"
    src.write_text("hello")
    assert make_thumb(src, tmp_path / "thumbs") is None
    assert not (tmp_path / "thumbs").exists()  # nothing half-written


def test_csv_base_dir_is_the_local_csvs_folder(tmp_path: Path) -> None:
    assert csv_base_dir(str(tmp_path / "in" / "rows.csv")) == (tmp_path / "in").resolve()
    assert csv_base_dir((tmp_path / "rows.csv").as_uri()) == tmp_path.resolve()
    assert csv_base_dir("https://example.com/rows.csv") is None
    assert csv_base_dir("") is None


def test_make_thumb_ignores_a_hash_that_is_not_hex(tmp_path: Path) -> None:
    src = tmp_path / "a.jpg"
    Image.new("RGB", (300, 300), (10, 200, 10)).save(src)
    made = make_thumb(src, tmp_path / "thumbs", "../../escape")
    assert made is not None and made[0].parent == tmp_path / "thumbs"
    assert not list(tmp_path.glob("escape*"))


def test_a_hostile_input_cell_costs_its_thumbnail_never_the_gallery(tmp_path: Path) -> None:
    from backdrop.gallery.pictures import input_file

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for cell in ("x" * 300 + ".jpg", "loop", "a\x00b.jpg", "../" * 50 + "etc/passwd"):
        assert input_file(cell, "", tmp_path, tmp_path) == (None, "")
