"""LTI Names and Role Provisioning Services 2.0: reading a course's roster from a platform.

The client sits on the AGS client of the same platform registration: the same client
assertion, token cache (a token of its own scope), HTTP pool, origin checks and failure
classification. It reads every page of the membership container (following
`Link: <...>; rel="next"` as given) and keeps the `rel="differences"` link the platform
offers, so the next read asks only for what changed.
"""

from __future__ import annotations

from typing import Any

from gradesync.adapters.destinations.ags import AgsClient, _json
from gradesync.adapters.destinations.ags_urls import link_rel, next_link, with_query
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.model import Destination
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.roster import Member, Membership

SCOPE_MEMBERSHIP = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIP_TYPE = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
PAGE_LIMIT = 500
MAX_PAGES = 10_000
_TEXT_FIELDS = ("name", "given_name", "family_name", "email", "lis_person_sourcedid")


class NrpsClient(AgsClient):
    """Reads context memberships for one LTI 1.3 platform registration."""

    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        super().__init__(destination, context)
        self.scopes = (SCOPE_MEMBERSHIP,)

    async def read_members(self, url: str, *, differences: bool = False) -> Membership:
        """Every member at `url` (a context memberships URL, or a differences link from an
        earlier read when `differences`), and the differences link for the next read."""
        first = url if differences else with_query(url, {"limit": str(PAGE_LIMIT)})
        members: list[Member] = []
        later: str | None = None
        seen: set[str] = set()
        next_url: str | None = first
        field = "differences" if differences else "context_memberships_url"
        while next_url is not None and len(seen) < MAX_PAGES and next_url not in seen:
            seen.add(next_url)
            resp = await self._send(
                "GET", next_url, field=field, what="memberships", accept=MEMBERSHIP_TYPE
            )
            page = _json(resp, "memberships")
            rows = page.get("members") if isinstance(page, dict) else None
            if not isinstance(rows, list):
                raise RemoteFailure(
                    FailureClass.REJECTED,
                    "bad_response",
                    "memberships: expected an object with a `members` list",
                    status=resp.status_code,
                )
            members.extend(m for m in (_member(row) for row in rows) if m is not None)
            header = resp.headers.get("link")
            later = link_rel(header, "differences") or later
            next_url = next_link(header)
            field = "Link next"
        if later is not None:
            later = self._checked(later, "Link differences")
        return Membership(members=members, differences_url=later, partial=differences)


def _member(row: Any) -> Member | None:
    if not isinstance(row, dict) or not isinstance(row.get("user_id"), str | int):
        return None
    text = {k: str(row[k]) for k in _TEXT_FIELDS if isinstance(row.get(k), str) and row[k]}
    roles = row.get("roles")
    return Member(
        user_id=str(row["user_id"]),
        status=str(row.get("status") or "Active"),
        roles=tuple(str(r) for r in roles) if isinstance(roles, list) else (),
        name=text.get("name")
        or " ".join(p for p in (text.get("given_name"), text.get("family_name")) if p),
        email=text.get("email"),
        sis_id=text.get("lis_person_sourcedid"),
    )


def build(destination: Destination, context: DestinationContext) -> NrpsClient:
    return NrpsClient(destination, context)
