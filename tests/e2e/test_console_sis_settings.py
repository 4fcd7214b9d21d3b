"""SIS admin changes the console lacked, which only the command line and the API made:
unmapping a section mapped to its own SIS class (`gradesync sis unmap-section`), setting a
connection's token URL back to its default (`gradesync sis add --default-token-url`), and
editing an existing connection's settings (`gradesync sis add`, `PUT /api/v1/sis/connections/
{id}`). Each needs the form's token and an admin, and says what it did; a refused edit names
the field and changes nothing, and the client secret is never shown back."""

from __future__ import annotations

import json
import os
import subprocess
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from gradesync.domain.model import Destination, DestinationKind, UserRole
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services import auth
from gradesync.services.accounts import create_user
from gradesync.testing import TEST_SECRET
from tests.e2e.conftest import LiveConsole, sign_in
from tests.e2e.test_console_sis import (
    ADMIN,
    COURSE,
    DEST,
    T,
    _district,
    change_connection,
    sis_sandbox,
)
from tests.support.cli import GRADESYNC
from tests.support.console import form_fields, form_token
from tests.support.console import sign_in as sign_in_over_http
from tests.support.sis import CLIENT_SECRET, map_to_class

pytestmark = pytest.mark.browser
__all__ = ["sis_sandbox"]  # the fixture, used by name

PAGE = f"/console/sis/{DEST}/courses/{COURSE}"
EDIT = f"/console/sis/{DEST}/edit"
TEACHER = ("teach", "an instructor's password")


@pytest.fixture
def district(live_console: LiveConsole, sis_sandbox: RunningSandbox) -> None:
    """test_console_sis's district (Springfield SIS, Algebra I mapped to cls-1, the admin
    sam) with an instructor of the course."""
    _district(live_console, sis_sandbox)
    create_user(
        live_console.runtime.uow,
        live_console.runtime.clock,
        tenant_id=T,
        username=TEACHER[0],
        password=TEACHER[1],
        role=UserRole.INSTRUCTOR,
        course_ids=[COURSE],
    )


def _sections(console: LiveConsole) -> dict[str, str]:
    with console.runtime.uow() as uow:
        link = uow.links.course(T, DEST, COURSE)
    assert link is not None
    return dict(link.data.get("sections") or {})


def _stored(console: LiveConsole) -> Destination:
    with console.runtime.uow() as uow:
        dest = uow.destinations.get(T, DEST)
    assert dest is not None
    return dest


def _token_url(console: LiveConsole) -> str | None:
    return _stored(console).config.get("token_url")


def _with_section_and_token_url(console: LiveConsole, sandbox: RunningSandbox) -> str:
    """Section sec-b mapped to its own class and a token URL given by mistake (the SIS has
    no token endpoint there); returns that URL."""
    rt = console.runtime
    map_to_class(
        rt.uow,
        tenant_id=T,
        destination_id=DEST,
        course_id=COURSE,
        class_id="cls-b",
        section_id="sec-b",
    )
    wrong = sandbox.base_url + "/no-token-here"
    change_connection(console, token_url=wrong)
    return wrong


