"""LTI 1.1 Basic Outcomes: replaceResult / readResult / deleteResult over signed POX.

A consumer (an LMS that launches us over LTI 1.1) is a `Destination` of kind LTI11_OUTCOMES:

    config: {"consumer_key": str, "allowed_hosts": [str, ...], "comments": bool (optional),
             "timeout_seconds": float (optional)}
    secret: {"consumer_secret": str}

There are no columns to create: the LMS made the gradebook column when the instructor made the
graded link, and every learner's launch told us where to send (`lis_outcome_service_url`) and
what to call their result (`lis_result_sourcedid`). The launch handler stores those in the
course, item and person links this adapter reads.

Requests are signed with oauthlib (HMAC-SHA1, Authorization header, `oauth_body_hash` added by
oauthlib for the XML body). Platforms report failures inside HTTP 200 (Canvas: 422), so the
envelope's `imsx_codeMajor` and `imsx_description` always decide, then the status code.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import re
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_TYPE_AUTH_HEADER, Client

from gradesync.adapters.destinations.pox import (
    Operation,
    PoxError,
    PoxResponse,
    build_request,
    format_score,
    parse_response,
)
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.model import (
    Course,
    CourseLink,
    Destination,
    DestinationKind,
    ItemLink,
    ScoreForm,
)
from gradesync.domain.policy import Capabilities, Column, DesiredResult, column_hash
from gradesync.domain.remedies import Remedy, lti11_column_remedy
from gradesync.services.destination import (
    FailureClass,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)
from gradesync.services.lti.migration import MIGRATED_KEY
from gradesync.services.lti11_consumers import host_allowed, host_pattern_problem

CONTENT_TYPE = "application/xml"
DEFAULT_TIMEOUT = 20.0
READ_CONCURRENCY = 8  # readResult calls in flight per read_results


# --- consumer configuration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    consumer_key: str
    consumer_secret: str
    allowed_hosts: tuple[str, ...]
    comments: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT

    @classmethod
    def from_destination(cls, destination: Destination) -> ConsumerConfig:
        """Read and check a consumer's settings; MISCONFIGURED names the field at fault."""
        cfg, secret = destination.config, destination.secret
        key = cfg.get("consumer_key")
        if not isinstance(key, str) or not key.strip():
            raise _misconfigured(
                destination, "config.consumer_key", "is required (the LTI 1.1 consumer key)"
            )
        value = secret.get("consumer_secret")
        if not isinstance(value, str) or not value:
            raise _misconfigured(
                destination, "secret.consumer_secret", "is required (the shared secret)"
            )
        hosts = cfg.get("allowed_hosts")
        if not isinstance(hosts, list | tuple) or not hosts:
            raise _misconfigured(
                destination,
                "config.allowed_hosts",
                "must list the LMS host(s) outcome URLs may point at (e.g. lms.example.edu)",
            )
        problems = [h for h in hosts if host_pattern_problem(h)]
        if problems:
            raise _misconfigured(
                destination,
                "config.allowed_hosts",
                f"{problems!r} are not host names or *.domain patterns",
            )
        timeout = cfg.get("timeout_seconds", DEFAULT_TIMEOUT)
        if not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise _misconfigured(
                destination, "config.timeout_seconds", "must be a number of seconds, 0-300"
            )
        return cls(
            consumer_key=key,
            consumer_secret=value,
            allowed_hosts=tuple(str(h).lower() for h in hosts),
            comments=bool(cfg.get("comments", False)),
            timeout_seconds=float(timeout),
        )


def _misconfigured(destination: Destination, field: str, rule: str) -> RemoteFailure:
    """The problem, and its remedy held as a code: the row stores it so, and each reader
    reads its own way to fix a consumer (the destination's pause reason, which every reader
    reads, says only the problem)."""
    return RemoteFailure(
        FailureClass.MISCONFIGURED,
        "bad_configuration",
        f"The LTI 1.1 consumer's {field} {rule}.",
        fix=Remedy("bad_configuration", destination.id),
    )


# --- signing -------------------------------------------------------------------------------


def sign_request(url: str, body: bytes, consumer_key: str, consumer_secret: str) -> dict[str, str]:
    """Headers for a signed POX request: OAuth 1.0a HMAC-SHA1 in the Authorization header,
    with oauthlib adding `oauth_body_hash` = base64(SHA-1(body)) for the non-form body."""
    client = Client(
        consumer_key,
        client_secret=consumer_secret,
        signature_method=SIGNATURE_HMAC_SHA1,
        signature_type=SIGNATURE_TYPE_AUTH_HEADER,
    )
    _, headers, _ = client.sign(
        url, http_method="POST", body=body.decode("utf-8"), headers={"Content-Type": CONTENT_TYPE}
    )
    return {str(k): str(v) for k, v in headers.items()}


