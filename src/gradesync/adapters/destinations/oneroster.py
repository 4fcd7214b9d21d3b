"""OneRoster 1.2 gradebook (REST) destination: grade passback to a SIS.

- Token: OAuth 2 client credentials (client id/secret in HTTP Basic), cached per
  (destination, scopes) in the process's TokenCache; a 401 gets one new token, then the
  destination is misconfigured.
- Columns: an activity is sent only when it is selected for the SIS (ItemLink.data
  "sync_to_sis", written by `services.sis.select_activities`) and passes the profile's checks
  (`oneroster_rules.py`, shared with the CSV destination). An activity not selected is
  NOT_SYNCED (skipped by design, not a refusal).
  Its group is aligned to a SIS category (by id or by exact title; created only when the
  profile allows). Before creating a line item we look for one: our own sourcedId first, then
  an item of the class with the same title and due date, which is adopted (with its results).
  Line items are PUT with the details whenever their hash changes, or on remaster.
- Results: PUT upsert of the whole result (score, scoreStatus, scoreDate, comment, flags).
  One refused because its line item is gone (the SIS restored from an older state) is
  LINE_ITEM_GONE: the engine has the line item written again, then the result.
- Failures are classified by status code and body (imsx_description), never the reason phrase
  (`oneroster_errors.py`).

Data kept on links (JSON):
  CourseLink.remote_id = class sourcedId; data: school, term_start, term_end, sections
      {section id: class sourcedId}, category_map {group: category sourcedId}
  ItemLink.remote_id = line item sourcedId in the course's class; details_hash = the
      column's hash; data: sync_to_sis, line_items {class: line item sourcedId}, matched
      {class: "ours"|"created"|"title_due"}, result_ids {line item: {student: result
      sourcedId}} for adopted SIS items, category, sis_details (digest of the SIS-side details)
  PersonLink.remote_id = student sourcedId; data.class = the section's class when not the
      course's own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from oauthlib.oauth2.rfc6749.parameters import prepare_token_request

from gradesync.adapters.destinations import oneroster_payloads as payloads
from gradesync.adapters.destinations.http_fast import json_content
from gradesync.adapters.destinations.oneroster_errors import (
    classify,
    imsx_message,
    unknown_object,
)
from gradesync.adapters.destinations.oneroster_rules import (
    classes_of,
    due_date,
    mapped_class,
    rejected,
    selected_item,
)
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.adapters.destinations.tokens import AccessToken
from gradesync.domain.canonical import digest, parse_iso
from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis import ProbeStep
from gradesync.domain.diagnosis.checks import plural
from gradesync.domain.errors import InvalidInput
from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.passback import (
    LINE_ITEM_PREFIX,
    CategoryMatch,
    PassbackRule,
    SisProfile,
    Term,
    capabilities_for,
    category_sourced_id,
    former_owner,
    group_of,
    line_item_owner,
    line_item_sourced_id,
    other_installation,
    others_adopted,
    profile_from_config,
    result_sourced_id,
)
from gradesync.domain.policy import Column, DesiredResult, column_hash
from gradesync.domain.remedies import Reader, Remedy
from gradesync.services.destination import (
    LINE_ITEM_GONE,
    FailureClass,
    ReadBack,
    Receipt,
    RemoteFailure,
    RequestGate,
    ResultTarget,
    ungated,
)

SCOPE_PREFIX = "https://purl.imsglobal.org/spec/or/v1p2/scope/"
SCOPE_READONLY = SCOPE_PREFIX + "gradebook.readonly"
SCOPE_CREATEPUT = SCOPE_PREFIX + "gradebook.createput"
DEFAULT_SCOPES = (SCOPE_READONLY, SCOPE_CREATEPUT)
PAGE = 500
CATEGORY_TTL = 60.0  # seconds a category listing is reused (alignment of a whole run)
DEFAULT_TIMEOUT = 20.0


def gradebook_base(url: str) -> str:
    """Accept the server root or the gradebook base; return the gradebook base."""
    url = url.rstrip("/")
    return url if "/ims/oneroster/" in url else url + payloads.GRADEBOOK_PATH


class OneRosterClient:
    """One SIS connection. Safe to call concurrently (async, shared connection pool)."""

    def __init__(self, destination: Destination, context: DestinationContext) -> None:
        config = destination.config
        base = config.get("base_url")
        if not isinstance(base, str) or not base.startswith(("http://", "https://")):
            raise InvalidInput.one("config.base_url", "url", "base_url must be an http(s) URL.")
        self.destination = destination
        self.base = gradebook_base(base)
        root = self.base.split("/ims/oneroster/")[0]
        self.token_url = str(config.get("token_url") or root + "/ims/oneroster/oauth2/token")
        self.scopes: tuple[str, ...] = tuple(config.get("scopes") or DEFAULT_SCOPES)
        self.profile: SisProfile = profile_from_config(config)
        self.client_id = str(destination.secret.get("client_id") or config.get("client_id") or "")
        self._secret = str(destination.secret.get("client_secret") or "")
        self.timeout = float(config.get("timeout_seconds", DEFAULT_TIMEOUT))
        self._http = context.http
        self._tokens = context.tokens
        self._installation = context.installation
        self._connection_ids = context.connection_ids
        # the credentials are part of the key: a client built from changed ones (a secret
        # rotated, another client id or token URL) gets its own token at once, not the one
        # the old credentials got until it expires (the secret only as its digest)
        credentials = hashlib.sha256(
            "\n".join((self.token_url, self.client_id, self._secret)).encode()
        ).hexdigest()
        self._token_key = (
            "oneroster",
            destination.tenant_id,
            destination.id,
            self.scopes,
            credentials,
        )
        self._categories: tuple[float, list[dict[str, Any]]] | None = None
        self._category_lock = asyncio.Lock()

    # --- protocol --------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return capabilities_for(self.profile)

    async def ensure_course(self, course: Course, link: CourseLink | None) -> CourseLink:
        return mapped_class(self.destination, course, link)

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate = ungated,
    ) -> ItemLink:
        link = selected_item(course, column, link)
        # each request below (category listing, look-ups, writes) within the caller's limits
        gate = each_request
        term = Term.from_link_data(course.data)
        due = self._due_date(column, term)
        category_id = await self.resolve_category(course, column.category, gate=gate)
        school = str(course.data["school"])
        classes = self.classes_of(course)
        assigned = payloads.assign_date(due, term.start)
        # details_hash is the column's own hash (the engine compares it to skip this call);
        # what the SIS side adds (category, classes, school, dates) has its own digest.
        details = column_hash(column)
        extras = digest(
            {
                "category": category_id,
                "school": school,
                "classes": classes,
                "due": payloads.zulu(due),
                "assign": payloads.zulu(assigned),
            }
        )
        line_items: dict[str, str] = dict(link.data.get("line_items") or {})
        matched: dict[str, str] = dict(link.data.get("matched") or {})
        result_ids: dict[str, dict[str, str]] = dict(link.data.get("result_ids") or {})
        owner = line_item_owner(self._installation, link.tenant_id, column.activity_id)
        new: set[str] = set()
        for class_id in classes:
            recorded = line_items.get(class_id)
            if recorded is not None and not (
                force and others_adopted(recorded, matched.get(class_id))
            ):
                continue
            # A remaster of an activity that shares another course's item (adopted before
            # gradesync refused to) gives it its own, and resends its results there.
            result_ids.pop(recorded or "", None)
            ours = line_item_sourced_id(
                link.tenant_id, link.destination_id, column.activity_id, class_id
            )
            found, how = await self._find_line_item(
                class_id, ours, column.title, due, owner, course.course_id, gate
            )
            line_items[class_id], matched[class_id] = found, how
            if how == "title_due":
                result_ids[found] = await self._result_ids(class_id, found, gate)
            new.add(class_id)
        if force or new or details != link.details_hash or extras != link.data.get("sis_details"):
            now = datetime.now(UTC)
            for class_id in classes:
                body = payloads.line_item(
                    self.base,
                    sourced_id=line_items[class_id],
                    column=column,
                    due=due,
                    assigned=assigned,
                    class_id=class_id,
                    school_id=school,
                    category_id=category_id,
                    modified=now,
                    owner=owner,
                )
                await self._put(
                    f"/lineItems/{quote(line_items[class_id], safe='')}", body, "lineItem", gate
                )
        return replace(
            link,
            remote_id=line_items[course.remote_id],
            details_hash=details,
            data={
                **link.data,
                "line_items": line_items,
                "matched": matched,
                "result_ids": result_ids,
                "category": category_id,
                "sis_details": extras,
            },
        )

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        class_id = str(target.person.data.get("class") or target.course.remote_id)
        line_items = target.item.data.get("line_items") or {}
        line_item_id = str(line_items.get(class_id) or target.item.remote_id)
        student = target.person.remote_id
        adopted = (target.item.data.get("result_ids") or {}).get(line_item_id) or {}
        sourced_id = str(adopted.get(student) or result_sourced_id(line_item_id, student))
        body = payloads.result(
            self.base,
            sourced_id=sourced_id,
            line_item_id=line_item_id,
            student_id=student,
            class_id=class_id,
            desired=result,
            modified=timestamp,
        )
        path = f"/results/{quote(sourced_id, safe='')}"
        try:
            response = await self._put(path, body, "result", each_request)
        except RemoteFailure as failure:
            if failure.failure is not FailureClass.REJECTED:
                raise
            raise await self._gone_or(failure, line_item_id, each_request) from None
        return Receipt(payload=body, status=response.status_code, message=None)

    async def _gone_or(
        self, failure: RemoteFailure, line_item_id: str, gate: RequestGate
    ) -> RemoteFailure:
        """A refused result whose line item the SIS no longer has (restored from an older
        state, or deleted there) is `LINE_ITEM_GONE`, whatever words and status the SIS
        refused it with: the delivery marks the column to be written again (a PUT creates
        the line item under its sourcedId), and the result is tried again after it, a few
        times only (`per_key`: the SIS works; its breaker is not the column's to open).
        Gone only when the SIS says so in OneRoster's words (`unknown_object`): a SIS that
        serves no GET of one line item answers 404 to every one, and would turn each real
        refusal into a rewrite. Asked within the send's `gate` (a rate token of its own); a
        SIS that asks to slow down or is unwell raises that (`_request`); any other answer
        keeps `failure`."""
        response = await self._request(
            "GET",
            f"/lineItems/{quote(line_item_id, safe='')}",
            gate=gate,
            what=f"GET lineItem {line_item_id}",
        )
        if not unknown_object(response):
            return failure
        return RemoteFailure(
            FailureClass.RETRY_LATER,
            LINE_ITEM_GONE,
            failure.message,
            status=failure.status,
            remedy=LINE_ITEM_GONE_REMEDY,
            per_key=True,
        )

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate = ungated
    ) -> Sequence[ReadBack]:
        out: list[ReadBack] = []
        line_items = item.data.get("line_items") or {course.remote_id: item.remote_id}
        for class_id, line_item_id in line_items.items():
            path = (
                f"/classes/{quote(class_id, safe='')}/lineItems/"
                f"{quote(line_item_id, safe='')}/results"
            )
            for r in await self._list(path, "results", gate=each_request):
                if r.get("status") == "tobedeleted":
                    continue
                modified = r.get("dateLastModified")
                out.append(
                    ReadBack(
                        remote_person_id=r["student"]["sourcedId"],
                        score_given=r.get("score"),
                        score_maximum=None,
                        comment=r.get("comment"),
                        timestamp=parse_iso(modified.replace("Z", "+00:00")) if modified else None,
                    )
                )
        return out

    async def check(self) -> Sequence[ProbeStep]:
        steps: list[ProbeStep] = []
        try:
            token = await self._token()
        except RemoteFailure as failure:
            return [self._failed_step("token", failure)]
        steps.append(
            ProbeStep(
                "token",
                True,
                f"token from {self.token_url} ({plural(len(token.scopes), 'scope')})",
                code="token_granted",
            )
        )
        missing = [s for s in (SCOPE_READONLY, SCOPE_CREATEPUT) if s not in token.scopes]
        steps.append(
            ProbeStep(
                "scopes",
                not missing,
                "granted: " + ", ".join(sorted(s.rsplit("/", 1)[-1] for s in token.scopes)),
                f"Grant {', '.join(missing)} to the client in the SIS." if missing else None,
                code="scopes_missing" if missing else "scopes_granted",
            )
        )
        try:
            categories = await self.categories(refresh=True)
        except RemoteFailure as failure:
            steps.append(self._failed_step("categories", failure))
        else:
            titles = ", ".join(c["title"] for c in categories[:10]) or "none"
            steps.append(
                ProbeStep(
                    "categories",
                    True,
                    f"{plural(len(categories), 'category', 'categories')}: {titles}",
                    code="categories_listed",
                )
            )
        return steps

    def _failed_step(self, name: str, failure: RemoteFailure) -> ProbeStep:
        """A step the SIS's refusal failed: its code, and its remedy held as a code where the
        refusal holds one (about this connection), else in the adapter's words."""
        fix = failure.fix
        if fix is not None and fix.destination is None:
            fix = replace(fix, destination=self.destination.id)
        return ProbeStep(
            name,
            False,
            failure.message,
            failure.remedy_for(Reader.CLI, self.destination.id),
            code=failure.code,
            fix=fix,
        )

    async def aclose(self) -> None:
        """The HTTP pool belongs to the context; nothing of ours to close."""

    # --- public helpers used by the SIS services -------------------------------------------

    def classes_of(self, course: CourseLink) -> list[str]:
        return classes_of(course)

    async def categories(
        self, *, refresh: bool = False, gate: RequestGate = ungated
    ) -> list[dict[str, Any]]:
        """Active SIS categories (cached briefly: one listing aligns a whole run); each page
        of the listing within `gate`."""
        async with self._category_lock:
            cached = self._categories
            if cached is not None and not refresh and cached[0] > time.monotonic():
                return cached[1]
            found = [
                c
                for c in await self._list("/categories", "categories", gate=gate)
                if c.get("status") != "tobedeleted"
            ]
            self._categories = (time.monotonic() + CATEGORY_TTL, found)
            return found

    async def class_known(self, class_id: str) -> bool:
        """Whether the SIS has the class: one of its line items asked for, which the standard
        answers 404 for a class it cannot locate (a RemoteFailure when it cannot be asked)."""
        path = f"/classes/{quote(class_id, safe='')}/lineItems"
        response = await self._request("GET", path, params={"limit": "1"}, what=f"GET {path}")
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise classify(response, f"GET {path}")

    async def resolve_category(
        self,
        course: CourseLink,
        group: str | None,
        *,
        create: bool = True,
        gate: RequestGate = ungated,
    ) -> str:
        """The SIS category sourcedId for an activity group, or REJECTED naming the
        categories the SIS has; each request within `gate`."""
        group = group_of(group, self.profile.default_category)
        mapping: dict[str, str] = {
            **(self.destination.config.get("category_map") or {}),
            **(course.data.get("category_map") or {}),
        }
        cats = await self.categories(gate=gate)
        by_id = {c["sourcedId"]: c for c in cats}
        if group is not None and group in mapping:
            wanted = mapping[group]
            if wanted in by_id:
                return wanted
            cats = await self.categories(refresh=True, gate=gate)
            if wanted in {c["sourcedId"] for c in cats}:
                return wanted
            raise self._missing_category(
                group, cats, f"aligned to {wanted!r}, which the SIS does not have"
            )
        if group is None:
            raise self._missing_category(
                None, cats, "the activity has no group and no default_category is set"
            )
        if self.profile.category_match is CategoryMatch.ID:
            if group in by_id:
                return group
            matches = (
                [group]
                if group in {c["sourcedId"] for c in await self.categories(refresh=True, gate=gate)}
                else []
            )
        else:
            matches = [c["sourcedId"] for c in cats if c.get("title") == group]
            if not matches:
                cats = await self.categories(refresh=True, gate=gate)
                matches = [c["sourcedId"] for c in cats if c.get("title") == group]
            if len(matches) > 1:
                raise rejected(
                    PassbackRule.CATEGORY_MISSING,
                    f"Activity group {group!r} matches {len(matches)} SIS categories by name "
                    f"({', '.join(matches)}); align it by id.",
                    fix=Remedy(
                        PassbackRule.CATEGORY_MISSING.value, self.destination.id, group=group
                    ),
                )
        if matches:
            return matches[0]
        if self.profile.may_create_categories:
            sourced_id = category_sourced_id(self.destination.tenant_id, self.destination.id, group)
            if not create:
                return sourced_id  # a check: it would be created on the first send
            await self._put(
                f"/categories/{quote(sourced_id, safe='')}",
                payloads.category(sourced_id, group, datetime.now(UTC)),
                "category",
                gate,
            )
            self._categories = None
            return sourced_id
        raise self._missing_category(
            group, cats, f"no SIS category matches it by {self.profile.category_match.value}"
        )

    def _missing_category(
        self, group: str | None, cats: list[dict[str, Any]], why: str
    ) -> RemoteFailure:
        listing = "; ".join(f"{c.get('title')!r} (id {c['sourcedId']})" for c in cats) or "none"
        name = repr(group) if group is not None else "(none)"
        return rejected(
            PassbackRule.CATEGORY_MISSING,
            f"Activity group {name}: {why}. The SIS has these categories: {listing}.",
            fix=Remedy(PassbackRule.CATEGORY_MISSING.value, self.destination.id, group=group),
        )

    async def line_items_of(self, class_id: str) -> list[dict[str, Any]]:
        return await self._list(f"/classes/{quote(class_id, safe='')}/lineItems", "lineItems")

    # --- internals -------------------------------------------------------------------------

    def _due_date(self, column: Column, term: Term) -> datetime:
        return due_date(self.profile, column, term)

    async def _find_line_item(
        self,
        class_id: str,
        ours: str,
        title: str,
        due: datetime,
        owner: dict[str, str],
        course_id: str,
        gate: RequestGate,
    ) -> tuple[str, str]:
        """Match before create: our sourcedId (refused, OTHER_INSTALLATION, when the item
        names another installation: one whose tenant, connection and activity ids are the same
        gives the same sourcedId), then an item of the class with the title that
        gradesync wrote for this activity under another connection id (its metadata names
        this installation, tenant and activity: a connection added again), then the class's
        item with the same title and due date. Returns (sourcedId, how).

        An item whose metadata names the tenant and activity but no installation (written
        before gradesync named it) may be another installation's with the same tenant and
        activity ids: it is taken only when its sourcedId is the one this activity's item
        has in this class under a connection id the tenant has or had here.

        Any other item under gradesync's own prefix belongs to another course (of another
        tenant, or another installation) passing back to the same class: adopting it would
        have the two overwrite each other's results, so only items the SIS (or a person)
        made are adopted by title and due date. Each request within `gate`."""
        response = await self._request(
            "GET", f"/lineItems/{quote(ours, safe='')}", gate=gate, what=f"GET lineItem {ours}"
        )
        if response.status_code == 200:
            elsewhere = other_installation(_line_item_of(response), owner)
            if elsewhere is not None:
                raise self._others_line_item(ours, class_id, elsewhere, owner, course_id)
            return ours, "ours"
        if response.status_code != 404:
            raise classify(response, f"GET lineItem {ours}")
        escaped = title.replace("'", "''")
        candidates = await self._list(
            f"/classes/{quote(class_id, safe='')}/lineItems",
            "lineItems",
            gate=gate,
            filter=f"title='{escaped}'",
        )
        live = [
            i for i in candidates if i.get("status") != "tobedeleted" and i.get("title") == title
        ]

        def owned_by(item: dict[str, Any], whom: dict[str, str]) -> bool:
            metadata = item.get("metadata")
            return isinstance(metadata, dict) and metadata.get("gradesync") == whom

        for item in live:
            if owned_by(item, owner):
                return str(item["sourcedId"]), "ours"
        former = [i for i in live if owned_by(i, former_owner(owner))]
        if former and self._connection_ids is not None:
            tenant, activity = owner["tenant"], owner["activity"]
            known = await asyncio.to_thread(self._connection_ids, tenant)
            mine = {line_item_sourced_id(tenant, cid, activity, class_id) for cid in known}
            for item in former:
                if str(item.get("sourcedId")) in mine:
                    return str(item["sourcedId"]), "ours"
        for item in live:
            if str(item.get("sourcedId", "")).startswith(LINE_ITEM_PREFIX + "-"):
                continue
            try:
                theirs = parse_iso(str(item.get("dueDate", "")).replace("Z", "+00:00"))
            except ValueError:
                continue
            if theirs == due:
                return str(item["sourcedId"]), "title_due"
        return ours, "created"

    def _others_line_item(
        self, ours: str, class_id: str, theirs: str, owner: dict[str, str], course_id: str
    ) -> RemoteFailure:
        mine = owner["installation"] or "(no base URL)"
        return rejected(
            PassbackRule.OTHER_INSTALLATION,
            f"The SIS line item {ours!r} of class {class_id!r} is another gradesync "
            f"installation's ({theirs}), which passes back an activity with the same tenant, "
            f"SIS connection and activity ids ({owner['tenant']!r}, {self.destination.id!r}, "
            f"{owner['activity']!r}) to this class; this installation ({mine}) does not write "
            "to it, so the grade is not sent.",
            fix=Remedy(
                PassbackRule.OTHER_INSTALLATION.value,
                self.destination.id,
                course_id,
                owner["activity"],
            ),
        )

    async def _result_ids(
        self, class_id: str, line_item_id: str, gate: RequestGate
    ) -> dict[str, str]:
        """An adopted SIS item may hold results already: reuse their sourcedIds so a student
        never gets a second result for the same item."""
        path = (
            f"/classes/{quote(class_id, safe='')}/lineItems/{quote(line_item_id, safe='')}/results"
        )
        return {
            r["student"]["sourcedId"]: r["sourcedId"]
            for r in await self._list(path, "results", gate=gate)
            if r.get("status") != "tobedeleted"
        }

    async def _list(
        self, path: str, key: str, *, gate: RequestGate = ungated, **params: str
    ) -> list[dict[str, Any]]:
        """Every page of a listing, each page's request within `gate`."""
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            response = await self._request(
                "GET",
                path,
                params={**params, "limit": str(PAGE), "offset": str(offset)},
                gate=gate,
            )
            if response.status_code != 200:
                raise classify(response, f"GET {path}")
            page = response.json().get(key) or []
            out.extend(page)
            total = response.headers.get("x-total-count")
            offset += len(page)
            if (
                not page
                or (total is not None and offset >= int(total))
                or (total is None and len(page) < PAGE)
            ):
                return out

    async def _put(
        self, path: str, body: dict[str, Any], what: str, gate: RequestGate = ungated
    ) -> httpx.Response:
        said = f"PUT {what} {path.rsplit('/', 1)[-1]}"
        response = await self._request(
            "PUT", path, json_body=body, write=True, gate=gate, what=said
        )
        if response.status_code not in (200, 201, 204):
            raise classify(response, said)
        return response

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        write: bool = False,
        gate: RequestGate = ungated,
        what: str | None = None,
    ) -> httpx.Response:
        """One request (two when the token had expired: each within `gate`). An answer that
        says the SIS is unwell or asks to slow down (a 5xx, a 429) is raised inside the gate,
        classified with `what` (the caller's words for it), so a request that is the
        breaker's probe is recorded as failed, not as answered; any other answer is the
        caller's to judge."""
        url = self.base + path
        # Encoded here as httpx's `json=` would, so that a PUT takes the shared client's fast
        # path (`http_pool`), which sends bytes only.
        content = None if json_body is None else json_content(json_body)
        for attempt in (1, 2):
            token = await self._token()
            if write and SCOPE_CREATEPUT not in token.scopes:
                raise RemoteFailure(
                    FailureClass.MISCONFIGURED,
                    "no_grade_scope",
                    f"The SIS granted {sorted(token.scopes)}, not {SCOPE_CREATEPUT}.",
                    remedy="Grant the client the gradebook.createput scope in the SIS.",
                )
            headers = {"Authorization": f"Bearer {token.value}", "Accept": "application/json"}
            if content is not None:
                headers["Content-Type"] = "application/json"
            async with gate():
                try:
                    response = await self._http.request(
                        method,
                        url,
                        params=params,
                        content=content,
                        headers=headers,
                        timeout=self.timeout,
                    )
                except httpx.TimeoutException as exc:
                    raise RemoteFailure(
                        FailureClass.RETRY_LATER,
                        "timeout",
                        f"{method} {path}: timed out ({exc!r})",
                    ) from exc
                except httpx.TransportError as exc:
                    raise RemoteFailure(
                        FailureClass.RETRY_LATER,
                        "connection_failed",
                        f"{method} {path}: {_said(exc)}",
                        remedy=UNREACHABLE,
                    ) from exc
                if response.status_code >= 400 and response.status_code != 401:
                    failure = classify(response, what or f"{method} {path}")
                    if failure.failure in (FailureClass.SLOW_DOWN, FailureClass.RETRY_LATER):
                        raise failure
            if response.status_code == 401 and attempt == 1:
                self._tokens.invalidate(self._token_key, token.value)  # expired: one new token
                continue
            return response
        return response

    async def _token(self) -> AccessToken:
        return await self._tokens.get(self._token_key, self._fetch_token)

    async def _fetch_token(self) -> tuple[str, float, frozenset[str]]:
        if not self.client_id or not self._secret:
            raise RemoteFailure(
                FailureClass.MISCONFIGURED,
                "bad_credentials",
                "The SIS connection has no client id or client secret.",
                fix=Remedy("sis_credentials", self.destination.id),
            )
        # RFC 6749 2.3.1: id and secret are form-encoded before Basic encoding.
        pair = f"{quote(self.client_id, safe='')}:{quote(self._secret, safe='')}"
        headers = {
            "Authorization": "Basic " + base64.b64encode(pair.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        body = prepare_token_request("client_credentials", scope=list(self.scopes))
        try:
            response = await self._http.post(
                self.token_url, content=body, headers=headers, timeout=self.timeout
            )
        except httpx.TimeoutException as exc:
            raise RemoteFailure(
                FailureClass.RETRY_LATER, "timeout", f"token: timed out ({exc!r})"
            ) from exc
        except httpx.TransportError as exc:
            raise RemoteFailure(
                FailureClass.RETRY_LATER,
                "connection_failed",
                f"token: {_said(exc)}",
                remedy=UNREACHABLE,
            ) from exc
        if response.status_code != 200:
            failure = classify(response, "token")
            if (
                response.status_code in (400, 401, 403)
                and failure.failure is not FailureClass.SLOW_DOWN
            ):
                scope_problem = "scope" in imsx_message(response).lower()
                raise RemoteFailure(
                    FailureClass.MISCONFIGURED,
                    "no_grade_scope" if scope_problem else "bad_credentials",
                    failure.message,
                    status=response.status_code,
                    remedy="Check the scopes granted to the client in the SIS."
                    if scope_problem
                    else None,
                    fix=None if scope_problem else Remedy("sis_credentials", self.destination.id),
                )
            raise failure
        try:
            data = response.json()
            value = str(data["access_token"])
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteFailure(
                FailureClass.RETRY_LATER,
                "bad_token_response",
                "token: no access_token in the answer",
            ) from exc
        granted = str(data.get("scope") or " ".join(self.scopes)).split()
        return value, float(data.get("expires_in") or 3600), frozenset(granted)


def build(destination: Destination, context: DestinationContext) -> OneRosterClient:
    return OneRosterClient(destination, context)


LINE_ITEM_GONE_REMEDY = (
    "The SIS no longer has the line item (restored from an older state, or deleted there): "
    "gradesync writes it again with the next send of its grades; if the SIS still refuses "
    "it, remaster the course's grades."
)

UNREACHABLE = (
    "Check the SIS's base and token URLs (the host name and port) and that the SIS is up; "
    "gradesync retries a send by itself."
)


def _said(exc: Exception) -> str:
    """What a transport error says, in its own words (its repr is Python's)."""
    return str(exc) or type(exc).__name__


def _line_item_of(response: httpx.Response) -> dict[str, Any]:
    """The line item a GET of one returns (its `lineItem`), or nothing when the SIS answers
    with something else (then it names no installation, and is taken as before)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    item = body.get("lineItem") if isinstance(body, dict) else None
    return item if isinstance(item, dict) else {}
