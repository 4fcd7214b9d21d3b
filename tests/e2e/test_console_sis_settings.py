"""Two SIS admin changes the console lacked, which only the command line and the API made:
unmapping a section mapped to its own SIS class (`gradesync sis unmap-section`), and setting
a connection's token URL back to its default (`gradesync sis add --default-token-url`). Each
asks first, needs the form's token and an admin, and says what it did."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from gradesync.domain.model import UserRole
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import sis
from gradesync.services.accounts import create_user
from tests.e2e.conftest import LiveConsole, sign_in
from tests.e2e.test_console_sis import ADMIN, COURSE, DEST, T, _district, sis_sandbox
from tests.support.console import form_token
from tests.support.console import sign_in as sign_in_over_http

pytestmark = pytest.mark.browser
__all__ = ["sis_sandbox"]  # the fixture, used by name

PAGE = f"/console/sis/{DEST}/courses/{COURSE}"


def _sections(console: LiveConsole) -> dict[str, str]:
    with console.runtime.uow() as uow:
        link = uow.links.course(T, DEST, COURSE)
    assert link is not None
    return dict(link.data.get("sections") or {})


def _token_url(console: LiveConsole) -> str | None:
    with console.runtime.uow() as uow:
        dest = uow.destinations.get(T, DEST)
    assert dest is not None
    return dest.config.get("token_url")


def _with_section_and_token_url(console: LiveConsole, sandbox: RunningSandbox) -> str:
    """The district, with section sec-b mapped to its own class and a token URL given by
    mistake (the SIS has no token endpoint there); returns that URL."""
    _district(console, sandbox)
    rt = console.runtime
    sis.map_class(
        rt.uow,
        tenant_id=T,
        destination_id=DEST,
        course_id=COURSE,
        class_id="cls-b",
        section_id="sec-b",
        new_section=True,
    )
    wrong = sandbox.base_url + "/no-token-here"
    sis.add_connection(
        rt.uow,
        rt.clock,
        tenant_id=T,
        destination_id=DEST,
        name=None,
        base_url=None,
        token_url=wrong,
        guard=rt.outbound,
    )
    return wrong


def test_a_section_is_unmapped_and_the_token_url_reset_through_the_forms(
    live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    wrong = _with_section_and_token_url(live_console, sis_sandbox)
    create_user(
        live_console.runtime.uow,
        live_console.runtime.clock,
        tenant_id=T,
        username="teach",
        password="an instructor's password",
        role=UserRole.INSTRUCTOR,
        course_ids=[COURSE],
    )
    unmap = f"{PAGE}/sections/unmap"
    reset = f"/console/sis/{DEST}/token-url/default"
    with httpx.Client(base_url=live_console.base_url) as teacher:
        sign_in_over_http(teacher, "teach", "an instructor's password")
        html = teacher.get(PAGE)
        assert html.status_code == 200 and "Unmap section" not in html.text
        token = form_token(html.text)
        for url in (unmap, reset):
            data = {"csrf": token, "section_id": "sec-b", "confirm": "yes"}
            assert teacher.post(url, data=data).status_code == 403, url
    with httpx.Client(base_url=live_console.base_url, follow_redirects=True) as admin:
        sign_in_over_http(admin, *ADMIN)
        html = admin.get(PAGE).text
        assert 'aria-label="Unmap section sec-b"' in html
        token = form_token(html)
        # a forged token, or no confirmation: nothing changes
        forged = {"csrf": "forged", "section_id": "sec-b", "confirm": "yes"}
        assert admin.post(unmap, data=forged).status_code == 403
        asked = admin.post(unmap, data={"csrf": token, "section_id": "sec-b"})
        assert asked.status_code == 200
        assert "Unmap section sec-b from SIS class cls-b?" in asked.text
        assert "post to the course&#39;s SIS class cls-1" in asked.text
        assert _sections(live_console) == {"sec-b": "cls-b"}
        # a section with no class of its own: said, nothing changed
        none = admin.post(unmap, data={"csrf": token, "section_id": "sec-z", "confirm": "yes"})
        assert none.status_code == 200 and str(none.url).endswith(PAGE)
        assert 'role="alert">section mapping &#39;sec-z&#39; not found' in none.text
        assert _sections(live_console) == {"sec-b": "cls-b"}
        done = admin.post(unmap, data={**forged, "csrf": token})
        assert done.status_code == 200 and str(done.url).endswith(PAGE)
        assert "Section sec-b now posts to the course&#39;s SIS class cls-1." in done.text
        assert _sections(live_console) == {}
        assert 'aria-label="Unmap section' not in done.text

        listed = admin.get("/console/sis").text
        assert wrong in listed
        assert 'aria-label="Use the default token URL for Springfield SIS"' in listed
        assert admin.post(reset, data={"csrf": "forged", "confirm": "yes"}).status_code == 403
        asked = admin.post(reset, data={"csrf": token})
        assert asked.status_code == 200
        assert "Use the default token URL for Springfield SIS?" in asked.text
        assert wrong in asked.text and _token_url(live_console) == wrong
        done = admin.post(reset, data={"csrf": token, "confirm": "yes"})
        assert done.status_code == 200 and str(done.url).endswith("/console/sis")
        assert "Springfield SIS now gets its tokens at the default token URL." in done.text
        assert "the default, next to the API" in done.text and wrong not in done.text
        assert _token_url(live_console) is None
        # and the connection works again: its check gets a token at the default URL
        checked = admin.post(f"/console/sis/{DEST}/check", data={"csrf": token})
        assert "Everything works." in checked.text


def test_an_admin_unmaps_a_section_and_resets_the_token_url_in_the_browser(
    page: Any, live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    wrong = _with_section_and_token_url(live_console, sis_sandbox)
    sign_in(page, live_console, *ADMIN)

    page.get_by_role("link", name="SIS passback").click()
    page.get_by_role("button", name="Check Springfield SIS").click()
    expect(page.locator("#check-result")).not_to_contain_text("Everything works.")
    expect(page.get_by_text(wrong).first).to_be_visible()
    page.get_by_role("button", name="Use the default token URL for Springfield SIS").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Use the default token URL for Springfield SIS?"
    )
    page.get_by_role("link", name="Cancel").click()
    assert _token_url(live_console) == wrong
    page.get_by_role("button", name="Use the default token URL for Springfield SIS").click()
    page.get_by_role("button", name="Yes, use the default token URL").click()
    expect(page.get_by_role("status").first).to_contain_text("now gets its tokens at the default")
    assert _token_url(live_console) is None
    page.get_by_role("button", name="Check Springfield SIS").click()
    expect(page.locator("#check-result")).to_contain_text("Everything works.")

    page.get_by_role("link", name="Algebra I").click()
    page.get_by_role("button", name="Unmap section sec-b").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Unmap section sec-b from SIS class cls-b?"
    )
    page.get_by_role("button", name="Yes, unmap the section").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Section sec-b now posts to the course's SIS class cls-1."
    )
    expect(page.get_by_role("button", name="Unmap section sec-b")).to_have_count(0)
    assert _sections(live_console) == {}