# --- classifying answers -------------------------------------------------------------------

# What platforms write in imsx_description, matched case-insensitively, first match wins.
# Signature problems come first: a refused signature must pause the consumer, not be retried.
_DESCRIPTION_RULES: tuple[tuple[re.Pattern[str], FailureClass, str, str], ...] = (
    (
        re.compile(r"nonce"),
        FailureClass.RETRY_LATER,
        "nonce_refused",
        "Retried automatically with a new nonce.",
    ),
    (
        re.compile(r"timestamp|clock"),
        FailureClass.MISCONFIGURED,
        "clock_skew",
        "The LMS refused our OAuth timestamp: check this server's clock (NTP).",
    ),
    (
        re.compile(
            r"signature|oauth|body.?hash|consumer.?key|secret|unauthori[sz]ed|not authori[sz]ed"
            r"|authenticat"
        ),
        FailureClass.MISCONFIGURED,
        "bad_credentials",
        "The LMS refused our signature: check the consumer key and secret match the LMS.",
    ),
    (
        re.compile(r"rate.?limit|too many|throttl|slow down"),
        FailureClass.SLOW_DOWN,
        "rate_limited",
        "Sending is slowed down automatically.",
    ),
    (
        re.compile(r"try again|temporar|unavailable|busy|timeout|timed out"),
        FailureClass.RETRY_LATER,
        "remote_busy",
        "Retried automatically.",
    ),
    (
        re.compile(r"conclud|\bclosed\b|\bended\b|read.?only|\blocked\b"),
        FailureClass.REJECTED,
        "course_concluded",
        "The course or assignment no longer accepts grades; reopen it in the LMS, then resync.",
    ),
    (
        re.compile(r"not a student|user not found|not enrolled|no such user|unknown user"),
        FailureClass.REJECTED,
        "unknown_user",
        "The learner is not a student of this course in the LMS.",
    ),
    (
        re.compile(r"deleted|assignment|line.?item|column"),
        FailureClass.REJECTED,
        "line_item_gone",
        "The assignment was deleted or unlinked in the LMS; recreate the graded link.",
    ),
    (
        re.compile(r"sourced.?id|sourcedguid"),
        FailureClass.REJECTED,
        "unknown_sourcedid",
        "The LMS does not know this learner's result id: ask the learner to open the "
        "activity from the LMS once more, then resync.",
    ),
    (
        re.compile(r"resultscore|score|range"),
        FailureClass.REJECTED,
        "score_out_of_range",
        "The LMS refused the score value.",
    ),
)


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify_pox_failure(
    pox: PoxResponse, status: int, retry_after: float | None = None
) -> RemoteFailure:
    """A failure/unsupported envelope as a RemoteFailure, from the platform's own words."""
    description = pox.description or f"imsx_codeMajor {pox.code_major} without a description"
    if pox.code_major == "unsupported":
        return RemoteFailure(
            FailureClass.REJECTED,
            "unsupported_operation",
            description,
            status=status,
            remedy="The LMS does not support this LTI 1.1 outcomes operation.",
        )
    if status == 429 or (status == 503 and retry_after is not None):
        return RemoteFailure(
            FailureClass.SLOW_DOWN,
            "rate_limited",
            description,
            status=status,
            retry_after=retry_after,
        )
    if status >= 500:
        return RemoteFailure(FailureClass.RETRY_LATER, "server_error", description, status=status)
    text = " ".join((description, *pox.code_minor)).lower()
    for pattern, failure, code, remedy in _DESCRIPTION_RULES:
        if pattern.search(text):
            return RemoteFailure(
                failure,
                code,
                description,
                status=status,
                retry_after=retry_after if failure is FailureClass.SLOW_DOWN else None,
                remedy=remedy,
            )
    if status in (401, 403):
        return RemoteFailure(
            FailureClass.MISCONFIGURED,
            "bad_credentials",
            description,
            status=status,
            remedy="The LMS refused our signature: check the consumer key and secret.",
        )
    return RemoteFailure(
        FailureClass.REJECTED,
        "remote_failure",
        description,
        status=status,
        remedy="Read the LMS's message above; resync once the cause is fixed.",
    )


