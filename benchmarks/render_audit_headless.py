"""Render an ``audit.html`` in a headless browser (Chromium) and check what it drew.

Usage::

    python benchmarks/render_audit_headless.py AUDIT_DIR [--browser chromium]

Writes ``AUDIT_DIR/audit_render.png`` (a full-page screenshot) and prints whether the browser loaded
the page (the DOM it serialised holds every threat model's section and the report's images) and the
screenshot's size. Needs a Chromium binary (``apt-get install chromium``); not part of the test
suite, which checks the HTML's structure with Python's parser instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audit_dir", type=Path)
    ap.add_argument("--browser", default="chromium")
    args = ap.parse_args()
    page = (args.audit_dir / "audit.html").resolve()
    data = json.loads((args.audit_dir / "audit.json").read_text(encoding="utf-8"))
    browser = shutil.which(args.browser)
    if browser is None:
        msg = f"error: no {args.browser!r} on PATH; install Chromium (apt-get install chromium)"
        print(msg, file=sys.stderr)
        return 2
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dump = [*flags, "--dump-dom", page.as_uri()]
    dumped = subprocess.run(dump, capture_output=True, text=True, timeout=120)
    dom = dumped.stdout
    shot = args.audit_dir / "audit_render.png"
    subprocess.run(
        [*flags, f"--screenshot={shot}", "--window-size=1400,4000", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    sections = [t["id"] for t in data["threat_models"] if f'id="tm-{t["id"]}"' in dom]
    images = dom.count("data:image/png;base64,")
    print(f"page: {page}")
    print(
        f"DOM from the browser: {len(dom)} characters, threat-model sections {','.join(sections)}, "
        f"{images} image(s)"
    )
    print(f"screenshot: {shot} ({shot.stat().st_size} bytes)")
    ok = len(sections) == len(data["threat_models"]) and shot.stat().st_size > 10_000
    print("rendered" if ok else "NOT rendered as expected")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