@pytest.mark.usefixtures("district")
def test_a_section_is_unmapped_and_the_token_url_reset_through_the_forms(
    live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    wrong = _with_section_and_token_url(live_console, sis_sandbox)
    unmap = f"{PAGE}/sections/unmap"
    reset = f"/console/sis/{DEST}/token-url/default"
    with httpx.Client(base_url=live_console.base_url) as teacher:
        sign_in_over_http(teacher, *TEACHER)
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
        # the way back to that URL is the connection's settings, not the CLI or the API
        assert f'in <a href="{EDIT}">the settings of Springfield SIS</a>.' in asked.text
        assert "gradesync sis add" not in asked.text and "PUT /api" not in asked.text
        assert wrong in asked.text and _token_url(live_console) == wrong
        done = admin.post(reset, data={"csrf": token, "confirm": "yes"})
        assert done.status_code == 200 and str(done.url).endswith("/console/sis")
        assert "Springfield SIS now gets its tokens at the default token URL." in done.text
        assert "the default, next to the API" in done.text and wrong not in done.text
        assert _token_url(live_console) is None
        # and the connection works again: its check gets a token at the default URL
        checked = admin.post(f"/console/sis/{DEST}/check", data={"csrf": token})
        assert "Everything works." in checked.text


@pytest.mark.usefixtures("district")
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
    link = page.get_by_role("link", name="the settings of Springfield SIS")
    expect(link).to_have_attribute("href", EDIT)
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


def _api_read(console: LiveConsole) -> dict[str, Any]:
    """The connection as `GET /api/v1/destinations/{id}` shows it, with an admin key."""
    rt = console.runtime
    key = auth.create_key(rt.uow, rt.clock, T, "reader", ["admin"])
    got = httpx.get(
        f"{console.base_url}/api/v1/destinations/{DEST}",
        headers={"Authorization": f"Bearer {key.token}"},
    )
    assert got.status_code == 200, got.text
    read: dict[str, Any] = got.json()
    return read


def _cli_read(tmp_path: Path) -> dict[str, Any]:
    """The connection as `gradesync destinations show --json` reads it from the database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRADESYNC_")}
    env.update(
        GRADESYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'gradesync.db'}",  # live_console's
        GRADESYNC_SECRET_KEY=TEST_SECRET,
        GRADESYNC_DATA_DIR=str(tmp_path),
    )
    proc = subprocess.run(
        [GRADESYNC, "destinations", "show", DEST, "-t", T, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    read: dict[str, Any] = json.loads(proc.stdout)
    return read


def _edit_form(html: str, **changes: str) -> dict[str, str]:
    """The edit form as the page fills it, with `changes` typed over it."""
    return {**form_fields(html), **changes}


@pytest.mark.usefixtures("district")
def test_an_admin_edits_a_connection_and_the_api_and_the_cli_read_it(
    live_console: LiveConsole, sis_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    before = _stored(live_console)
    with httpx.Client(base_url=live_console.base_url, follow_redirects=True) as admin:
        sign_in_over_http(admin, *ADMIN)
        listed = admin.get("/console/sis").text
        assert f'href="{EDIT}" aria-label="Edit the settings of Springfield SIS"' in listed
        page = admin.get(EDIT)
        assert page.status_code == 200
        html = page.text
        assert CLIENT_SECRET not in html  # write-only: said to be stored, never shown
        assert "A secret is stored; it is never shown. Empty keeps it." in html
        form = _edit_form(html)
        assert form["name"] == "Springfield SIS" and form["base_url"] == sis_sandbox.base_url
        assert form["client_id"] == "gradesync" and form["client_secret"] == ""
        assert form["name_max_length"] == "30" and form["due_date_inside_term"] == "yes"
        assert form["due_date_required"] == "" and form["concurrency"] == ""  # the defaults

        # every problem at once, each field named with its rule; nothing changes
        typed_secret = "typed-but-refused"
        refused = admin.post(
            EDIT,
            data=_edit_form(
                html,
                base_url="ftp://sis.example",
                concurrency="99",
                name_max_length="thirty",
                client_id="",
                client_secret=typed_secret,
            ),
        )
        assert refused.status_code == 422
        text = refused.text
        assert "Nothing was changed." in text
        assert "OneRoster base URL: base_url must be an absolute http(s) URL" in text
        assert "Requests at once: concurrency must be a whole number from 1 to 64." in text
        assert "Longest line item title: name_max_length is a whole number" in text
        assert "Client id: The OAuth 2 client id is required." in text
        assert typed_secret not in text and CLIENT_SECRET not in text
        assert _edit_form(text)["base_url"] == "ftp://sis.example"  # kept as typed
        assert _stored(live_console) == before

        # a good edit: a blank secret keeps the stored one, an empty setting is cleared
        token_url = sis_sandbox.base_url + "/ims/oneroster/oauth2/token"
        saved = admin.post(
            EDIT,
            data=_edit_form(
                html,
                name="Springfield SIS (district)",
                token_url=token_url,
                name_max_length="",
                due_date_required="no",
                category_match="name",
                default_category="Homework",
                concurrency="2",
            ),
        )
        assert saved.status_code == 200 and str(saved.url).endswith("/console/sis")
        assert "Saved the settings of Springfield SIS (district)." in saved.text
        checked = admin.post(f"/console/sis/{DEST}/check", data={"csrf": form_token(saved.text)})
        assert "Everything works." in checked.text  # the kept secret gets a token
    after = _stored(live_console)
    assert after.secret == before.secret
    for read in (_api_read(live_console), _cli_read(tmp_path)):
        assert read["name"] == "Springfield SIS (district)"
        config = read["config"]
        assert config["token_url"] == token_url and "name_max_length" not in config
        assert config["due_date_required"] is False and config["category_match"] == "name"
        assert config["default_category"] == "Homework" and config["concurrency"] == 2
        assert config["due_date_inside_term"] is True and config["client_id"] == "gradesync"
        assert "client_secret" not in json.dumps(read) and CLIENT_SECRET not in json.dumps(read)

    # a new secret is stored, and not shown back
    with httpx.Client(base_url=live_console.base_url, follow_redirects=True) as admin:
        sign_in_over_http(admin, *ADMIN)
        html = admin.get(EDIT).text
        rotated = admin.post(EDIT, data=_edit_form(html, client_secret="a-rotated-secret"))
        assert rotated.status_code == 200 and "a-rotated-secret" not in rotated.text
        html = admin.get(EDIT).text
        assert "a-rotated-secret" not in html
        # and the kind: this SIS now takes CSV files
        switched = admin.post(EDIT, data=_edit_form(html, kind="files"))
        assert switched.status_code == 200 and "OneRoster CSV files" in switched.text
    assert _stored(live_console).secret["client_secret"] == "a-rotated-secret"
    assert _stored(live_console).kind is DestinationKind.ONEROSTER_CSV


@pytest.mark.usefixtures("district")
def test_only_an_admin_with_the_forms_token_edits_a_connection(
    live_console: LiveConsole,
) -> None:
    before = _stored(live_console)
    with httpx.Client(base_url=live_console.base_url) as teacher:
        sign_in_over_http(teacher, *TEACHER)
        assert teacher.get(EDIT).status_code == 403
        token = form_token(teacher.get(PAGE).text)
        sent = teacher.post(EDIT, data={"csrf": token, "name": "Renamed", "base_url": "x"})
        assert sent.status_code == 403
        assert "Only an administrator can open this page." in sent.text
    with httpx.Client(base_url=live_console.base_url) as admin:
        sign_in_over_http(admin, *ADMIN)
        form = _edit_form(admin.get(EDIT).text, name="Renamed")
        assert admin.post(EDIT, data={**form, "csrf": "forged"}).status_code == 403
        assert (
            admin.post(EDIT, data={k: v for k, v in form.items() if k != "csrf"}).status_code == 403
        )
        # a value no field of the form offers is refused, not read as another
        # (the form again with the field named: it was FastAPI's JSON 422)
        for field, label in (
            ("due_date_required", "Due date required"),
            ("due_date_inside_term", "Due date inside the term"),
            ("may_create_categories", "May create categories"),
            ("category_match", "Match categories by"),
            ("kind", "Kind"),
        ):
            tampered = admin.post(EDIT, data={**form, field: "maybe"})
            assert tampered.status_code == 422, field
            assert tampered.headers["content-type"].startswith("text/html"), field
            said = " ".join(unescape(tampered.text).split())
            assert f"Nothing was changed. {label}: Not a choice the form offers" in said, said
        assert admin.get("/console/sis/nope/edit").status_code == 404
    assert _stored(live_console) == before


@pytest.mark.usefixtures("district")
def test_a_version_the_form_never_holds_is_bad_input_not_a_conflict(
    live_console: LiveConsole,
) -> None:
    """The form's version (what it was opened from) edited to "abc" was answered 409, as if
    someone had saved meanwhile: it is bad input, named with the form's other problems."""
    before = _stored(live_console)
    with httpx.Client(base_url=live_console.base_url) as admin:
        sign_in_over_http(admin, *ADMIN)
        form = _edit_form(admin.get(EDIT).text, name="Renamed")
        for version in ("abc", "", form["version"].upper() + "0"):
            sent = admin.post(EDIT, data={**form, "version": version, "category_match": "x"})
            assert sent.status_code == 422, version
            said = " ".join(unescape(sent.text).split())
            assert "Nothing was changed. Settings version: " in said, said
            assert "no settings version: the form holds the 64 lowercase hexadecimal" in said
            assert "changed since you opened them" not in said
            assert "Match categories by: Not a choice the form offers" in said  # and the rest
            assert _edit_form(sent.text)["name"] == "Renamed"  # as typed
        assert "'abc' is no settings version" in " ".join(
            unescape(admin.post(EDIT, data={**form, "version": "abc"}).text).split()
        )
        assert _stored(live_console) == before
        # a version that is one, of settings changed since, is still the conflict
        change_connection(live_console, name="Changed meanwhile")
        stale = admin.post(EDIT, data=form)
        assert stale.status_code == 409 and "changed since you opened them" in stale.text
    assert _stored(live_console).name == "Changed meanwhile"


@pytest.mark.usefixtures("district")
def test_an_admin_edits_a_connection_in_the_browser(
    page: Any, live_console: LiveConsole, sis_sandbox: RunningSandbox
) -> None:
    sign_in(page, live_console, *ADMIN)
    page.get_by_role("link", name="SIS passback").click()
    page.get_by_role("link", name="Edit the settings of Springfield SIS").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings of Springfield SIS")
    expect(page.get_by_label("Client secret")).to_have_value("")
    expect(page.get_by_label("Longest line item title")).to_have_value("30")

    page.get_by_label("OAuth 2 token URL").fill("not a url")
    page.get_by_label("Client secret").fill("typed-in-the-browser")
    page.get_by_role("button", name="Save settings").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Nothing was changed. OAuth 2 token URL:")
    expect(page.get_by_label("OAuth 2 token URL")).to_have_value("not a url")
    expect(page.get_by_label("Client secret")).to_have_value("")
    assert _token_url(live_console) is None

    page.get_by_label("OAuth 2 token URL").fill("")
    page.get_by_label("Longest line item title").fill("")
    page.get_by_label("Due date inside the term").select_option("no")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status").first).to_contain_text(
        "Saved the settings of Springfield SIS."
    )
    config = _stored(live_console).config
    assert "name_max_length" not in config and config["due_date_inside_term"] is False
    assert _stored(live_console).secret["client_secret"] == CLIENT_SECRET
    page.get_by_role("button", name="Check Springfield SIS").click()
    expect(page.locator("#check-result")).to_contain_text("Everything works.")
