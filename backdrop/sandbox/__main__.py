"""`python -m backdrop.sandbox`: serve the sandbox in the foreground."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from .profiles import PROFILES
from .server import RemoteBindRefused, guard_bind, serve
from .settings import SandboxSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m backdrop.sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1",
                        help="bind address; anything but loopback needs --allow-remote")
    parser.add_argument("--allow-remote", action="store_true",
                        help="bind a non-loopback --host; every /_sandbox/ route then needs an admin token "
                             "($BACKDROP_SANDBOX_ADMIN_TOKEN, else a random one printed at start)")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--time-scale", type=float, help="vendor seconds per real second")
    parser.add_argument("--duration-mode", choices=["lognormal", "fixed", "immediate"])
    parser.add_argument("--balance", type=int, help="starting balance of every key")
    parser.add_argument("--ready-file", help="write the base URL here once listening")
    parser.add_argument("--profile", choices=list(PROFILES),
                        help="vendor-variant profile (default: $BACKDROP_SANDBOX_PROFILE or none)")
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in (("time_scale", args.time_scale),
                                                 ("duration_mode", args.duration_mode),
                                                 ("starting_balance", args.balance),
                                                 ("profile", args.profile))
                 if value is not None}
    try:  # the environment's BACKDROP_SANDBOX_* first, these flags over them
        settings = SandboxSettings(**overrides)
    except ValidationError as exc:
        parser.error(f"bad sandbox settings: {exc}")
    try:
        guard_bind(args.host, settings, allow_remote=args.allow_remote)
    except RemoteBindRefused as exc:
        parser.error(str(exc))
    serve(args.host, args.port, settings, ready_file=args.ready_file, allow_remote=args.allow_remote)


if __name__ == "__main__":
    main()
