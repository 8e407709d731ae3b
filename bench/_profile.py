"""Where a batch's CPU goes: py-spy's raw samples (collapsed stacks) grouped by who owns the work.

    .venv/bin/python bench/_profile.py PROFILE.txt [--rows N] [--cpu-seconds S] [--top 25]

`bench/throughput.py --profile-dir DIR` writes one such file per mode. Each sample is charged to the innermost
frame that belongs to a known owner (Prefect's task engine, its events, logging, the limiter, hashing, Pillow,
the report, Backdrop's own code, ...); frames of helper libraries (pydantic, httpx, anyio, the standard library)
count for the owner that called them. py-spy samples only the thread holding the GIL (`--gil`), 100 times a
second; with `--cpu-seconds` (the batch's measured CPU) each group's share of the samples is applied to it. C code
that releases the GIL (SQLite's, SSL's) is under-counted. Figures are ms per row.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: (group, pattern on a frame's "function (file:line)"), first match wins, tried from the innermost frame out
OWNERS: list[tuple[str, re.Pattern[str]]] = [(g, re.compile(p)) for g, p in [
    ("hashing", r"hashlib|\(.*prefect/utilities/hashing\.py|file_sha256|_sha256|hash_objects"),
    ("image work (Pillow)", r"\(.*PIL/"),
    ("the limiter", r"\(.*backdrop/pacing/"),
    ("the report and gallery",
     r"\(.*backdrop/(report|gallery|cost)/|\(.*flows/change_backgrounds\.py.*(_publish|build)"),
    ("Prefect events", r"\(.*prefect/events/|emit_task_run_state_change_event"),
    ("Prefect logging", r"\(.*prefect/logging/|\(.*/logging/__init__\.py"),
    ("Prefect results and cache records", r"\(.*prefect/(results|transactions|cache_policies|locking)"),
    ("Prefect task-run bookkeeping (engine, states, contexts)",
     r"\(.*prefect/(task_engine|tasks|states|context|_internal|utilities|runtime|client/schemas|telemetry|"
     r"task_runners|futures|concurrency)"),
    ("Prefect API client and settings", r"\(.*prefect/(client|settings|server|blocks|artifacts)"),
    ("Prefect, other", r"\(.*/prefect/"),
    ("SQLAlchemy (the ledger)", r"\(.*sqlalchemy/"),
    ("our code: the vendor client (HTTP)", r"\(.*backdrop/client/"),
    ("our code: ledger", r"\(.*backdrop/store/"),
    ("our code: preflight and pictures", r"\(.*backdrop/pipeline/(preflight|sources)"),
    ("our code: settings", r"\(.*backdrop/(settings|identity|redact)|\(.*tasks/runtime\.py"),
    ("our code: other", r"\(.*(backdrop|tasks|flows)/"),
    ("imports at start", r"<frozen importlib|_find_and_load"),
    ("asyncio event loop", r"\(.*asyncio/"),
]]


def _frames(stack: str) -> list[str]:
    return [f for f in stack.split(";") if not f.startswith(("thread (", "process "))]


def group_of(stack: str) -> str:
    """The owner of one sample (a `;`-joined stack, outermost first)."""
    frames = _frames(stack)
    for frame in reversed(frames):
        for group, pattern in OWNERS:
            if pattern.search(frame):
                return group
    return "other (threads, interpreter)"


def read_samples(path: Path) -> Counter[str]:
    """py-spy's raw format: one `stack count` per line."""
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stack] += int(count)
    return samples


def grouped(samples: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for stack, n in samples.items():
        out[group_of(stack)] += n
    return out


def top_functions(samples: Counter[str], top: int) -> list[tuple[str, int]]:
    """Inclusive samples per function (each function counted once per stack)."""
    out: Counter[str] = Counter()
    for stack, n in samples.items():
        for frame in set(_frames(stack)):
            out[re.sub(r":\d+\)$", ")", frame)] += n
    return out.most_common(top)


#: py-spy's sampling interval at `--rate 100`
SAMPLE_SECONDS = 0.01


def table(path: Path, rows: int, cpu_seconds: float | None) -> list[tuple[str, float, float]]:
    """(group, share of the samples, ms per row), biggest first. With the batch's measured `cpu_seconds`, the
    shares are applied to it (a thread holding the GIL while the OS runs another process is still sampled, so on
    a busy machine the samples add up to more than the CPU time); without it, a sample counts 10 ms."""
    groups = grouped(read_samples(path))
    total = sum(groups.values()) or 1
    per_sample = cpu_seconds / total if cpu_seconds else SAMPLE_SECONDS
    return [(g, n / total, 1000 * n * per_sample / rows) for g, n in groups.most_common()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("profile", type=Path)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cpu-seconds", type=float, default=None)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    print("| group | share | ms/row |\n|---|---:|---:|")
    for group, share, ms in table(args.profile, args.rows, args.cpu_seconds):
        print(f"| {group} | {100 * share:.1f}% | {ms:.1f} |")
    samples = read_samples(args.profile)
    total = sum(samples.values()) or 1
    print(f"\ntop functions (inclusive), of {total} samples:")
    for fn, n in top_functions(samples, args.top):
        print(f"{100 * n / total:5.1f}%  {fn}")


if __name__ == "__main__":
    main()
