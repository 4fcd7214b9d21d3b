"""Key sets that do not arrive in time are a temporary trouble, not a misconfiguration.

- The LMS cannot fetch gradesync's JWKS (to check our token request) because it times out:
  the AGS client answers RETRY_LATER, not a bad-credentials pause. A JWKS URL that answers
  404 still is a misconfiguration.
- gradesync cannot fetch the LMS's JWKS at launch because it times out: the launch says
  "try again" (503), a key set fetched before keeps verifying, nothing is paused, and the
  next launch after the platform recovers goes through.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.lti.platform_keys import PlatformKeyCache
from gradesync.lti.routes import LtiTool
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.testing import ManualClock
from tests.lti.conftest import Browser, Gradesync, KeysProxy, add_course, connect, unique
from tests.lti.test_ags_sandbox import column, make_env


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A URL whose server accepts connections and never answers (a hung JWKS endpoint)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/jwks.json"
    finally:
        sock.close()


async def test_lms_timing_out_on_our_jwks_is_retry_later_not_a_pause(
    lms: RunningSandbox,
    gradesync_lite: Gradesync,
    context: DestinationContext,
    silent_url: str,
) -> None:
    env = make_env(lms, gradesync_lite, context)
    client_id = str(env.client.config["client_id"])
    tool = lms.state.tools[client_id]

    def reregister(jwks_url: str) -> None:
        lms.admin.register_tool(**{**tool.model_dump(), "jwks_url": jwks_url, "public_key": None})

    reregister(silent_url)  # the LMS's fetch of our keys times out (after its 5 s)
    with pytest.raises(RemoteFailure) as info:
        await env.client.ensure_column(env.course, column(), None)
    assert info.value.failure is FailureClass.RETRY_LATER, info.value
    assert info.value.code == "tool_keys_unreachable"
    assert "JWKS" in info.value.message and info.value.remedy

    reregister(gradesync_lite.base_url + "/lti/no-such-jwks.json")  # 404: a wrong URL
    with pytest.raises(RemoteFailure) as info:
        await env.client.ensure_column(env.course, column(), None)
    assert info.value.failure is FailureClass.MISCONFIGURED
    assert info.value.code == "bad_credentials"

    reregister(gradesync_lite.base_url + "/lti/jwks.json")  # fixed: the token comes
    item = await env.client.ensure_column(env.course, column(), None)
    assert item.remote_id


def test_platform_jwks_timeout_at_launch_says_try_again(
    lms: RunningSandbox, gradesync: Gradesync, browser: Browser
) -> None:
    proxy = KeysProxy(lms.admin.config()["jwks_url"])
    try:
        s = connect(lms, gradesync, key_set_url=proxy.url)
        clock = ManualClock()
        tool = LtiTool(gradesync.runtime)
        # A working key set gets a generous wait (the machine may be busy); a hung one a short
        # wait, since timing out is then the behaviour under test.
        tool.platform_keys = PlatformKeyCache(tool.http, fetch_timeout=10.0, clock=clock.monotonic)
        gradesync.app.state.lti = tool
        add_course(gradesync.db, s.tenant_id, "geo", ("map", "Map", 5.0))
        learner = unique("learner-")
        ctx = unique("ctx-")
        lms.admin.add_course(id=ctx, title="LMS geo", learners=[learner], instructors=[])
        lms.admin.add_resource_link(
            ctx,
            id="rl-map",
            title="Map",
            client_id=s.client_id,
            custom={"gradesync_course_id": "geo", "gradesync_activity_id": "map"},
        )

        def launch() -> httpx.Response:
            return browser.launch(
                lms, client_id=s.client_id, user=learner, course=ctx, resource_link_id="rl-map"
            )

        assert launch().status_code == 200  # keys fetched and cached

        # An hour later the cached set is due for a refresh, and the platform hangs: the keys
        # it had still verify its tokens.
        clock.advance(3601)
        proxy.hang = True
        tool.platform_keys.fetch_timeout = 0.3
        assert launch().status_code == 200

        # With nothing cached, the hang refuses the launch as temporary: "try again".
        tool.platform_keys.forget(proxy.url)
        for _ in range(2):  # the retry inside the refetch window says the same, not a forgery
            resp = launch()
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"] == "key_set_timeout"
            assert "try again" in resp.json()["message"]
        codes = [r.code for r in gradesync.rejections(s.tenant_id)]
        assert codes.count("key_set_timeout") == 2 and "bad_signature" not in codes
        with gradesync.db.uow() as uow:
            dest = uow.destinations.get(s.tenant_id, s.platform_id)
        assert dest is not None and dest.enabled and dest.paused_until is None

        # The platform recovers: the next launch after the refetch window goes through.
        proxy.hang = False
        tool.platform_keys.fetch_timeout = 10.0
        clock.advance(11)
        assert launch().status_code == 200
    finally:
        proxy.close()
