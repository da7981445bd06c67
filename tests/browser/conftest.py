"""Browser test fixtures: one live server and one headless Debian Chromium per module."""
import pytest
from playwright.sync_api import expect, sync_playwright

from .liveserver import LiveServer, launch

# As the contexts' default timeout below: expect's own default is 5 s, which a page's answer
# can take on CI's two busy cores (the live server shares the test's process). Each
# expectation still returns as soon as it holds.
expect.set_options(timeout=10_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A live pwpush with CSRF on, on a free port, with its own instance folder."""
    live = LiveServer(tmp_path_factory.mktemp("live"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from /usr/bin/chromium (fails, never skips, when missing)."""
    with sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser):
    """Open pages in fresh browser contexts (no shared cookies); close them afterwards."""
    contexts = []

    def make(**options):
        options.setdefault("viewport", {"width": 1280, "height": 900})
        ctx = browser.new_context(**options)
        ctx.set_default_timeout(10_000)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()
