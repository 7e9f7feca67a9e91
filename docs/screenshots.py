"""Screenshots of the documentation site, to look at it as a reader would.

    python docs/screenshots.py                 # builds the site, serves it, writes docs/screenshots/*.png
    python docs/screenshots.py --site DIR      # an already built site

Builds the site with `mkdocs build --strict` into a temporary folder (unless --site), serves it on a local port
with Python's http.server, and takes headless Chromium (Debian's ``chromium``) screenshots of the home page, the
zoo leaderboard and a recipe page at desktop (1280 px) and phone (390 px) widths. The PNGs go to
docs/screenshots/ (left out of the built site), to be opened and checked by eye.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: name -> page path on the site
PAGES = {"home": "", "zoo": "zoo/", "recipe-btm": "recipes/btm/"}
#: name -> (width, height) of the window, CSS pixels
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def build(site: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        check=True,
    )


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request
        pass


def serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def screenshot(browser: str, url: str, out: Path, size: tuple[int, int]) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={size[0]},{size[1]}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )


def shrink(png: Path) -> None:
    """Re-save a screenshot with a 256-colour palette (a third of the size, text still sharp)."""
    from PIL import Image

    with Image.open(png) as im:
        small = im.convert("RGB").quantize(colors=256)
    small.save(png, optimize=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--site", type=Path, default=None, help="a built site (default: build one)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    p.add_argument(
        "--height",
        type=int,
        default=None,
        help="a taller window, to see more of each page (not saved over the defaults)",
    )
    p.add_argument("--browser", default=shutil.which("chromium") or shutil.which("chromium-browser") or "chromium")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site
        if site is None:
            site = Path(tmp) / "site"
            build(site)
        server, port = serve(site)
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            for name, path in PAGES.items():
                for device, size in WIDTHS.items():
                    out = args.out / f"{name}-{device}{'-tall' if args.height else ''}.png"
                    size = (size[0], args.height or size[1])
                    screenshot(args.browser, f"http://127.0.0.1:{port}/{path}", out, size)
                    shrink(out)
                    print(out)
        finally:
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