def classify_http(response: httpx.Response) -> PoxResponse:
    """The envelope of a response, or a RemoteFailure from its status when it has none."""
    status = response.status_code
    retry_after = _retry_after(response.headers)
    try:
        pox = parse_response(response.content)
    except PoxError as exc:
        snippet = response.text[:200].strip() if response.content else ""
        message = f"HTTP {status}: {snippet or exc}"
        if status == 429 or (status == 503 and retry_after is not None):
            raise RemoteFailure(
                FailureClass.SLOW_DOWN,
                "rate_limited",
                message,
                status=status,
                retry_after=retry_after,
            ) from None
        if status == 403 and "rate limit" in snippet.lower():
            raise RemoteFailure(
                FailureClass.SLOW_DOWN,
                "rate_limited",
                message,
                status=status,
                retry_after=retry_after,
            ) from None
        if status >= 500:
            raise RemoteFailure(
                FailureClass.RETRY_LATER, "server_error", message, status=status
            ) from None
        if status in (401, 403):
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "bad_credentials",
                message,
                status=status,
                remedy="The LMS refused our signature: check the consumer key and secret.",
            ) from None
        if status == 404:
            raise RemoteFailure(
                FailureClass.REJECTED,
                "outcome_service_gone",
                message,
                status=status,
                remedy="The LMS no longer answers at this outcome URL; relaunch from the LMS.",
            ) from None
        if 200 <= status < 300:
            # We cannot tell whether it was applied; replaceResult is idempotent, so retry.
            raise RemoteFailure(
                FailureClass.RETRY_LATER, "unreadable_response", message, status=status
            ) from None
        raise RemoteFailure(
            FailureClass.REJECTED, f"http_{status}", message, status=status
        ) from None
    if pox.ok and 200 <= status < 300:
        return pox
    if pox.ok:  # a success envelope under an error status: trust neither, retry
        raise RemoteFailure(
            FailureClass.RETRY_LATER,
            "inconsistent_response",
            f"HTTP {status} with imsx_codeMajor {pox.code_major}: {pox.description}",
            status=status,
        )
    raise classify_pox_failure(pox, status, retry_after)


# --- the client ----------------------------------------------------------------------------


