"""A launch inside an LMS frame on another site, where gradesync's cookies are not kept:
the login is proved through the LMS's client-side storage (`lti_storage_target`,
`lti.put_data` / `lti.get_data`), in Chromium.

The sandbox LMS runs on 127.0.0.1 and gradesync on localhost: two sites, so the state cookie
gradesync sets in the LMS's frame is a third-party cookie the browser does not keep (and
any cookie for gradesync is also removed before the launch is posted, to be sure).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from tests.e2e.conftest import CHROMIUM, LiveConsole, launched, page_in, serve_console
from tests.e2e.world import TENANT, School, build_school


@pytest.fixture(scope="module")
def one_process_browser(browser: Any) -> Iterator[Any]:
    """Chromium with the LMS's frame in the page's own process. Site isolation moves a frame
    that navigates to another site (LMS -> gradesync -> LMS -> gradesync here) into a new
    process, and a Playwright assertion on that frame then and again ended at once with no
    value, or never ended at all (past its own timeout), about one run in ten on a loaded
    machine. Cookies and storage still see two sites: only the process model differs."""
    with launched(browser.browser_type, CHROMIUM, "--disable-site-isolation-trials") as b:
        yield b


@pytest.fixture
def page(one_process_browser: Any) -> Iterator[Any]:
    with page_in(one_process_browser) as p:
        yield p


@pytest.fixture
def lms() -> Iterator[RunningSandbox]:
    with running_sandbox(SandboxConfig(mode="canvas")) as sandbox:
        yield sandbox


@pytest.fixture
def tool(tmp_path: Path) -> Iterator[LiveConsole]:
    """gradesync on http://localhost (another site than the LMS on 127.0.0.1)."""
    with serve_console(tmp_path, host="localhost", worker=False) as console:
        yield console


@pytest.fixture
def school(lms: RunningSandbox, tool: LiveConsole) -> School:
    return build_school(lms, tool)


def _open_in_lms_frame(
    page: Any, lms: RunningSandbox, school: School, user: str, **extra: str
) -> Any:
    # gradesync's cookies never reach it: whatever the browser would keep is dropped
    def without_cookies(route: Any) -> None:
        headers = {k: v for k, v in route.request.headers.items() if k.lower() != "cookie"}
        route.continue_(headers=headers)

    page.route("http://localhost:*/lti/**", without_cookies)
    query = urlencode(
        {
            "client_id": school.client_id,
            "user": user,
            "course": school.course_id,
            "resource_link_id": "link-1",
            **extra,
        }
    )
    page.goto(f"{lms.base_url}/lti/course?{query}")
    return page.frame_locator("#tool")


# login page, platform, launch, storage page, launch again: five loads on a loaded machine
SEEN = 15_000


def _proofs(tool: LiveConsole, person: str) -> list[str]:
    with tool.runtime.db.uow() as uow:
        records = uow.launches.records_for_person(TENANT, person)
    return [str(r.claims.get("gradesync:login_proof")) for r in records]


def test_a_learner_launch_in_a_cross_site_frame_is_proved_through_the_lms_storage(
    page: Any, lms: RunningSandbox, tool: LiveConsole, school: School
) -> None:
    from playwright.sync_api import expect

    assert lms.base_url.startswith("http://127.0.0.1:") and "localhost" in tool.base_url
    before = _proofs(tool, "u-ada")
    frame = _open_in_lms_frame(page, lms, school, "u-ada")
    expect(frame.get_by_role("heading", name="gradesync")).to_be_visible(timeout=SEEN)
    expect(frame.get_by_text(f"Course: {school.course_id}")).to_be_visible(timeout=SEEN)
    # the page is answered after the launch is written
    proofs = _proofs(tool, "u-ada")
    assert len(proofs) == len(before) + 1 and proofs[0] == "storage"
    assert not [c for c in page.context.cookies() if "localhost" in c["domain"]]


def test_a_teacher_proved_through_storage_on_plain_http_is_asked_to_open_a_window(
    page: Any, lms: RunningSandbox, tool: LiveConsole, school: School
) -> None:
    """The proof is complete, but a session cookie in a cross-site frame needs https
    (SameSite=None; Secure; Partitioned): no console session is opened on http."""
    from playwright.sync_api import expect

    frame = _open_in_lms_frame(page, lms, school, "t-grace")
    expect(frame.get_by_role("heading", name="Open gradesync in a new window")).to_be_visible(
        timeout=SEEN
    )
    expect(frame.get_by_text("plain http")).to_be_visible(timeout=SEEN)
    assert _proofs(tool, "t-grace") == ["storage"]
    assert not [c for c in page.context.cookies() if c["name"] == "gradesync_session"]


def test_a_forged_storage_answer_is_refused(
    page: Any, lms: RunningSandbox, tool: LiveConsole, school: School
) -> None:
    """The LMS's frame answers `lti.get_data` with a value that is not this login's state:
    the launch is refused and recorded as refused, and nothing of it is kept."""
    from playwright.sync_api import expect

    before = _proofs(tool, "t-grace")
    frame = _open_in_lms_frame(page, lms, school, "t-grace", forge="1")
    expect(frame.get_by_role("heading", name="gradesync could not start")).to_be_visible(
        timeout=SEEN
    )
    expect(frame.get_by_text("storage_mismatch")).to_be_visible(timeout=SEEN)
    with tool.runtime.db.uow() as uow:
        codes = [r.code for r in uow.launches.refusals(tenant_id=TENANT)]
    assert "storage_mismatch" in codes
    assert _proofs(tool, "t-grace") == before
