"""A refusal of gradesync's credentials is tried once more, with a new token signed with the
tool's keys read afresh, before the destination is paused as misconfigured.

The sandbox LMS checks client assertions for real. Here its registration holds a pasted
public key (as Moodle and Canvas allow instead of a JWKS URL): an admin rotates the tool key
to sign at once (`--now`) and pastes the new public key into the LMS, while this process still
signs with the key it cached (401 invalid_client). The retry signs with the key the store
holds now and gets in. A refusal that persists (a key that is not gradesync's) pauses the
destination, and the pause says it was retried."""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization

from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.sandbox.testing import RunningSandbox
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.lti.keys import ToolKey, ToolKeyStore, new_key
from gradesync.testing import wait_for
from tests.lti.conftest import Browser, Gradesync
from tests.lti.test_ags_sandbox import column, make_env, result
from tests.support.served import Served, launched_learner, post_attempt, register_tool

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def _pem(key: ToolKey) -> str:
    public = key.private_key.public_key()
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _paste_key(lms: RunningSandbox, client_id: str, key: ToolKey) -> None:
    """The LMS admin replaces the tool's registration key by `key`'s public half."""
    tool = lms.state.tools[client_id]
    lms.admin.register_tool(**{**tool.model_dump(), "jwks_url": None, "public_key": _pem(key)})


def _rotate_and_paste(lms: RunningSandbox, gs: Gradesync, client_id: str) -> ToolKey:
    """Another process rotates the tool key to sign at once (`--now`: an LMS holding one
    pasted key has no room for the next), and the LMS admin pastes the new public key."""
    key = ToolKeyStore(gs.db.uow).rotate(immediately=True)
    _paste_key(lms, client_id, key)
    return key


async def test_token_refused_for_a_stale_key_is_retried_with_keys_read_afresh(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    assert context.tool_keys is not None
    stale = context.tool_keys.current()  # this process caches the key it signs with
    fresh = _rotate_and_paste(lms, gradesync_lite, str(env.client.config["client_id"]))
    assert getattr(stale, "kid", None) != fresh.kid
    lms.admin.reset_counters()

    item = await env.client.ensure_column(env.course, column(), None)

    token = lms.admin.counters()["token"]
    # the stale key was refused, the retry signed with the current key got in
    assert token["requests"] == 2 and token["status_401"] == 1 and token["status_200"] == 1
    await env.client.put_result(env.target(item, env.learners[0]), result(6.0), T0)
    (stored,) = lms.state.courses[env.ctx].line_items.values()
    assert stored.scores[env.learners[0]].score_given == 6.0


async def test_a_token_refused_at_the_gradebook_is_renewed_with_keys_read_afresh(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    item = await env.client.ensure_column(env.course, column(), None)  # a token is cached
    _rotate_and_paste(lms, gradesync_lite, str(env.client.config["client_id"]))
    lms.admin.expire_tokens(env.client.config["client_id"])
    lms.admin.reset_counters()

    await env.client.put_result(env.target(item, env.learners[0]), result(5.0), T0)

    counters = lms.admin.counters()
    assert counters["scores"]["status_401"] == 1 and counters["scores"]["status_200"] == 1
    # the new token was signed with the key the store holds now: not refused once
    assert counters["token"]["requests"] == 1 and counters["token"]["status_200"] == 1


async def test_a_refusal_that_persists_is_reported_once_retried(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    env = make_env(lms, gradesync_lite, context)
    _register_foreign_key(lms, str(env.client.config["client_id"]))
    lms.admin.reset_counters()

    try:
        await env.client.ensure_column(env.course, column(), None)
    except RemoteFailure as f:
        failure = f
    else:
        raise AssertionError("a token signed with a key the LMS does not hold was accepted")

    assert failure.failure is FailureClass.MISCONFIGURED and failure.code == "bad_credentials"
    assert "refused again after a retry" in failure.message
    assert lms.admin.counters()["token"]["status_401"] == 2  # once, then once more: no loop


def _register_foreign_key(lms: RunningSandbox, client_id: str) -> None:
    """The LMS's registration holds a public key that is not gradesync's (an admin pasted
    the wrong one): every assertion gradesync signs is refused."""
    _paste_key(lms, client_id, new_key(T0))


def test_a_persisting_refusal_pauses_the_destination_with_a_clear_reason(
    lms: RunningSandbox, served: Served, browser: Browser
) -> None:
    reg = register_tool(lms, served)
    learner, ctx = launched_learner(lms, served, browser, reg["client_id"])
    _register_foreign_key(lms, reg["client_id"])
    lms.admin.expire_tokens(reg["client_id"])  # the next send needs a new token
    lms.admin.reset_counters()

    post_attempt(served, "e1", learner, 7)

    platform = wait_for(
        lambda: (d := served.ok("GET", "/destinations/lms")).get("paused_until") and d,
        "the destination paused",
    )
    reason = platform["pause_reason"]
    assert reason.startswith("Misconfigured:"), reason
    assert "invalid_client" in reason or "signature" in reason, reason
    assert "refused again after a retry" in reason, reason
    token = lms.admin.counters()["token"]
    assert token["status_401"] == 2 and token.get("status_200", 0) == 0, token
    (item,) = lms.state.courses[ctx].line_items.values()
    assert learner not in item.scores


async def test_a_refusal_while_the_lms_will_not_yet_read_the_keys_again_is_waited_out(
    lms: RunningSandbox, gradesync_lite: Gradesync, context: DestinationContext
) -> None:
    """The LMS read gradesync's JWKS a moment ago and reads it again for an unknown key at
    most every 5 s. A key made meanwhile is refused at first; the retry waits that out
    instead of pausing the destination for a refusal that was never about its keys."""
    env = make_env(lms, gradesync_lite, context)
    client_id = str(env.client.config["client_id"])
    assert lms.state.tools[client_id].jwks_url  # the LMS reads the keys at gradesync's URL
    item = await env.client.ensure_column(env.course, column(), None)  # the LMS read them now
    # another process makes a new key that signs at once (`--now`)
    ToolKeyStore(gradesync_lite.db.uow).rotate(immediately=True)
    lms.admin.expire_tokens(client_id)
    lms.admin.reset_counters()

    await env.client.put_result(env.target(item, env.learners[0]), result(7.0), T0)

    token = lms.admin.counters()["token"]
    # the new key was refused while the LMS would not read the keys again, then accepted
    assert token["status_401"] == 1 and token["status_200"] == 1, token
    (stored,) = lms.state.courses[env.ctx].line_items.values()
    assert stored.scores[env.learners[0]].score_given == 7.0
