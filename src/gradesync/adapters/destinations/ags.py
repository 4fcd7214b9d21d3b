"""LTI 1.3 Assignment and Grade Services 2.0: the destination client.

One client per platform registration (a `Destination` of kind lti13_ags). It gets an OAuth 2
token with a signed client assertion (cached per platform and scope set), finds line items
before it creates them, posts scores to `{lineitem}/scores`, reads results back, and turns
every failure into a classified `RemoteFailure`. Every URL it calls is checked against the
platform's registered origins first (see `ags_urls`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from gradesync.adapters.destinations.ags_profiles import AgsProfile, profile_for
from gradesync.adapters.destinations.ags_urls import (
    ForeignUrl,
    Origin,
    allowed_origins,
    check_url,
    next_link,
    results_url,
    scores_url,
    with_query,
)
from gradesync.adapters.destinations.http_errors import (
    REMEDIES,
    classify,
    remote_message,
    transport_failure,
)
from gradesync.adapters.destinations.http_fast import json_content
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.adapters.destinations.tokens import AccessToken
from gradesync.domain.canonical import parse_iso
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.policy import Column, DesiredResult, column_hash
from gradesync.services.destination import (
    NO_RESOURCE_LINK,
    FailureClass,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)

log = logging.getLogger(__name__)

SCOPE_LINEITEM = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem"
SCOPE_LINEITEM_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly"
SCOPE_RESULT_READONLY = "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly"
SCOPE_SCORE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"

DEFAULT_SCOPES = (SCOPE_LINEITEM, SCOPE_LINEITEM_READONLY, SCOPE_RESULT_READONLY, SCOPE_SCORE)

LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
CONTAINER_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
RESULTS_TYPE = "application/vnd.ims.lis.v2.resultcontainer+json"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
CANVAS_SUBMISSION = "https://canvas.instructure.com/lti/submission"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_TAG = "grade"
ASSERTION_LIFETIME = 300  # seconds
MAX_PAGES = 10_000
# URLs checked against a platform's origins and parsed, for every client of the process
# together: a process sends to each column's URL many times, and a vendor's thousands of
# platforms would otherwise each keep their own for good. Keyed by the origins a URL was
# checked against, so one accepted for one platform is never taken unchecked for another.
_MAX_TARGETS = 4096
_TARGETS: dict[tuple[frozenset[Origin], str], httpx.URL] = {}


def _misconfigured(code: str, message: str) -> RemoteFailure:
    return RemoteFailure(FailureClass.MISCONFIGURED, code, message, remedy=REMEDIES.get(code))


# The platform checks our client assertion with the keys at our JWKS URL. When it could not
# fetch them (it timed out, or gradesync was briefly unreachable), it refuses the token with
# invalid_client like a wrong key, but nothing is misconfigured: retry, do not pause. A fetch
# failure that names a definite answer (404, 403, "not found") is a wrong URL: misconfigured.
_KEYS_WORDS = re.compile(r"jwks|jwk\b|key ?set|public keys?|tool'?s keys", re.I)
_TEMPORARY_WORDS = re.compile(
    r"time[sd]? ?out|timeout|timed out|unreachable|could not connect|cannot connect|"
    r"connection (refused|reset|error|failed)|temporar|unavailable|\b50[234]\b",
    re.I,
)
_FETCH_FAILED = re.compile(
    r"(cannot|can't|could not|couldn't|unable to|failed to|error) "
    r"(fetch|retrieve|get|load|download|reach)",
    re.I,
)
_DEFINITE = re.compile(
    r"\b4\d\d\b|not found|client error|forbidden|unauthori[sz]ed|invalid json|not json",
    re.I,
)


# How long to wait before asking again after a credential refusal. A platform re-reads a
# tool's JWKS when a token names a key it has not seen, but at most every few seconds (the
# sandbox every 5 s): a fetch that failed just before (gradesync busy or restarting its
# database) makes every refusal within that window look definite, and an immediate retry
# would pause the destination for a refusal that was never about our keys.
CREDENTIAL_RETRY_WAIT = 6.0

REFUSED_TWICE = (
    "(refused again after a retry with a new token signed with the tool's keys read afresh)"
)


def _credentials_refused(failure: RemoteFailure) -> bool:
    """The token endpoint refused who we are (401 / invalid_client), not a scope."""
    return failure.failure is FailureClass.MISCONFIGURED and failure.code == "bad_credentials"


def _token_failure(failure: RemoteFailure) -> RemoteFailure:
    """A token refusal that says the platform could not fetch our keys for a temporary
    reason is RETRY_LATER (`tool_keys_unreachable`), not a bad-credentials pause."""
    if (
        failure.failure is FailureClass.MISCONFIGURED
        and failure.code == "bad_credentials"
        and _KEYS_WORDS.search(failure.message)
        and (
            _TEMPORARY_WORDS.search(failure.message)
            or (_FETCH_FAILED.search(failure.message) and not _DEFINITE.search(failure.message))
        )
    ):
        return RemoteFailure(
            FailureClass.RETRY_LATER,
            "tool_keys_unreachable",
            failure.message,
            status=failure.status,
            remedy=(
                "The LMS could not fetch gradesync's public keys (JWKS URL) in time; gradesync "
                "retries automatically. If this persists, check that the LMS can reach "
                "/lti/jwks.json on gradesync's address."
            ),
        )
    return failure


# A 403 that speaks of the token (DRF: "Invalid token signature.", "Missing LTI 1.3
# authentication token.") deserves a new token; one that speaks of a rate limit does not.
_TOKEN_WORDS = re.compile(r"token|credential|authenticat|signature|expired", re.I)
_RATE_WORDS = re.compile(r"rate limit", re.I)


def _iso(moment: datetime) -> str:
    # Sub-second precision with a zone: two sends a millisecond apart must not look equal.
    return moment.isoformat(timespec="microseconds")


class AgsClient:
    """DestinationClient for an LTI 1.3 platform (AGS 2.0)."""

    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        self.destination = destination
        self.config = destination.config
        self.profile: AgsProfile = profile_for(destination.profile)
        self._http = context.http
        self._tokens = context.tokens
        self._keys = context.tool_keys
        self._origins = allowed_origins(self.config)
        self._reload_keys = False  # the next token is signed with keys read afresh
        # line items this client created, per activity, until a listing confirmed each as the
        # column (or it was deleted as the surplus of a race with another process)
        self._created: dict[str, set[str]] = {}
        self.scopes: tuple[str, ...] = tuple(self.config.get("scopes") or DEFAULT_SCOPES)
        # the token's key, made once: a new frozenset would be hashed again for every score
        self._key = (destination.tenant_id, destination.id, frozenset(self.scopes))
        self.tag = str(self.config.get("tag") or DEFAULT_TAG)
        self.concurrency = int(self.config.get("concurrency") or 8)
        self.timeout = float(self.config.get("timeout_seconds") or 30.0)
        # The smallest step between two timestamps the platform tells apart (Moodle stores
        # whole seconds and refuses an equal timestamp).
        self.timestamp_step = (
            timedelta(seconds=1)
            if self.profile.rejects_equal_timestamps
            else timedelta(microseconds=1)
        )

    @property
    def capabilities(self) -> Capabilities:
        return self.profile.capabilities

    # --- tokens ---

    def _token_key(self) -> tuple[str, str, frozenset[str]]:
        return self._key

    def _assertion(self, *, reload: bool = False) -> str:
        if self._keys is None:
            raise _misconfigured(
                "no_tool_key", "the tool's signing keys are not available to this process"
            )
        client_id = str(self.config.get("client_id") or "")
        token_url = str(self.config.get("auth_token_url") or "")
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": self.config.get("audience") or token_url,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": secrets.token_urlsafe(24),
        }
        key = self._keys.reload() if reload else self._keys.current()
        return key.sign(claims)

    async def _fetch_token(self) -> tuple[str, float, frozenset[str]]:
        """A token; a refusal of our credentials is tried once more with the tool's keys
        read afresh before it is reported (and the destination paused): another process
        may have rotated the key this one signed with, or made the key the platform holds."""
        try:
            return await self._request_token(reload=self._reload_keys)
        except RemoteFailure as first:
            if not _credentials_refused(first):
                raise
        finally:
            self._reload_keys = False
        await asyncio.sleep(CREDENTIAL_RETRY_WAIT)
        try:
            return await self._request_token(reload=True)
        except RemoteFailure as again:
            if _credentials_refused(again):
                again.message = f"{again.message} {REFUSED_TWICE}"
            raise

    async def _request_token(self, *, reload: bool) -> tuple[str, float, frozenset[str]]:
        token_url = self._checked(str(self.config.get("auth_token_url") or ""), "auth_token_url")
        if reload:  # reading the keys queries the database: off the event loop
            assertion = await asyncio.to_thread(self._assertion, reload=True)
        else:
            assertion = self._assertion()
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": " ".join(self.scopes),
        }
        try:
            resp = await self._http.post(
                token_url, data=form, headers={"Accept": "application/json"}, timeout=self.timeout
            )
        except httpx.HTTPError as exc:
            raise transport_failure(exc, "token") from None
        if not resp.is_success:
            raise _token_failure(
                classify(resp.status_code, resp.headers, resp.content, what="token")
            )
        try:
            body = resp.json()
            value = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise _misconfigured(
                "bad_token_response",
                f"the token endpoint answered {resp.status_code} without an access_token: "
                f"{resp.text[:300]}",
            ) from None
        expires_in = body.get("expires_in", 3600)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 3600.0
        granted = str(body.get("scope") or " ".join(self.scopes)).split()
        return value, lifetime, frozenset(granted)

    async def _token(self) -> AccessToken:
        key = self._token_key()
        return self._tokens.fresh(key) or await self._tokens.get(key, self._fetch_token)

    # --- HTTP ---

    def _checked(self, url: str, field: str) -> str:
        try:
            return check_url(url, self._origins, field)
        except ForeignUrl as exc:
            failure = _misconfigured("foreign_url", str(exc))
            failure.final = True  # the same URL is refused again: no retry
            raise failure from None

    def _target(self, url: str, field: str) -> httpx.URL:
        """`url` checked against the platform's origins and parsed, once per URL rather
        than once per request: every score of a column goes to the same URL."""
        key = (self._origins, url)
        target = _TARGETS.get(key)
        if target is None:
            self._checked(url, field)
            if len(_TARGETS) >= _MAX_TARGETS:
                _TARGETS.clear()
            target = _TARGETS[key] = httpx.URL(url)
        return target

    async def _send(
        self,
        method: str,
        url: str,
        *,
        field: str,
        what: str,
        accept: str | None = None,
        content_type: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        target = self._target(url, field)
        content = json_content(body) if body is not None else None
        key = self._token_key()
        for attempt in (1, 2):
            # `_token` without its coroutine: a token in the cache is taken at once
            token = self._tokens.fresh(key) or await self._tokens.get(key, self._fetch_token)
            headers = {"Authorization": f"Bearer {token.value}"}
            if accept:
                headers["Accept"] = accept
            if content_type:
                headers["Content-Type"] = content_type
            try:
                resp = await self._http.request(
                    method, target, content=content, headers=headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                raise transport_failure(exc, what) from None
            if attempt == 1 and self._token_refused(resp):
                # An expired or revoked token: a new one, once, signed with the tool's keys
                # read afresh (the platform may hold only a key another process made).
                self._tokens.invalidate(self._token_key(), token.value)
                self._reload_keys = True
                continue
            if resp.is_success:
                return resp
            if attempt == 2 and self._token_refused(resp) and self.profile.forbidden_means_token:
                raise self._lacking_scope(resp, token.scopes, what)
            raise classify(resp.status_code, resp.headers, resp.content, what=what)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _lacking_scope(
        self, resp: httpx.Response, granted: frozenset[str], what: str
    ) -> RemoteFailure:
        """A platform that answers both a bad token and a missing scope with 403 (Open edX)
        refused a token it had just issued: the token is sound, its scopes are not enough.
        A misconfiguration of the registration, not a refusal of one learner's grade."""
        words = remote_message(resp.content)
        return RemoteFailure(
            FailureClass.MISCONFIGURED,
            "no_grade_scope",
            f"{what}: {self.profile.name} refused a new token with 403 ({words or 'forbidden'}); "
            f"the token grants: {', '.join(sorted(granted)) or 'no scope'}",
            status=resp.status_code,
            remedy=REMEDIES["no_grade_scope"],
        )

    def _token_refused(self, resp: httpx.Response) -> bool:
        """401, or a 403 that is about the token: the profile says the platform answers a
        bad token with 403, or the platform's words say so (a rate limit's 403 is not)."""
        if resp.status_code == 401:
            return True
        if resp.status_code != 403:
            return False
        words = remote_message(resp.content)
        if _RATE_WORDS.search(words):
            return False
        return self.profile.forbidden_means_token or bool(_TOKEN_WORDS.search(words))

    async def _get_pages(
        self,
        url: str,
        *,
        field: str,
        what: str,
        accept: str,
        each_request: RequestGate = ungated,
        enough: Callable[[list[Any]], bool] | None = None,
    ) -> list[Any]:
        """The elements of a paged JSON list, following Link rel="next" exactly as given,
        each page's request made within `each_request` when given: every page, or those up
        to the first for which `enough` holds. `enough` is given each page once, as it comes
        (it keeps what it needs of earlier ones): what was listed before is not read again."""
        out: list[Any] = []
        pages = self._pages(url, field=field, what=what, accept=accept, each_request=each_request)
        async with contextlib.aclosing(pages):
            async for page in pages:
                out.extend(page)
                if enough is not None and enough(page):
                    break
        return out

    async def _pages(
        self,
        url: str,
        *,
        field: str,
        what: str,
        accept: str,
        each_request: RequestGate = ungated,
    ) -> AsyncGenerator[list[Any]]:
        """The pages of a paged JSON list, one at a time, following Link rel="next" exactly
        as given; each page's request made within `each_request` when given."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url is not None and len(seen) < MAX_PAGES:
            if next_url in seen:
                break  # a platform that links a page to itself must not loop us forever
            seen.add(next_url)
            async with each_request():
                resp = await self._send("GET", next_url, field=field, what=what, accept=accept)
            page = _json(resp, what)
            if not isinstance(page, list):
                raise RemoteFailure(
                    FailureClass.REJECTED,
                    "bad_response",
                    f"{what}: expected a JSON list, got {type(page).__name__}",
                    status=resp.status_code,
                )
            next_url = next_link(resp.headers.get("link"))
            field = "Link next"
            yield page

    # --- DestinationClient ---

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        if link is None or not link.remote_id:
            why = (
                "no LTI launch from the LMS course has been received yet"
                if link is None
                else "the LMS launches for this course carry no grade service (AGS) endpoint"
            )
            raise RemoteFailure(
                FailureClass.REJECTED,
                "course_not_linked",
                f"course {course.id!r}: {why}",
                remedy=(
                    "Open one of gradesync's links in the LMS course (or add them with Deep "
                    "Linking) so the LMS tells gradesync where its gradebook is; make sure the "
                    "LMS grants Assignment and Grade Services to gradesync."
                ),
            )
        self._checked(link.remote_id, "lineitems")
        return link

    def _line_item_body(self, column: Column, resource_link: str | None) -> dict[str, Any]:
        maximum: float | int = column.score_maximum
        if self.capabilities.integer_points and float(maximum).is_integer():
            maximum = int(maximum)  # policy made it whole; send it without ".0"
        body: dict[str, Any] = {
            "label": column.title,
            "scoreMaximum": maximum,
            "resourceId": column.activity_id,
            "tag": self.tag,
        }
        if resource_link:
            # The link the activity was launched from (or deep linked to): LMSs tie the column
            # to it, and Open edX counts scores only on a line item tied to its component.
            body["resourceLinkId"] = resource_link
        if column.due_at is not None:
            body["endDateTime"] = _iso(column.due_at)
        return body

    def _unlinked(self, column: Column) -> RemoteFailure:
        return RemoteFailure(
            FailureClass.REJECTED,
            NO_RESOURCE_LINK,
            f"the column for {column.activity_id!r} has no resource link: "
            f"{self.profile.name} counts grades only on a column tied to the LTI link the "
            "activity is launched from, and no launch of this activity has been received",
            remedy=REMEDIES[NO_RESOURCE_LINK],
        )

    def _matched(self, items: Sequence[Any], activity_id: str) -> dict[str, Any] | None:
        """The activity's column among listed line items (`_columns`)."""
        return self._columns(items, {activity_id}).get(activity_id)

    def _columns(self, items: Sequence[Any], wanted: Collection[str]) -> dict[str, dict[str, Any]]:
        """The columns of the `wanted` activities among listed line items, in one pass.
        Filters are advisory on some platforms: match here too; the oldest match wins, one
        with the tag first."""
        first: dict[str, dict[str, Any]] = {}
        tagged: dict[str, dict[str, Any]] = {}
        for item in items:
            activity = _column_of(item)
            if activity is None or activity not in wanted:
                continue
            first.setdefault(activity, item)
            if item.get("tag") == self.tag:
                tagged.setdefault(activity, item)
        return {a: tagged.get(a, item) for a, item in first.items()}

    def _tagged(self, page: Sequence[Any]) -> set[str]:
        """The activities that `page` gives a column with the tag: `_matched`'s answer for
        them can no longer change, whatever is listed after."""
        return {
            activity
            for item in page
            if (activity := _column_of(item)) is not None and item.get("tag") == self.tag
        }

    async def _find(
        self, container: str, activity_id: str, each_request: RequestGate
    ) -> dict[str, Any] | None:
        """The activity's column (`_matched`), read no further than the page that holds
        one with the tag: the first listed wins, so later pages cannot change the answer (a
        platform that ignores the filters answers every line item of the course). While
        only untagged matches are listed, the rest is read: one with the tag comes first."""
        url = with_query(
            container,
            {"resource_id": activity_id, "tag": self.tag, "limit": str(self.profile.page_limit)},
        )
        items = await self._get_pages(
            url,
            field="lineitems",
            what="line items",
            accept=CONTAINER_TYPE,
            each_request=each_request,
            enough=lambda page: activity_id in self._tagged(page),
        )
        return self._matched(items, activity_id)

    async def find_columns(
        self, container: str, activity_ids: Sequence[str], *, each_request: RequestGate
    ) -> dict[str, str]:
        """The ids of the platform's columns for the activities in the course's line items
        container (`ColumnFinder`), by their own resourceId and tag, as `ensure_column` finds
        each (`_matched`): one listing of the container's line items with the tag, however
        many activities are asked about, each page within `each_request`. Filters are
        advisory: a platform that ignores them answers every line item of the course, page
        after page, so the listing stops at the page that gives every activity a column with
        the tag (the first one listed wins; later pages cannot change the answer). An
        activity with only untagged matches so far is answered by the whole listing."""
        container = self._checked(container, "lineitems")
        url = with_query(container, {"tag": self.tag, "limit": str(self.profile.page_limit)})
        wanted = list(dict.fromkeys(activity_ids))
        missing = set(wanted)  # those no page has given a column with the tag yet

        def enough(page: list[Any]) -> bool:
            missing.difference_update(self._tagged(page))
            return not missing

        listed = await self._get_pages(
            url,
            field="lineitems",
            what="line items",
            accept=CONTAINER_TYPE,
            each_request=each_request,
            enough=enough,
        )
        found = self._columns(listed, set(wanted))
        return {a: self._checked(str(found[a]["id"]), "lineitem id") for a in wanted if a in found}

    async def _find_by_link(
        self, container: str, activity_id: str, link: str, each_request: RequestGate
    ) -> dict[str, Any] | None:
        """The line item the LMS made for the activity's resource link (a graded link's
        column, such as the one an LTI 1.1 link had before the move to LTI 1.3): it holds the
        link's grades already, so it is the column rather than a second one beside it. One
        that names another activity is that activity's. The first listed wins: read no
        further than the page that holds it."""

        def linked(items: Sequence[Any]) -> dict[str, Any] | None:
            return next(
                (
                    i
                    for i in items
                    if isinstance(i, dict)
                    and i.get("id")
                    and i.get("resourceLinkId") == link
                    and i.get("resourceId") in (None, "", activity_id)
                ),
                None,
            )

        url = with_query(
            container, {"resource_link_id": link, "limit": str(self.profile.page_limit)}
        )
        items = await self._get_pages(
            url,
            field="lineitems",
            what="line items",
            accept=CONTAINER_TYPE,
            each_request=each_request,
            enough=lambda page: linked(page) is not None,
        )
        return linked(items)

    async def _settle_created(
        self, activity_id: str, column: dict[str, Any], gate: RequestGate
    ) -> None:
        """Delete the line items this client created for the activity other than `column`
        (the oldest, as every racer lists it): each lost a race and was never given out.
        One that cannot be deleted now is tried again on the next call for the activity.
        Each DELETE within `gate`."""
        mine = self._created.get(activity_id)
        if not mine:
            return
        mine.discard(str(column.get("id")))
        for surplus in sorted(mine):
            try:
                async with gate():
                    await self._send("DELETE", surplus, field="lineitem", what="line item")
            except RemoteFailure as failure:
                if failure.code != "line_item_gone":
                    raise
            mine.discard(surplus)
            log.info("deleted line item %s: a duplicate of %s", surplus, column.get("id"))
        if not mine:
            del self._created[activity_id]

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        wanted = column_hash(column)
        if link is not None and link.remote_id and link.details_hash == wanted and not force:
            return link
        known = dict(link.data) if link is not None else {}
        resource_link = str(known.get("resourceLinkId") or "") or None
        if resource_link is None and self.capabilities.needs_resource_link:
            raise self._unlinked(column)
        desired = self._line_item_body(column, resource_link)
        # every request of the look-up, the write and the listing after it goes within the
        # gate: the first in the caller's slot and token, each later one with a token of its own
        gate = each_request
        item: dict[str, Any] | None = None
        if link is not None and link.remote_id:
            try:
                async with gate():
                    resp = await self._send(
                        "GET",
                        link.remote_id,
                        field="lineitem",
                        what="line item",
                        accept=LINEITEM_TYPE,
                    )
                item = _json(resp, "line item")
            except RemoteFailure as failure:
                if failure.code != "line_item_gone":
                    raise
        # A launch names the line items container of its own link: per course on most LMSs,
        # per LTI component on Open edX, so the activity's own container comes first.
        container = self._checked(str(known.get("lineitems") or course.remote_id), "lineitems")
        if item is None:
            item = await self._find(container, column.activity_id, gate)
            if item is not None:
                await self._settle_created(column.activity_id, item, gate)
        if item is None and resource_link is not None:
            item = await self._find_by_link(container, column.activity_id, resource_link, gate)
        if item is None:
            async with gate():
                resp = await self._send(
                    "POST",
                    container,
                    field="lineitems",
                    what="line item",
                    accept=LINEITEM_TYPE,
                    content_type=LINEITEM_TYPE,
                    body=desired,
                )
            created = _json(resp, "line item")
            if isinstance(created, dict) and created.get("id"):
                self._created.setdefault(column.activity_id, set()).add(str(created["id"]))
            # Another process (or deployment) may have looked the column up at the same
            # moment, found none and created one too: listed again, the oldest is the column.
            item = await self._find(container, column.activity_id, gate) or created
            await self._settle_created(column.activity_id, item, gate)
        elif force or _differs(item, desired):
            # Fields the platform holds but left empty come back as null; sending them back
            # is refused by some (Open edX: 400 on every update), so they are left out.
            merged = {k: v for k, v in {**item, **desired}.items() if v is not None}
            if item.get("resourceLinkId"):
                merged["resourceLinkId"] = item["resourceLinkId"]  # never moved to another link
            async with gate():
                resp = await self._send(
                    "PUT",
                    str(item["id"]),
                    field="lineitem",
                    what="line item",
                    accept=LINEITEM_TYPE,
                    content_type=LINEITEM_TYPE,
                    body=merged,
                )
            item = _json(resp, "line item")
        if not isinstance(item, dict) or not item.get("id"):
            raise RemoteFailure(
                FailureClass.REJECTED, "bad_response", f"line item without an id: {item!r}"
            )
        remote_id = self._checked(str(item["id"]), "lineitem id")
        data = {
            k: item[k]
            for k in ("label", "scoreMaximum", "resourceId", "tag", "resourceLinkId", "endDateTime")
            if item.get(k) is not None
        }
        # What the launches told us stays known, whatever the platform echoes back.
        if not data.get("resourceLinkId"):
            data["resourceLinkId"] = resource_link
        if known.get("lineitems"):
            data["lineitems"] = known["lineitems"]
        return ItemLink(
            tenant_id=self.destination.tenant_id,
            destination_id=self.destination.id,
            activity_id=column.activity_id,
            remote_id=remote_id,
            details_hash=wanted,
            data={k: v for k, v in data.items() if v is not None},
        )

    def score_body(
        self, target: ResultTarget, result: DesiredResult, timestamp: datetime
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "userId": target.person.remote_id,
            "timestamp": _iso(timestamp),
            "activityProgress": result.activity_progress,
            "gradingProgress": result.grading_progress,
            "scoreMaximum": result.score_maximum,
        }
        if result.score_given is not None:  # 0 is a score: never test truthiness here
            body["scoreGiven"] = result.score_given
        if result.comment is not None and self.capabilities.comments:
            body["comment"] = result.comment
        submitted = _iso(result.scored_at) if result.scored_at is not None else None
        if submitted is not None:
            body["submission"] = {"submittedAt": submitted}
        if self.profile.canvas_submission_extension:
            ext: dict[str, Any] = {"new_submission": False}
            if submitted is not None:
                ext["submitted_at"] = submitted
            body[CANVAS_SUBMISSION] = ext
        return body

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        if not target.person.remote_id:
            raise RemoteFailure(
                FailureClass.REJECTED,
                "never_launched",
                "this learner has never launched gradesync from the LMS, so the LMS user id "
                "is unknown",
                remedy=REMEDIES["unknown_user"],
            )
        body = self.score_body(target, result, timestamp)
        try:
            resp = await self._send(
                "POST",
                scores_url(target.item.remote_id),
                field="lineitem",
                what="score",
                content_type=SCORE_TYPE,
                body=body,
            )
        except RemoteFailure as failure:
            if (failure.status or 0) >= 500 and self.profile.learner_errors_as_5xx:
                raise await self._learner_or_platform(failure, target.item.remote_id) from None
            raise
        return Receipt(payload=body, status=resp.status_code, message=resp.text[:500] or None)

    async def _learner_or_platform(self, failure: RemoteFailure, lineitem: str) -> RemoteFailure:
        """A server error on one score: if the line item still answers, the platform works and
        the failure is this learner's (per key); otherwise the platform's, as classified."""
        try:
            await self._send(
                "GET", lineitem, field="lineitem", what="line item", accept=LINEITEM_TYPE
            )
        except RemoteFailure:
            return failure
        return RemoteFailure(
            FailureClass.RETRY_LATER,
            "learner_server_error",
            failure.message,
            status=failure.status,
            remedy=REMEDIES["learner_server_error"],
            per_key=True,
        )

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        url = with_query(results_url(item.remote_id), {"limit": str(self.profile.page_limit)})
        # every page: each learner's result is on one of them
        rows = await self._get_pages(
            url,
            field="lineitem",
            what="results",
            accept=RESULTS_TYPE,
            each_request=each_request,
        )
        out: list[ReadBack] = []
        for row in rows:
            if not isinstance(row, dict) or not row.get("userId"):
                continue
            given = row.get("resultScore")
            maximum = row.get("resultMaximum", 1)
            stamp = row.get("timestamp")
            out.append(
                ReadBack(
                    remote_person_id=str(row["userId"]),
                    score_given=float(given) if isinstance(given, int | float) else None,
                    score_maximum=float(maximum) if isinstance(maximum, int | float) else None,
                    comment=row.get("comment") if isinstance(row.get("comment"), str) else None,
                    timestamp=_parse_time(stamp),
                    maximum_said="resultMaximum" in row,
                )
            )
        return out

    async def delete_column(self, course: CourseLink, item: ItemLink) -> None:
        """DELETE the line item (`ColumnRemover`): the LMS drops its results with it. One
        already gone (404) is removed all the same."""
        try:
            await self._send("DELETE", item.remote_id, field="lineitem", what="line item")
        except RemoteFailure as failure:
            if failure.code != "line_item_gone":
                raise

    async def check(self) -> Sequence[ProbeStep]:
        steps: list[ProbeStep] = []
        missing = [
            k
            for k in ("issuer", "client_id", "auth_token_url", "key_set_url")
            if not self.config.get(k)
        ]
        steps.append(
            ProbeStep(
                "registration",
                not missing and bool(self.config.get("deployment_ids")),
                "complete" if not missing else f"missing: {', '.join(missing)}",
                None if not missing else "Register the platform again with every field.",
                code="registration_complete" if not missing else "registration_incomplete",
            )
        )
        try:
            self._tokens.invalidate(self._token_key())
            token = await self._token()
        except RemoteFailure as failure:
            steps.append(
                ProbeStep("token", False, failure.message, failure.remedy, code=failure.code)
            )
            return steps
        steps.append(
            ProbeStep(
                "token",
                True,
                f"token issued by {self.config.get('auth_token_url')}",
                code="token_granted",
            )
        )
        need = {SCOPE_SCORE, SCOPE_LINEITEM}
        lacking = sorted(need - token.scopes)
        steps.append(
            ProbeStep(
                "scopes",
                not lacking,
                f"granted: {', '.join(sorted(token.scopes)) or 'none'}",
                REMEDIES["no_grade_scope"] if lacking else None,
                code="scopes_missing" if lacking else "scopes_granted",
            )
        )
        return steps

    async def aclose(self) -> None:
        """The HTTP pool belongs to the shared context; nothing of ours to close."""


