"""Signing in and out take the console's own form token, in a real browser (Chromium): a page on
another site that posts the sign-in form (login CSRF) or the sign-out form is refused, and the
console's own form without its token is refused too."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Tenant, UserRole
from gradesync.services.accounts import create_user
from tests.e2e.conftest import LiveConsole, sign_in

pytestmark = pytest.mark.browser

ATTACKER = "http://attacker.test"  # another site: its page is served by the test, not a network
PASSWORD = "correct horse battery"


@pytest.fixture
def console(live_console: LiveConsole) -> LiveConsole:
    rt = live_console.runtime
    with rt.db.uow() as uow:
        uow.tenants.upsert(Tenant("t1", "School"), rt.clock.now())
        uow.commit()
    for name in ("ada", "mallory"):
        create_user(
            rt.db.uow, rt.clock, tenant_id="t1", username=name, password=PASSWORD,
            role=UserRole.ADMIN,
        )  # fmt: skip
    return live_console


def _attacker_posts(page: Any, action: str, fields: dict[str, str]) -> Any:
    """Open the attacker's page, which posts a form to `action` as soon as it loads; return the
    response the browser got for that post."""
    inputs = "".join(f'<input type="hidden" name="{k}" value="{v}">' for k, v in fields.items())
    html = (
        f'<!doctype html><form id="f" method="post" action="{action}">{inputs}</form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    page.route(
        f"{ATTACKER}/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=html),
    )
    with page.expect_response(action) as answer:
        page.goto(f"{ATTACKER}/innocent.html")
    return answer.value


def _signed_in_as(page: Any, console: LiveConsole) -> str | None:
    page.goto(console.url("/console/"))
    who = page.locator("form.signout .who")
    return str(who.inner_text()) if who.count() else None


def test_a_sign_in_posted_from_another_site_is_refused(page: Any, console: LiveConsole) -> None:
    response = _attacker_posts(
        page, console.url("/console/login"), {"username": "mallory", "password": PASSWORD}
    )
    assert response.status == 403
    expect(page.get_by_text("did not come from this site")).to_be_visible()
    assert _signed_in_as(page, console) is None
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_the_sign_in_form_needs_its_token(page: Any, console: LiveConsole) -> None:
    page.goto(console.url("/console/login"))
    page.get_by_label("Username").fill("ada")
    page.get_by_label("Password").fill(PASSWORD)
    page.locator('input[name="csrf"]').evaluate("e => e.remove()")
    with page.expect_response(console.url("/console/login")) as answer:
        page.get_by_role("button", name="Sign in").click()
    assert answer.value.status == 403
    assert _signed_in_as(page, console) is None
    # the same form with its token signs in
    sign_in(page, console, "ada", PASSWORD)
    expect(page.locator("form.signout .who")).to_be_visible()


def test_a_sign_out_posted_from_another_site_is_refused(page: Any, console: LiveConsole) -> None:
    sign_in(page, console, "ada", PASSWORD)
    expect(page.locator("form.signout .who")).to_be_visible()
    response = _attacker_posts(page, console.url("/console/logout"), {})
    assert response.status == 403
    assert _signed_in_as(page, console) is not None  # still signed in
    # a sign-out form of the console's own, without its token: refused as well
    page.locator('form.signout input[name="csrf"]').evaluate("e => e.remove()")
    with page.expect_response(console.url("/console/logout")) as answer:
        page.get_by_role("button", name="Sign out").click()
    assert answer.value.status == 403
    assert _signed_in_as(page, console) is not None
    # with its token, the console's own button signs out
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert _signed_in_as(page, console) is None
