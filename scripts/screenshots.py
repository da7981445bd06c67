"""Take screenshots of the main pages at desktop (1280 px) and phone (360 px) width.

    python scripts/screenshots.py [OUTPUT_DIR]     (default: docs/screenshots)

Starts its own server on a free port with a throwaway instance folder and
drives Debian's Chromium (/usr/bin/chromium) through Playwright.
"""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from browser.liveserver import LiveServer, create_text, launch, sign_up  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 360, "height": 740}}


def shoot(out_dir):
    """Write <page>-<size>[-dark].png files into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        server = LiveServer(tmp)
        browser = launch(pw)
        try:
            for size, viewport in SIZES.items():
                for scheme in ("light", "dark"):
                    ctx = browser.new_context(viewport=viewport, color_scheme=scheme)
                    page = ctx.new_page()
                    suffix = f"{size}" + ("-dark" if scheme == "dark" else "")

                    def snap(name, page=page, suffix=suffix):
                        page.screenshot(path=os.path.join(out_dir, f"{name}-{suffix}.png"), full_page=True)

                    page.goto(server.url + "/")
                    page.click("[data-generate]")
                    snap("new")
                    url = create_text(page, server.url, "Kuv3-Ba7_Tozi1")
                    snap("preview")
                    page.goto(url)
                    snap("retrieval-step")
                    page.click("[data-proceed]")
                    snap("payload")
                    page.goto(server.url + "/p/no-such-link")
                    snap("expired")
                    page.goto(server.url + "/p/new?tab=url")
                    page.fill("#push_payload", "ftp://not-allowed")
                    page.click("button[type=submit].primary")
                    snap("validation")
                    url = create_text(page, server.url, "s3cret", passphrase="open sesame")
                    page.goto(url.removesuffix("/r"))
                    snap("passphrase")
                    sign_up(page, server.url, f"shots-{suffix}@example.com")
                    page.goto(server.url + "/users/token")
                    page.click("main form button[type=submit]")
                    snap("token")
                    create_text(page, server.url, "owned secret")
                    page.goto(server.url + "/p")
                    snap("dashboard")
                    page.click("main a:has-text('Audit')")
                    snap("audit")
                    page.goto(server.url + "/help/api")
                    snap("api")
                    ctx.close()
        finally:
            browser.close()
            server.stop()


if __name__ == "__main__":
    shoot(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "docs", "screenshots"))
