"""Where bench/run.py keeps things, and the one host it runs against: shared by its modules.

bench/ is not a package: run.py runs as a script, so its directory is first on sys.path and the
modules beside it import each other by their plain names.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

LOCALHOST = "127.0.0.1"


def with_path(url: str, path: str, scheme: str | None = None) -> str:
    """`url` naming another database or Redis index (and, for SQLAlchemy, another scheme)."""
    parts = urlsplit(url)
    return parts._replace(path=f"/{path}", scheme=scheme or parts.scheme).geturl()
