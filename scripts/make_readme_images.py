"""Render a batch's gallery to docs/gallery.png for the README, with headless Chromium.

Takes an existing output folder (one with report.parquet and summary.json, e.g. `demo-output/`
from `make demo`), rebuilds its gallery.html and contact-sheet.png, screenshots the gallery and
keeps the PNG under the size limit (a 256-colour palette when full colour is too big).
Usage: `python scripts/make_readme_images.py [output_dir] [--png docs/gallery.png]`
Needs Chromium (`apt-get install chromium`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd
from PIL import Image

from backdrop.gallery import write_gallery
from tests.support.chromium import ChromiumError, screenshot

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 400_000


def _shrink(src: Path, dest: Path, max_bytes: int) -> int:
    """Write `src` to `dest` as an optimised PNG; a dithered palette if that is too big."""
    with Image.open(src) as im:
        rgb = im.convert("RGB")
    dest.parent.mkdir(parents=True, exist_ok=True)
    rgb.save(dest, "PNG", optimize=True)
    if dest.stat().st_size > max_bytes:
        rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT,
                     dither=Image.Dither.FLOYDSTEINBERG).save(dest, "PNG", optimize=True)
    return dest.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", nargs="?", default=str(ROOT / "demo-output"), type=Path)
    parser.add_argument("--png", default=ROOT / "docs" / "gallery.png", type=Path)
    parser.add_argument("--height", default=1030, type=int,
                        help="pixels of the page to keep (1030: the summary and two rows of cards)")
    args = parser.parse_args(argv)
    out_dir: Path = args.output_dir.resolve()
    if not (out_dir / "report.parquet").is_file():
        print(f"no report.parquet in {out_dir}: run `make demo` first", file=sys.stderr)
        return 2
    df = pd.read_parquet(out_dir / "report.parquet")
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    files = write_gallery(df, summary, out_dir)
    with tempfile.TemporaryDirectory(prefix="backdrop-shot-") as tmp:
        raw = Path(tmp) / "gallery.png"
        try:
            screenshot(files.html, raw, width=1280, height=args.height)
        except ChromiumError as exc:
            print(f"cannot render the gallery: {exc}", file=sys.stderr)
            return 1
        size = _shrink(raw, args.png, MAX_BYTES)
    print(f"wrote {args.png} ({size // 1000} KB) from {files.html}")
    return 0 if size <= MAX_BYTES else 1


if __name__ == "__main__":
    sys.exit(main())
