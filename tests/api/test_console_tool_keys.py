"""The console's page of the tool's LTI signing keys: every admin sees their state and times
(never a private key); the admins of a tenant the operator named rotate them, with the form's
CSRF token, and a rotation at once is asked first."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html import unescape

from gradesync.domain.tool_keys import KeyState
from gradesync.services.lti.keys import REPLACE_INTERVAL
from gradesync.testing import ManualClock
from tests.support.api import ApiEnv
from tests.support.console import form_token

PAGE = "/console/tool-keys"


def _allow(api: ApiEnv, *tenants: str) -> None:
    settings = api.runtime.settings
    api.runtime.settings = settings.model_copy(update={"tool_key_tenants": list(tenants)})


def test_an_admin_sees_the_keys_and_rotates_them(api: ApiEnv) -> None:
    _allow(api, "t1")
    api.tenant("t1")
    api.console_admin("t1")
    first = api.runtime.tool_keys.current()
    page = api.client.get(PAGE)
    assert page.status_code == 200 and first.kid in page.text and "current" in page.text
    private = first.private_key.private_numbers()
    assert str(private.d) not in page.text and "PRIVATE" not in page.text
    assert 'href="/console/tool-keys"' in api.client.get("/console/destinations").text

    token = form_token(page.text)
    assert api.client.post(f"{PAGE}/rotate", data={"csrf": "forged"}).status_code == 403
    assert [k.kid for k in api.runtime.tool_keys.list()] == [first.kid]  # nothing changed

    done = api.client.post(f"{PAGE}/rotate", data={"csrf": token})
    assert done.status_code == 200, done.text  # the page again, after the redirect
    said = " ".join(unescape(done.text).split())
    waiting = api.runtime.tool_keys.list()[0]
    assert waiting.state is KeyState.NEXT
    assert f"new tool key {waiting.kid} published now" in said
    assert f"{first.kid} signs until then" in said

    # at once: asked first, then every other key is revoked
    asked = api.client.post(f"{PAGE}/rotate", data={"csrf": token, "now": "yes"})
    assert "Replace the signing key at once?" in unescape(asked.text)
    assert len(api.runtime.tool_keys.list()) == 2  # not yet
    done = api.client.post(f"{PAGE}/rotate", data={"csrf": token, "now": "yes", "confirm": "yes"})
    assert done.status_code == 200, done.text
    keys = {k.kid: k for k in api.runtime.tool_keys.list()}
    assert keys[first.kid].state is KeyState.REVOKED
    assert keys[waiting.kid].state is KeyState.REVOKED and keys[waiting.kid].signs_from is None
    assert "revoked" in done.text and "never" in done.text  # the waiting key never signed
    # what it costs meanwhile is a warning of its own, not part of the "ok" message
    (ok,) = re.findall(r'class="flash flash-ok"[^>]*>([^<]*)<', done.text)
    (warning,) = re.findall(r'class="flash flash-warning" role="alert">([^<]*)<', done.text)
    assert "revoked" in ok and "warning" not in ok.lower()
    assert unescape(warning).startswith("Warning: platforms that cached the key set")


def test_a_key_waiting_to_sign_is_replaced_only_when_asked(api: ApiEnv) -> None:
    _allow(api, "t1")
    api.tenant("t1")
    api.console_admin("t1")
    clock = api.runtime.tool_keys.clock = ManualClock(datetime(2025, 6, 1, 12, tzinfo=UTC))
    first = api.runtime.tool_keys.current()
    token = form_token(api.client.get(PAGE).text)
    api.client.post(f"{PAGE}/rotate", data={"csrf": token})
    waiting = api.runtime.tool_keys.list()[0]
    assert waiting.state is KeyState.NEXT

    asked = api.client.post(f"{PAGE}/rotate", data={"csrf": token})
    said = " ".join(unescape(asked.text).split())
    assert "Replace the key waiting to sign?" in said and waiting.kid in said
    assert len(api.runtime.tool_keys.list()) == 2  # not yet

    too_soon = api.client.post(f"{PAGE}/rotate", data={"csrf": token, "replace": "yes"})
    said = " ".join(unescape(too_soon.text).split())
    assert "flash-error" in too_soon.text and "at most once a minute" in said
    assert len(api.runtime.tool_keys.list()) == 2

    clock.advance(REPLACE_INTERVAL)
    done = api.client.post(f"{PAGE}/rotate", data={"csrf": token, "replace": "yes"})
    assert done.status_code == 200, done.text
    keys = {k.kid: k for k in api.runtime.tool_keys.list()}
    assert len(keys) == 3 and keys[waiting.kid].signs_from is None
    assert keys[first.kid].state is KeyState.CURRENT
    assert f"{waiting.kid} (waiting to sign) replaced" in " ".join(unescape(done.text).split())


def test_another_tenants_admin_sees_the_keys_but_cannot_rotate(api: ApiEnv) -> None:
    _allow(api, "ops-tenant")
    api.tenant("t1")
    api.console_admin("t1")
    first = api.runtime.tool_keys.current()
    page = api.client.get(PAGE)
    assert first.kid in page.text and "GRADESYNC_TOOL_KEY_TENANTS" in page.text
    assert 'action="/console/tool-keys/rotate"' not in page.text
    refused = api.client.post(
        f"{PAGE}/rotate", data={"csrf": form_token(page.text), "now": "yes", "confirm": "yes"}
    )
    assert refused.status_code == 403 and "Nothing was changed" in unescape(refused.text)
    assert [k.kid for k in api.runtime.tool_keys.list()] == [first.kid]
