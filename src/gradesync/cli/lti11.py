"""`gradesync lti11 ...`: LTI 1.1 consumers (LMSs that launch gradesync over LTI 1.1)."""

from __future__ import annotations

import secrets
import sys
from typing import TYPE_CHECKING, Any

import typer

from gradesync.cli._common import (
    JSON_OUT,
    TENANT,
    bad_input,
    console,
    destination_status,
    guarded,
    id_table,
    print_json,
    print_table,
    problem,
    runtime,
)
from gradesync.domain.model import DestinationKind
from gradesync.services.lti11_consumers import PROFILES, ConsumerSpec, add_consumer

if TYPE_CHECKING:
    from gradesync.runtime import Runtime

app = typer.Typer(
    help="LTI 1.1 consumers: add-consumer (adds or updates one), list.", no_args_is_help=True
)


# ConsumerSpec's fields as add-consumer's options, to name a bad one as it was typed.
OPTIONS = {
    "destination_id": "--id",
    "name": "--name",
    "consumer_key": "--key",
    "consumer_secret": "--secret",
    "allowed_hosts": "--allowed-host",
    "profile": "--profile",
}


@app.command("add-consumer")
def add_consumer_cmd(
    tenant: str = TENANT,
    destination_id: str = typer.Option(..., "--id", help="Destination id, e.g. canvas-lti11."),
    key: str = typer.Option(..., "--key", help="The consumer key entered in the LMS."),
    allowed_host: list[str] = typer.Option(
        ...,
        "--allowed-host",
        help="Host the LMS's outcome URLs use (repeatable): lms.example.edu, "
        "lms.example.edu:8443 or *.example.edu.",
    ),
    name: str | None = typer.Option(
        None, help="Display name (default: the id; an update keeps the stored one)."
    ),
    profile: str | None = typer.Option(
        None,
        help=f"The LMS family, a label shown with the consumer: {', '.join(PROFILES)} "
        "(default: generic; an update keeps the stored one).",
    ),
    comments: bool | None = typer.Option(
        None,
        help="Send comments with the resultData/text extension (Canvas, Moodle; default: off; "
        "an update keeps the stored choice).",
    ),
    generate_secret: bool = typer.Option(
        False, help="Generate a strong secret and print it once, to paste into the LMS."
    ),
    secret: str | None = typer.Option(
        None,
        envvar="GRADESYNC_LTI11_SECRET",
        help="The shared secret (or GRADESYNC_LTI11_SECRET); a new consumer's is asked on a "
        "terminal when not given; an update keeps the stored one.",
        show_default=False,
    ),
    as_json: bool = JSON_OUT,
) -> None:
    """Register (or update) an LTI 1.1 consumer. The secret is stored encrypted."""
    from gradesync.lti.lti11_launch import LAUNCH_PATH

    if generate_secret and secret:
        raise bad_input(
            problem(
                "--generate-secret",
                "exclusive",
                "--generate-secret and a given secret (--secret, GRADESYNC_LTI11_SECRET) "
                "exclude each other",
            )
        )
    if generate_secret:
        secret = secrets.token_urlsafe(32)
    elif not secret and not _exists(tenant, destination_id) and sys.stdin.isatty():
        # a new consumer needs one; on stderr: with --json, stdout is one JSON document. An
        # update keeps the stored secret, and with no terminal to type it on (a script) the
        # service refuses a new consumer without one: `--secret: ... [required]`
        secret = typer.prompt(
            "Consumer secret", hide_input=True, confirmation_prompt=True, err=True
        )

    def save(rt: Runtime) -> Any:
        with rt.uow() as uow:
            dest = add_consumer(
                uow,
                # an option not given is None: an update keeps the stored value
                ConsumerSpec(
                    tenant_id=tenant,
                    destination_id=destination_id,
                    name=name,
                    consumer_key=key,
                    consumer_secret=secret or None,
                    allowed_hosts=tuple(allowed_host),
                    profile=profile,
                    comments=comments,
                ),
                rt.clock.now(),
                rt.outbound,
            )
            uow.commit()
        return dest

    with runtime() as rt:
        dest = guarded(lambda: save(rt), OPTIONS)
    launch_url = rt.settings.base_url.rstrip("/") + LAUNCH_PATH
    if as_json:
        print_json(
            {
                "id": dest.id,
                "tenant": tenant,
                "name": dest.name,
                "launch_url": launch_url,
                "consumer_key": key,
                "secret": secret if generate_secret else None,
                "allowed_hosts": list(dest.config["allowed_hosts"]),
            }
        )
        return
    console.print(f"LTI 1.1 consumer [bold]{dest.id}[/bold] saved in tenant {tenant}")
    console.print(f"  launch URL:    {launch_url}")
    console.print(f"  consumer key:  {key}")
    if generate_secret:
        console.print(f"  secret:        {secret}   (shown once: paste it into the LMS now)")
    console.print(f"  allowed hosts: {', '.join(dest.config['allowed_hosts'])}")


def _exists(tenant: str, destination_id: str) -> bool:
    """Whether the consumer is there already (its update keeps the stored secret)."""
    with runtime() as rt, rt.reads() as uow:
        return uow.destinations.get(tenant, destination_id) is not None


@app.command("list")
def list_(tenant: str = TENANT, as_json: bool = JSON_OUT) -> None:
    """List a tenant's LTI 1.1 consumers, their LMS and the courses launched from each (no
    secrets)."""
    with runtime() as rt, rt.uow() as uow:
        rows = []
        for dest in uow.destinations.all(tenant):
            if dest.kind is not DestinationKind.LTI11_OUTCOMES:
                continue
            courses = uow.links.courses_for_destination(tenant, dest.id)
            migrated = sum(1 for c in courses if c.data.get("migrated_to"))
            # a timed pause that has run out is not shown
            rows.append((dest.as_of(rt.clock.now()), len(courses), migrated))
    if as_json:
        print_json(
            [
                {
                    "id": dest.id,
                    "name": dest.name,
                    "consumer_key": dest.config.get("consumer_key"),
                    "profile": dest.profile,
                    "allowed_hosts": dest.config.get("allowed_hosts") or [],
                    "courses": n,
                    "moved_to_lti13": migrated,
                    "enabled": dest.enabled,
                    "paused_until": dest.paused_until,
                    "pause_reason": dest.pause_reason,
                }
                for dest, n, migrated in rows
            ]
        )
        return
    table = id_table(
        "id", "name", "lms", "consumer key", "allowed hosts", "courses", "moved to 1.3", "state"
    )
    for dest, n, migrated in rows:
        state = destination_status(dest.enabled, dest.paused_until)
        if state != "active" and dest.pause_reason:
            state += f" ({dest.pause_reason})"
        table.add_row(
            dest.id,
            dest.name,
            dest.profile,
            str(dest.config.get("consumer_key", "")),
            ", ".join(dest.config.get("allowed_hosts") or []),
            str(n),
            str(migrated),
            state,
        )
    print_table(table)