def _json(resp: httpx.Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise RemoteFailure(
            FailureClass.REJECTED,
            "bad_response",
            f"{what}: the platform answered {resp.status_code} with a body that is not JSON: "
            f"{resp.text[:200]}",
            status=resp.status_code,
        ) from None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _same_number(a: Any, b: Any) -> bool:
    return (
        isinstance(a, int | float)
        and isinstance(b, int | float)
        and math.isclose(a, b, rel_tol=1e-9)
    )


def _column_of(item: Any) -> str | None:
    """The activity a listed line item is a column of (its resourceId), or None for one
    that names none or has no id."""
    if isinstance(item, dict) and item.get("id"):
        activity = item.get("resourceId")
        if isinstance(activity, str):
            return activity
    return None


def _differs(item: dict[str, Any], desired: dict[str, Any]) -> bool:
    """Whether the platform's line item differs from what the column should be."""
    for key, want in desired.items():
        have = item.get(key)
        if key == "scoreMaximum":
            if not _same_number(have, want):
                return True
        elif key == "endDateTime":
            if _parse_time(have) != _parse_time(want):
                return True
        elif key == "resourceLinkId":
            if not have:  # an unlinked column is linked; a linked one is never moved
                return True
        elif have != want:
            return True
    return False


def build(destination: Destination, context: DestinationContext) -> AgsClient:
    return AgsClient(destination, context)
