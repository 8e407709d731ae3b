"""Run the Backdrop CLI in this process and print its own CPU time and peak RSS (JSON) on stderr at exit."""

from __future__ import annotations

import json
import resource
import sys

from backdrop.cli import app


def main() -> int:
    try:
        app(sys.argv[1:], exit_on_error=True)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}),
          file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