class Lti11Client:
    """DestinationClient for one LTI 1.1 consumer. Stateless apart from the shared pool."""

    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        if destination.kind is not DestinationKind.LTI11_OUTCOMES:
            raise ValueError(f"not an LTI 1.1 destination: {destination.kind.value}")
        self.destination = destination
        self._context = context
        self._http = context.http
        # Read eagerly for capabilities; a broken config surfaces on first use as MISCONFIGURED.
        self._comments = bool(destination.config.get("comments", False))

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            score_form=ScoreForm.PERCENT,
            extra_credit=False,  # 1.0 is the ceiling of the protocol
            comments=self._comments,  # only with the resultData/text extension switched on
            statuses=False,
            name_max_length=None,  # we never name anything: the LMS made the column
            forbidden_name_chars="",
            zeros_stored=True,
            percent_scale=1.0,
            pending_results=False,  # LTI 1.1 has no "submitted, not graded" state
        )

    def _config(self) -> ConsumerConfig:
        return ConsumerConfig.from_destination(self.destination)

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        if link is None:
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "no_launch",
                f"course {course.id!r} has never been launched from this LTI 1.1 consumer",
                remedy="Open the activity once from the LMS course (any user) so the LMS tells "
                "gradesync where to send grades.",
            )
        return link

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        # LTI 1.1 cannot create or rename columns: the link's launch made them. Details are
        # recorded as "in step" so the engine does not ask again until they change.
        if link is None:
            # REJECTED, not MISCONFIGURED: one activity nobody opened yet must not pause the
            # consumer's other courses. The first launch of the link puts these rows back to
            # pending (lti/lti11_launch.py).
            raise RemoteFailure(
                FailureClass.REJECTED,
                "no_launch",
                f"no launch for this activity yet ({column.activity_id!r})",
                remedy=lti11_column_remedy(column.activity_id),
            )
        digest = column_hash(column)
        if link.details_hash == digest:
            return link
        return ItemLink(
            tenant_id=link.tenant_id,
            destination_id=link.destination_id,
            activity_id=link.activity_id,
            remote_id=link.remote_id,
            details_hash=digest,
            data=link.data,
        )

    # -- results --------------------------------------------------------------------------

    def _address(self, target: ResultTarget, cfg: ConsumerConfig) -> tuple[str, str]:
        """(outcome URL, sourcedId) for a result, refusing URLs off the allowed hosts."""
        if target.course.data.get(MIGRATED_KEY):
            raise RemoteFailure(
                FailureClass.REJECTED,
                "course_migrated",
                f"course {target.course.course_id!r} moved to LTI 1.3 destination "
                f"{target.course.data[MIGRATED_KEY]!r}; LTI 1.1 no longer sends its grades",
            )
        activity = target.item.activity_id
        person = target.person
        sourcedids = person.data.get("sourcedids") or {}
        sourcedid = sourcedids.get(activity) or (target.item.data.get("sourcedids") or {}).get(
            person.remote_id
        )
        if not sourcedid:
            raise RemoteFailure(
                FailureClass.REJECTED,
                "no_sourcedid",
                f"learner {person.person_id!r} has not launched activity {activity!r} from the "
                "LMS, so the LMS has not said where their grade goes",
                remedy="Ask the learner to open the activity from the LMS once, then resync.",
            )
        url = (
            (person.data.get("outcome_urls") or {}).get(activity)
            or target.item.data.get("outcome_service_url")
            or target.course.data.get("outcome_service_url")
        )
        if not url:
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "no_outcome_url",
                "the LMS never sent lis_outcome_service_url for this course",
                remedy="Enable grade passback (outcomes) for the tool in the LMS, then relaunch.",
            )
        if not host_allowed(url, cfg.allowed_hosts):
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "outcome_host_not_allowed",
                f"outcome URL host of {url!r} is not in allowed_hosts {list(cfg.allowed_hosts)}",
                remedy="Add the LMS host to the consumer's allowed_hosts if it is genuine.",
            )
        return url, str(sourcedid)

    async def _send(self, url: str, body: bytes, cfg: ConsumerConfig) -> tuple[PoxResponse, int]:
        headers = sign_request(url, body, cfg.consumer_key, cfg.consumer_secret)
        try:
            response = await self._http.post(
                url,
                content=body,
                headers=headers,
                timeout=cfg.timeout_seconds,
                follow_redirects=False,  # a redirect could leave the allowed hosts
            )
        except httpx.TimeoutException as exc:
            raise RemoteFailure(
                FailureClass.RETRY_LATER,
                "timeout",
                f"no answer from the LMS ({type(exc).__name__})",
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteFailure(
                FailureClass.RETRY_LATER,
                "connection_failed",
                f"could not reach the LMS ({type(exc).__name__}: {exc})",
            ) from exc
        return classify_http(response), response.status_code

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        cfg = self._config()
        message_id = uuid.uuid4().hex
        if result.score_given is None:
            # Excused or cleared: LTI 1.1 can only remove the grade.
            operation, score_text, comment = Operation.DELETE, None, None
        else:
            fraction = _fraction(result)
            score_text = format_score(fraction)
            operation = Operation.REPLACE
            comment = result.comment if (cfg.comments and result.comment) else None
        url, sourcedid = self._address(target, cfg)
        body = build_request(operation, sourcedid, message_id, score=score_text, comment=comment)
        pox, status = await self._send(url, body, cfg)
        payload: dict[str, Any] = {
            "operation": operation.value,
            "message_id": message_id,
            "sourcedid": sourcedid,
            "outcome_service_url": url,
        }
        if score_text is not None:
            payload["score"] = score_text
        if comment is not None:
            payload["comment"] = comment
        return Receipt(payload=payload, status=status, message=pox.description or pox.code_major)

    async def read_result(self, url: str, sourcedid: str) -> float | None:
        """The grade the LMS holds for one sourcedId as a fraction, None when it has none."""
        cfg = self._config()
        if not host_allowed(url, cfg.allowed_hosts):
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "outcome_host_not_allowed",
                f"outcome URL host of {url!r} is not in allowed_hosts {list(cfg.allowed_hosts)}",
            )
        body = build_request(Operation.READ, sourcedid, uuid.uuid4().hex)
        pox, status = await self._send(url, body, cfg)
        text = (pox.score_text or "").strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            raise RemoteFailure(
                FailureClass.REJECTED,
                "unreadable_score",
                f"readResult returned resultScore {text!r}, not a number",
                status=status,
            ) from None
        if not math.isfinite(value):
            raise RemoteFailure(
                FailureClass.REJECTED, "unreadable_score", f"resultScore {text!r}", status=status
            )
        return value

    async def read_one(self, target: ResultTarget) -> ReadBack:
        """readResult for one learner's result, addressed as `put_result` addresses it. A
        refusal is raised with the sourcedId asked for in its message: the LMS's own words
        seldom name it."""
        cfg = self._config()
        url, sourcedid = self._address(target, cfg)
        try:
            value = await self.read_result(url, sourcedid)
        except RemoteFailure as exc:
            raise RemoteFailure(
                exc.failure,
                exc.code,
                f"readResult of sourcedId {sourcedid!r}: {exc.message}",
                status=exc.status,
                retry_after=exc.retry_after,
                remedy=exc.remedy,
                fix=exc.fix,
            ) from exc
        return ReadBack(
            remote_person_id=target.person.remote_id,
            score_given=value,
            score_maximum=1.0 if value is not None else None,
            maximum_said=False,  # a fraction: it says nothing of a column's points
        )

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        """readResult for each learner who launched this activity (the launch records their
        sourcedIds on the item link). remote_person_id is the LTI user_id. A learner whose
        result id the LMS no longer knows is left out; any other failure is raised.

        Each call within `each_request` (a rate token each after the first, a pause met
        between them stops the rest): one at a time in the caller's slot, and beside it up to
        READ_CONCURRENCY - 1 more, each in a slot of the destination's free at that moment
        (`RequestGate.beside`, given back after each call: a grade waiting comes first).
        Asked outside any limits, READ_CONCURRENCY at once."""
        sourcedids: Mapping[str, str] = item.data.get("sourcedids") or {}
        urls: Mapping[str, str] = item.data.get("outcome_urls") or {}
        default_url = item.data.get("outcome_service_url") or course.data.get("outcome_service_url")
        gate = each_request
        pending = deque(
            (user_id, sourcedid, url)
            for user_id, sourcedid in sorted(sourcedids.items())
            if (url := urls.get(user_id) or default_url)
        )
        backs: list[ReadBack] = []
        failed: list[BaseException] = []

        async def ask(user_id: str, sourcedid: str, url: str) -> None:
            try:
                async with gate():
                    value = await self.read_result(url, sourcedid)
            except RemoteFailure as exc:
                if exc.failure is FailureClass.REJECTED:
                    return  # a result id the LMS no longer knows
                raise
            backs.append(
                ReadBack(
                    remote_person_id=user_id,
                    score_given=value,
                    score_maximum=1.0 if value is not None else None,
                    maximum_said=False,
                )
            )

        async def in_held_slot() -> None:
            while pending and not failed:
                await ask(*pending.popleft())

        async def beside_it() -> None:
            while pending and not failed:
                with gate.beside() as took:
                    if not took:
                        return
                    await ask(*pending.popleft())

        async def stopping_all(work: Callable[[], Awaitable[None]]) -> None:
            try:
                await work()
            except BaseException as exc:
                failed.append(exc)  # the others ask no more
                raise

        await asyncio.gather(
            stopping_all(in_held_slot),
            *(stopping_all(beside_it) for _ in range(READ_CONCURRENCY - 1)),
            return_exceptions=True,
        )
        if failed:
            raise failed[0]
        return sorted(backs, key=lambda b: b.remote_person_id)

    async def check(self) -> Sequence[ProbeStep]:
        steps: list[ProbeStep] = []
        try:
            cfg = self._config()
        except RemoteFailure as exc:
            return [ProbeStep("configuration", False, exc.message, exc.remedy, code=exc.code)]
        steps.append(
            ProbeStep(
                "configuration",
                True,
                f"consumer key {cfg.consumer_key!r}, secret set, allowed hosts "
                f"{', '.join(cfg.allowed_hosts)}",
                code="configured",
            )
        )
        steps.append(
            ProbeStep(
                "outcome service",
                True,
                "nothing to call before a launch: the LMS gives its outcome URL with each "
                "launch, and a learner's grades go to the URL of their own launch",
                code="outcome_url_per_launch",
            )
        )
        return steps

    async def aclose(self) -> None:
        # The HTTP pool belongs to the DestinationContext; nothing of ours to close.
        return None


def _fraction(result: DesiredResult) -> float:
    """The score as a fraction of 1.0, refused (before anything is sent) when out of range."""
    given, maximum = result.score_given, result.score_maximum
    assert given is not None
    if not math.isfinite(given) or not math.isfinite(maximum) or maximum <= 0:
        raise RemoteFailure(
            FailureClass.REJECTED,
            "score_out_of_range",
            f"score {given!r} of {maximum!r} is not a usable number",
            remedy="A policy bug: report it with this learner and activity.",
        )
    fraction = given if maximum == 1.0 else given / maximum
    if not 0.0 <= fraction <= 1.0:
        raise RemoteFailure(
            FailureClass.REJECTED,
            "score_out_of_range",
            f"LTI 1.1 takes a score from 0.0 to 1.0; refused {fraction!r} before sending",
            remedy="Extra credit cannot go over LTI 1.1: set the course's extra credit policy to "
            "'cap', or give the column more points in the LMS.",
        )
    return fraction


def build(destination: Destination, context: DestinationContext) -> Lti11Client:
    return Lti11Client(destination, context)
