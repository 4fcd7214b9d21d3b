"""LTI 1.1 consumers (admin keys): add one, or change one's key, secret, hosts, name, profile
or comments, as `gradesync lti11 add-consumer` does (the same service).

Deleting, pausing and resuming go through /api/v1/destinations (a consumer is a destination).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import Field

from gradesync.answers.destinations import DestinationOut, dest_out
from gradesync.domain.errors import InvalidInput
from gradesync.runtime import Runtime
from gradesync.services.lti11_consumers import PROFILES, ConsumerSpec, add_consumer
from gradesync.web.api.auth import Principal, require_scope
from gradesync.web.api.deps import runtime
from gradesync.web.api.errors import UrlIdsRoute, strip_prefix
from gradesync.web.api.schemas import InputModel

router = APIRouter(tags=["lti 1.1 consumers"], route_class=UrlIdsRoute)
admin = require_scope("admin")
Text = Annotated[str, Field(strict=True)]
_KEPT = " Left out (or null): a change keeps the stored one"


class ConsumerIn(InputModel):
    """An LTI 1.1 consumer (docs/lti11.md), checked by the service the command line uses."""

    consumer_key: Text = Field(description="The consumer key entered in the LMS.")
    allowed_hosts: list[Text] = Field(
        description="The hosts the LMS's outcome URLs use: `lms.example.edu`, "
        "`lms.example.edu:8443` or `*.example.edu`."
    )
    # at least 16 characters, checked by the service with every other problem (the document
    # says so, so a fuzzer sends only secrets it would accept)
    consumer_secret: (
        Annotated[str, Field(strict=True, json_schema_extra={"minLength": 16})] | None
    ) = Field(
        None,
        description="The secret shared with the LMS (at least 16 characters; never shown "
        f"back).{_KEPT}; a new consumer needs one.",
    )
    name: Text | None = Field(
        None, description=f"A name people recognise.{_KEPT}; a new consumer: its id."
    )
    profile: Text | None = Field(
        None,
        description=f"The LMS family, a label: {', '.join(f'`{x}`' for x in PROFILES)}."
        f"{_KEPT}; a new consumer: `generic`.",
    )
    comments: Annotated[bool, Field(strict=True)] | None = Field(
        None,
        description="Send comments with the resultData/text extension (Canvas, Moodle)."
        f"{_KEPT}; a new consumer: false.",
    )


@router.put("/lti11/consumers/{consumer_id}", response_model=DestinationOut)
def put_consumer(
    consumer_id: str,
    body: ConsumerIn,
    p: Principal = Depends(admin),
    rt: Runtime = Depends(runtime),
) -> DestinationOut:
    """Add an LTI 1.1 consumer, or change one (a paused consumer stays paused: resume it once
    fixed). A consumer key already used by another consumer is a 409."""
    with rt.uow() as uow:
        try:
            dest = add_consumer(
                uow,
                ConsumerSpec(
                    tenant_id=p.tenant_id,
                    destination_id=consumer_id,
                    name=body.name,
                    consumer_key=body.consumer_key,
                    consumer_secret=body.consumer_secret,
                    allowed_hosts=tuple(body.allowed_hosts),
                    profile=body.profile,
                    comments=body.comments,
                ),
                rt.clock.now(),
                rt.outbound,
            )
        except InvalidInput as exc:
            # the service's destination_id is the URL's consumer_id: a bad one is the path's
            raise strip_prefix(exc, "", {"destination_id": "consumer_id"}) from exc
        uow.commit()
    return dest_out(rt, dest)
