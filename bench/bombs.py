"""Peak memory while preflighting decompression bombs at once (security review, findings 12 and 13).

```sh
.venv/bin/python bench/bombs.py [--bombs 8] [--side 8000] [--fit-inputs]
```

Writes `--bombs` PNGs of `--side` x `--side` pixels (zeros: about 260 KB each at 8000 px), preflights
them all at once as the flow does (`prepare_input` in threads), and prints the process's peak RSS. Before
the header check came first, 8 such files took 2.6 GB; the target is under 200 MB. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backdrop.errors import InputRejected  # noqa: E402
from backdrop.pipeline.preflight import prepare_input  # noqa: E402


def _rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def write_bomb(path: Path, side: int) -> Path:
    """A real RGB PNG of side x side black pixels, compressed row by row (never held in memory whole)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row = zlib.compressobj(9), b"\0" * (1 + 3 * side)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


async def _preflight_all(paths: list[Path], stage: Path, fit_inputs: bool) -> list[str]:
    async def one(path: Path) -> str:
        try:
            await prepare_input(path.name, base_dir=path.parent, staging_dir=stage, fit_inputs=fit_inputs)
        except InputRejected as exc:
            return str(exc.report_code)
        return "accepted"

    return list(await asyncio.gather(*(one(p) for p in paths)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bombs", type=int, default=8)
    ap.add_argument("--side", type=int, default=8000)
    ap.add_argument("--fit-inputs", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="backdrop-bombs-") as tmp:
        folder = Path(tmp)
        bomb = write_bomb(folder / "bomb-0.png", args.side)
        paths = [bomb]
        for i in range(1, args.bombs):  # distinct names, same bytes: 8 files, as a CSV would list them
            (folder / f"bomb-{i}.png").write_bytes(bomb.read_bytes())
            paths.append(folder / f"bomb-{i}.png")
        size_kb = bomb.stat().st_size / 1024
        before = _rss_mb()
        started = time.monotonic()
        codes = asyncio.run(_preflight_all(paths, folder / "stage", args.fit_inputs))
        seconds = time.monotonic() - started
        peak = _rss_mb()
    print(f"{args.bombs} bombs of {args.side}x{args.side} px ({size_kb:.0f} KB each), fit_inputs={args.fit_inputs}: "
          f"peak RSS {peak:.0f} MB (before preflight {before:.0f} MB) in {seconds:.2f} s; codes {sorted(set(codes))}")
    print(json.dumps({"bombs": args.bombs, "side": args.side, "file_kb": round(size_kb), "fit_inputs": args.fit_inputs,
                      "peak_rss_mb": round(peak), "rss_before_mb": round(before), "seconds": round(seconds, 2),
                      "codes": codes, "under_200_mb": peak < 200}))
    return 0 if peak < 200 else 1


if __name__ == "__main__":
    raise SystemExit(main())
