"""The screenshot of the overview in docs/ (the README and docs/status-page.md show it):

    .venv/bin/python -m tests.browser.screenshot            # writes docs/status-page.png

The demo fleet of tests/browser/demo.py on a throwaway embedded database, the real status
page on a fixed clock, and Debian's chromium. A test runs the same code into a temporary
folder, so the tool keeps working.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import aegis
from aegis.storage.runtime import Runtime
from tests.browser import demo
from tests.support.browser import chromium
from tests.support.web import serving

DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "status-page.png"
NOW = datetime(2026, 11, 22, 9, 41, 5, tzinfo=UTC)
WIDTH = 1100


def take(runtime: Runtime, path: Path) -> None:
    """Seed the demo into ``runtime``'s (empty) database and photograph its overview."""
    demo.seed(runtime.db.dsn, NOW)
    with serving(runtime, NOW) as url, chromium(WIDTH) as browser:
        browser.open(url + "/")
        errors = browser.errors()
        if errors:
            raise RuntimeError(f"the overview logged errors: {errors}")
        browser.screenshot(path, WIDTH)


def main(argv: list[str]) -> int:
    from bench.common import bench_home  # a throwaway home whose database is stopped

    path = Path(argv[0]) if argv else DOCS_SHOT
    with bench_home() as home:
        settings = aegis.load_settings({"AEGIS_HOME": home, "AEGIS_HOST": "web-01",
                                        "AEGIS_HTTP_ADDR": "off", "AEGIS_LOG_LEVEL": "error"})
        with aegis.connect(settings) as app:
            take(app, path)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
