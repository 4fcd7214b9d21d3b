"""`gradesync platforms ...` (LTI 1.3 registrations) and `gradesync keys rotate-tool-key`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from gradesync.adapters.destinations.ags_profiles import PROFILE_NAMES
from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    console,
    guarded,
    id_table,
    print_json,
    print_table,
    runtime,
    setting_text,
    when,
)
from gradesync.lti import registration as reg
from gradesync.services.lti import platforms

if TYPE_CHECKING:
    from gradesync.runtime import Runtime
    from gradesync.services.lti.keys import ToolKeyInfo

app = typer.Typer(
    help="LTI 1.3 platforms (LMS registrations): add, list, show.", no_args_is_help=True
)
keys_app = typer.Typer(help="The LTI tool's signing keys: list, rotate.", no_args_is_help=True)


def _print_tool_values(base_url: str) -> None:
    urls = reg.tool_urls(base_url)
    console.print("Paste these into the LMS:")
    for label, key in (
        ("OIDC login (initiation) URL", "oidc_login_url"),
        ("Target link URI / launch URL", "target_link_uri"),
        ("Redirect URI", "redirect_uri"),
        ("Deep linking URL", "deep_linking_url"),
        ("Public JWKS URL", "jwks_url"),
        ("Domain", "domain"),
    ):
        console.print(f"  {label}: {urls[key]}")


@app.command("add")
def add(
    tenant: str = TENANT,
    platform_id: str = typer.Option(..., "--id", help="Registration id, e.g. canvas-prod."),
    issuer: str = typer.Option(
        ..., help="The platform's issuer (iss), e.g. https://canvas.instructure.com."
    ),
    client_id: str = typer.Option(..., help="The client id the LMS gave gradesync."),
    deployment_id: list[str] = typer.Option(
        ..., "--deployment-id", help="Deployment id (repeatable)."
    ),
    auth_login_url: str = typer.Option(..., help="The platform's OIDC authorization URL."),
    auth_token_url: str = typer.Option(..., help="The platform's OAuth 2 token URL."),
    key_set_url: str = typer.Option(..., help="The platform's public JWKS URL."),
    profile: str | None = typer.Option(
        None,
        help="LMS profile: " + ", ".join(PROFILE_NAMES) + " (default: generic; a --replace "
        "keeps the stored one).",
    ),
    audience: str | None = typer.Option(
        None,
        help="Token audience when it is not the token URL (Brightspace; a --replace keeps "
        "the stored one).",
    ),
    allowed_host: list[str] = typer.Option(
        [],
        "--allowed-host",
        help="Extra host serving AGS (Canvas: the school's domain). Repeatable; a --replace "
        "without any keeps the stored ones.",
    ),
    name: str = typer.Option("", help="Display name (default: the id; a --replace keeps it)."),
    person_id_from: str | None = typer.Option(
        None,
        help="Which launch value is the person id: sub, email, lis_person_sourcedid (default: "
        "sub; a --replace keeps the stored one).",
    ),
    replace: bool = typer.Option(
        False,
        "--replace",
        help="Update an existing registration: what this command does not give (profile, "
        "audience, hosts, name, person id, its pause, concurrency and tag) is kept.",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Register an LMS (or update it with --replace), then print the values to paste into it."""
    from gradesync.answers.platforms import platform_view

    data: dict[str, Any] = {
        "id": platform_id,
        "name": name or None,
        "issuer": issuer,
        "client_id": client_id,
        "deployment_ids": deployment_id,
        "auth_login_url": auth_login_url,
        "auth_token_url": auth_token_url,
        "key_set_url": key_set_url,
        "profile": profile,
        "audience": audience,
        "allowed_hosts": allowed_host or None,
        "person_id_from": person_id_from,
    }

    def save(rt: Runtime) -> Any:
        with rt.uow() as uow:
            if replace:  # an update of one that is not there is refused, as the API's PUT
                platforms.get_platform(uow, tenant, platform_id)
            dest = platforms.save_platform(
                uow,
                reg.platform_of(tenant, data, rt.outbound),
                rt.clock.now(),
                replace_existing=replace,
                keep=reg.left_out(data),  # an option not given keeps the stored value
            )
            uow.commit()
        return dest

    with runtime() as rt:
        dest = guarded(lambda: save(rt))
    if as_json:
        print_json(platform_view(dest, rt))  # as POST /platforms
        return
    console.print(f"registered platform {dest.id!r} ({dest.profile}) in tenant {tenant!r}")
    _print_tool_values(rt.settings.base_url)


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """The tenant's LTI 1.3 platforms."""
    from gradesync.answers.platforms import platform_view

    with runtime() as rt, rt.uow() as uow:
        now = rt.clock.now()
        rows = [d.as_of(now) for d in platforms.list_platforms(uow, tenant)]
    if as_json:
        print_json([platform_view(d, rt) for d in rows])  # as GET /platforms
        return
    table = id_table("id", "profile", "issuer", "client id", "deployments", "state")
    for d in rows:
        state = "disabled" if not d.enabled else ("paused" if d.paused_until else "active")
        table.add_row(
            d.id,
            d.profile,
            str(d.config.get("issuer")),
            str(d.config.get("client_id")),
            ", ".join(d.config.get("deployment_ids") or []),
            state,
        )
    print_table(table)


