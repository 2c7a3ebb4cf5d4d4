"""Serve the framework ceiling with the granian our service is served by.

    .venv/bin/python bench/serve_ceiling.py APP_FILE PORT WORKERS

bench/run.py starts it beside our service and the peer, with APP_FILE its --ceiling
(../shared/bench/ceiling_app.py: one Litestar route, no I/O). The server is built by the same
function as `roomservice serve` builds ours with (roomservice.cli.granian_server), so the two differ
in their app only, never in the server's settings. It listens on 127.0.0.1 and stops on SIGINT.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from locations import LOCALHOST  # noqa: E402

from roomservice.cli import granian_server  # noqa: E402


def main(argv: Sequence[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    app_file, port, workers = Path(argv[0]).resolve(), int(argv[1]), int(argv[2])
    # The app is a module outside any package: its directory goes on the path, as granian's own
    # command line would have it run from there. Granian's workers inherit the path.
    sys.path.insert(0, str(app_file.parent))
    granian_server(f"{app_file.stem}:app", host=LOCALHOST, port=port, workers=workers, factory=False).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
