"""`python -m backdrop.sandbox`: serve the sandbox in the foreground."""

from __future__ import annotations

import argparse

from .server import serve
from .settings import SandboxSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backdrop.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--time-scale", type=float, help="vendor seconds per real second")
    parser.add_argument("--duration-mode", choices=["lognormal", "fixed", "immediate"])
    parser.add_argument("--balance", type=int, help="starting balance of every key")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {}
    if args.time_scale is not None:
        overrides["time_scale"] = args.time_scale
    if args.duration_mode is not None:
        overrides["duration_mode"] = args.duration_mode
    if args.balance is not None:
        overrides["starting_balance"] = args.balance
    serve(args.host, args.port, SandboxSettings(**overrides), ready_file=args.ready_file)  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