@app.command("show")
def show(
    tenant: str = TENANT,
    platform_id: str = typer.Argument(..., help="Registration id."),
    as_json: bool = JSON_OUT,
) -> None:
    """One registration and the values to paste into the LMS."""
    from gradesync.answers.platforms import platform_view

    def get(rt: Runtime) -> Any:
        with rt.uow() as uow:
            return platforms.get_platform(uow, tenant, platform_id)

    with runtime() as rt:
        dest = guarded(lambda: get(rt))
    if as_json:
        print_json(platform_view(dest, rt))  # as GET /platforms/{id}
        return
    for key, value in reg.spec_of(dest).items():
        console.print(f"{key}: {escape(setting_text(value))}", highlight=False, soft_wrap=True)
    _print_tool_values(rt.settings.base_url)


@keys_app.command("rotate-tool-key")
def rotate_tool_key(
    now: bool = typer.Option(
        False,
        "--now",
        help="Sign with the new key at once and withdraw the old key(s) from the key set at "
        "once (a compromised key): platforms refuse the old key as soon as they read the set "
        "again, and gradesync's new signatures until then (up to 5 minutes).",
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Make a new LTI signing key. It is published at once and signs about 5 minutes later,
    once platforms' cached key sets hold it; the current key signs until then and stays
    published for a week after (then `prune-tool-keys` removes it). A key still waiting to
    sign from an earlier rotation is replaced: it never signs. The operator is not held to
    the API's limits (a key waiting, rotations in quick succession)."""
    from gradesync.answers.tool_keys import rotation_out
    from gradesync.services.lti.key_admin import rotation_words

    with runtime() as rt:
        done = rt.tool_keys.rotation(immediately=now)
    if as_json:
        print_json(rotation_out(done).model_dump(mode="json"))  # as POST /lti/tool-keys
        return
    console.print(rotation_words(done).text(), highlight=False)


@keys_app.command("list-tool-keys")
def list_tool_keys(as_json: bool = JSON_OUT) -> None:
    """The tool's keys and their state: next (published, signs from a set time), current
    (signs now), retiring (published for the overlap), expired (to prune), revoked (withdrawn
    by `rotate-tool-key --now`, to prune)."""
    from gradesync.answers.tool_keys import tool_key_out
    from gradesync.domain.tool_keys import KeyState

    with runtime() as rt:
        infos = rt.tool_keys.list()
    if as_json:
        print_json([tool_key_out(k).model_dump(mode="json") for k in infos])  # as the API
        return
    table = id_table("kid", "state", "signs from", "stops signing", "in JWKS until")
    for k in infos:
        table.add_row(
            k.kid,
            k.state.value,
            when(k.signs_from) if k.signs_from else "never",
            when(k.retired_at),
            when(k.published_until) if k.published_until and k.published else _in_jwks(k),
        )
    print_table(table)
    for k in infos:
        if k.state is KeyState.NEXT and k.signs_from:
            console.print(f"{k.kid} starts signing at {when(k.signs_from)}")


def _in_jwks(key: ToolKeyInfo) -> str:
    if key.published:
        return "yes"
    return f"no, revoked {when(key.revoked_at)}" if key.revoked_at else "no (prune it)"


@keys_app.command("prune-tool-keys")
def prune_tool_keys(as_json: bool = JSON_OUT) -> None:
    """Delete tool keys retired longer than the overlap, and revoked ones (no longer in the
    JWKS)."""
    with runtime() as rt:
        count = rt.tool_keys.prune()
    if as_json:
        print_json({"removed": count})
        return
    console.print(f"removed {count} retired tool key(s)")
