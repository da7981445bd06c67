"""For the browser tests and the screenshot script: a live server on a free port,
headless Debian Chromium, and page helpers shared by both."""
import os
import shutil
import subprocess
import threading

from playwright.sync_api import expect
from werkzeug.serving import WSGIRequestHandler, make_server

from pwp import create_app

CHROMIUM = os.environ.get("PWPUSH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# A fixed key: the server's data lives only for the test run.
MASTER_KEY = "x3Qn7oN1dJ6cXyK8eVJ2m0fX9cS5uZbq3Wm1nQ4rT7s="
AXE_JS = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      "node_modules", "axe-core", "axe.min.js")


class _QuietHandler(WSGIRequestHandler):
    """Log nothing: request lines carry url_tokens."""

    def log_request(self, code="-", size="-"):
        pass


def _closing(app):
    """The app, each answer read whole and closed before werkzeug's server sends it: that
    server skips close() when the client resets the connection after the answer (its read
    of what is left raises first), against PEP 3333, and a link form's mail starts at close()
    (Chromium's reset lost it one run in four). gunicorn closes every answer."""
    def closing(environ, start_response):
        answer = app(environ, start_response)
        try:
            return [b"".join(answer)]
        finally:
            if hasattr(answer, "close"):
                answer.close()
    return closing


class LiveServer:
    """Serve a fresh app (own instance folder, SQLite file, CSRF on) until stop()."""

    def __init__(self, instance_dir, **settings):
        config = {"SECRET_KEY": "browser-test-secret-of-32-characters", "PWPUSH_MASTER_KEY": MASTER_KEY,
                  "DATABASE_URL": f"sqlite:///{os.path.join(instance_dir, 'pwpush.sqlite3')}",
                  "PWP__THROTTLING__MINUTE": 0, "PWP__THROTTLING__SECOND": 0}
        config.update(settings)
        self.app = create_app(config, instance_path=str(instance_dir))
        self._server = make_server("127.0.0.1", 0, _closing(self.app), threaded=True,
                                   request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self):
        """Stop serving and wait for the thread."""
        self._server.shutdown()
        self._thread.join(timeout=10)


def require_chromium():
    """Fail (never skip) with a clear message when the Debian Chromium is missing."""
    if not os.access(CHROMIUM, os.X_OK):
        raise RuntimeError(
            f"Chromium not found at {CHROMIUM}. Install Debian's browser: "
            "apt-get update && apt-get install -y chromium chromium-driver")
    if not os.path.exists(AXE_JS):
        _install_axe()


def _install_axe():
    """Install axe-core at the version package-lock.json pins (as the CLI tests make the
    pwpush CLI's virtualenv on first use)."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("axe-core is missing and npm is not installed: apt-get install -y npm, "
                           "then npm ci --prefix tests/browser")
    here = os.path.dirname(AXE_JS).rsplit(os.sep + "node_modules", 1)[0]
    result = subprocess.run([npm, "ci", "--prefix", here, "--no-audit", "--no-fund", "--loglevel=error"],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0 or not os.path.exists(AXE_JS):
        raise RuntimeError(f"npm ci --prefix tests/browser failed:\n{result.stderr[-3000:]}")


def launch(playwright):
    """Start headless Debian Chromium through Playwright (never a downloaded browser)."""
    require_chromium()
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def create_text(page, base, payload=None, views=None, passphrase=None, deletable=None):
    """Fill and submit the text form; return the secret link from the preview page."""
    page.goto(base + "/")
    if payload is not None:
        page.fill("#push_payload", payload)
    if views is not None:
        page.locator("#push_expire_after_views").fill(str(views))
    if passphrase:
        page.fill("#push_passphrase", passphrase)
    if deletable is not None:
        page.locator("#push_deletable_by_viewer").set_checked(deletable)
    page.click("main button[type=submit]")
    expect(page.locator("h1")).to_have_text("Push created")
    # Its load event too: app.js (deferred) wires the buttons (Copy, Print & Share's form).
    page.wait_for_load_state()
    return page.input_value("#secret_url")


def sign_up(page, base, email):
    """Create an account through the form; the page ends signed in."""
    page.goto(base + "/users/sign_up")
    page.fill("#email", email)
    page.fill("#password", "correct horse battery")
    page.fill("#password_confirmation", "correct horse battery")
    page.click("main button[type=submit]")
    expect(page.locator("nav.site-nav")).to_contain_text("Sign out")


def sign_in_new_user(page, server, email) -> str:
    """Make an account directly (the module's sign-ups share the IP's limit of 5 a minute),
    sign the page in with it; return its API token. The module's sign-ins all come from
    127.0.0.1 too, sharing its 5 in 20 s: each starts from a clean count, as from a browser
    of its own (on a quiet fast machine six fell in one window, and the page stayed signed
    out). The limit itself is tested in tests/test_web_accounts.py."""
    from sqlalchemy import delete

    from pwp.auth import create_user, issue_token
    from pwp.models import Throttle, db
    with server.app.app_context():
        token = issue_token(create_user(email, password="correct horse battery"))
        db.session.execute(delete(Throttle).where(Throttle.key.like("login:ip:%")))
        db.session.commit()
    page.goto(server.url + "/users/sign_in")
    page.fill("#email", email)
    page.fill("#password", "correct horse battery")
    page.click("main button[type=submit]")
    expect(page.locator("nav.site-nav")).to_contain_text("Sign out")
    return token
