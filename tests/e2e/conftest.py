"""Browser fixtures: Debian's Chromium driven by Playwright, and gradesync served on loopback.

Without /usr/bin/chromium the browser tests skip on a laptop; with GRADESYNC_REQUIRE_BROWSER=1
(CI) a missing browser is a failure instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradesync.adapters.db.database import Database
from gradesync.config import Settings
from gradesync.runtime import Runtime
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, bind, running_sandbox, serve_in_thread
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app

if TYPE_CHECKING:
    from tests.e2e.world import School

CHROMIUM = os.environ.get("GRADESYNC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Words of up to 12 letters in table cells that the browser laid out on more than one line
# (text only for screen readers is laid out in a 1 px box and left out).
BROKEN_SHORT_WORDS = """() => {
  const broken = [];
  for (const cell of document.querySelectorAll('th, td')) {
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.parentElement;
      if (!at.checkVisibility() || at.closest('.visually-hidden')) continue;
      for (const m of node.data.matchAll(/(?<![A-Za-z])[A-Za-z]{2,12}(?![A-Za-z])/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0] + ' in ' + cell.textContent.trim().slice(0, 40));
      }
    }
  }
  return broken;
}"""

# Captions of tables in a scroll box (.table-wrap) whose text is not all inside that box: a
# caption is laid out across its table's whole width, so a centred one over a table wider
# than the phone starts or ends where nobody can see it.
CUT_CAPTIONS = """() => {
  const cut = [];
  for (const wrap of document.querySelectorAll('.table-wrap')) {
    const cap = wrap.querySelector('caption');
    if (!cap || !cap.checkVisibility() || cap.closest('.visually-hidden')) continue;
    const range = document.createRange();
    range.selectNodeContents(cap);
    const text = range.getBoundingClientRect(), box = wrap.getBoundingClientRect();
    if (text.left < box.left - 0.5 || text.right > Math.min(box.right, window.innerWidth) + 0.5)
      cut.push(`${cap.textContent.trim()}: ${Math.round(text.left)}-${Math.round(text.right)}`
               + ` in ${Math.round(box.left)}-${Math.round(box.right)}`);
  }
  return cut;
}"""

# Tables that scroll sideways inside their box, as "caption: table width > box width".
SCROLLING_TABLES = """() => [...document.querySelectorAll('.table-wrap')]
  .filter(w => w.checkVisibility() && w.scrollWidth > w.clientWidth)
  .map(w => `${w.querySelector('caption')?.textContent.trim()}: `
             + `${w.scrollWidth} > ${w.clientWidth}`)"""


def _browser_or_skip() -> str:
    if Path(CHROMIUM).exists():
        return CHROMIUM
    if os.environ.get("GRADESYNC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GRADESYNC_REQUIRE_BROWSER=1 but there is no browser at {CHROMIUM}")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


# Package scope: Playwright's sync API keeps an event loop running in this thread while it
# is open, which would break asyncio tests collected after tests/e2e.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, launched(pw.chromium, executable) as b:
        yield b


@contextmanager
def launched(browser_type: Any, executable: str = CHROMIUM, *extra: str) -> Iterator[Any]:
    """A headless Chromium of Playwright's `browser_type` with CHROMIUM_ARGS and `extra`."""
    b = browser_type.launch(
        executable_path=executable, args=[*CHROMIUM_ARGS, *extra], headless=True
    )
    try:
        yield b
    finally:
        b.close()


@contextmanager
def page_in(browser: Any) -> Iterator[Any]:
    """A page of a fresh context (no cookies, no storage) at the tests' window size."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with page_in(browser) as p:
        yield p


@dataclass
class LiveConsole:
    base_url: str
    runtime: Runtime

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture
def live_console(tmp_path: Path) -> Iterator[LiveConsole]:
    """gradesync as `gradesync serve` runs it (API, LTI, console and the in-process worker) on
    a free port, on a fresh SQLite database."""
    with serve_console(tmp_path) as console:
        yield console


@contextmanager
def serve_console(
    tmp_path: Path, *, host: str = "127.0.0.1", worker: bool = True
) -> Iterator[LiveConsole]:
    """gradesync on a free port of loopback, named by `host` in its base URL (`localhost`
    is another site than `127.0.0.1` to a browser), on a fresh SQLite database."""
    sock = bind()
    base = f"http://{host}:{sock.getsockname()[1]}"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'gradesync.db'}",
        secret_key=TEST_SECRET,
        data_dir=tmp_path,
        base_url=base,
    )
    runtime = Runtime.create(settings, migrate=True)
    app = create_app(runtime)
    app.state.run_worker = worker  # as `gradesync serve` does
    try:
        with serve_in_thread(app, sock=sock):
            yield LiveConsole(base, runtime)
    finally:
        runtime.close()


@pytest.fixture
def lms() -> Iterator[RunningSandbox]:
    """The sandbox LMS with Canvas's rules, for a school built in it (`school`)."""
    with running_sandbox(SandboxConfig(mode="canvas")) as sandbox:
        yield sandbox


@pytest.fixture
def school(lms: RunningSandbox, live_console: LiveConsole) -> School:
    """tests/e2e/world.py's school: registered in `lms`, its roster in the console."""
    from tests.e2e.world import build_school  # world.py imports this module

    return build_school(lms, live_console)


def grid_cell(page: Any, person: str, activity: str) -> Any:
    """The course grid's cell of one learner's grade for one activity."""
    return page.locator(f'td[data-person="{person}"][data-activity="{activity}"]')


def sign_in(page: Any, console: LiveConsole, username: str, password: str) -> None:
    """Sign in the way a person does: open the console, fill the form, press the button."""
    from playwright.sync_api import expect

    page.goto(console.url("/console/"))
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


__all__ = ["Database", "LiveConsole", "grid_cell", "sign_in"]
