"""The subjects of the destination contract: the strict double (in memory and over HTTP) and
every real adapter, each against its remote (the double's gradebook; the sandbox LMS or SIS
over real HTTP), behind one small interface the contract's tests are written against.

Each subject knows how to read what its remote holds without going through the adapter (the
sandbox's own state), so a read-back through the adapter is checked, never trusted.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.registry import DestinationContext, build_client
from gradesync.domain.model import CourseLink, Destination, DestinationKind, ItemLink, PersonLink
from gradesync.domain.policy import Column
from gradesync.lti.claims import AGS_SCOPES
from gradesync.lti.registration import validate_platform
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import RunningSandbox, running_sandbox
from gradesync.services.destination import DestinationClient
from gradesync.services.lti.keys import ToolKeyStore
from gradesync.testing import DoubleFactory, http_adapter
from gradesync.testing.double import rate_limited, server_error
from gradesync.testing.http_double import GradebookState, running_gradebook

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DUE = datetime(2025, 3, 14, 23, 59, tzinfo=UTC)  # inside the SIS term
Fault = Literal["server_error", "rate_limited"]
_ids = itertools.count(1)


def unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


@dataclass
class Subject(ABC):
    """One destination client and the course it sends to: two enrolled learners and one
    person the remote does not know."""

    client: DestinationClient
    course: CourseLink
    learners: list[PersonLink]
    stranger: PersonLink
    category: str | None = None

    def column(self, title: str = "Quiz 1", activity_id: str = "a1") -> Column:
        return Column(
            title=title,
            score_maximum=10.0,
            due_at=DUE,
            category=self.category,
            activity_id=activity_id,
        )

    def first_link(self, activity_id: str) -> ItemLink | None:
        """The link the engine holds before the column is first ensured."""
        return None

    @abstractmethod
    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        """The fraction of the column's points the remote holds for `person` (None: none)."""

    @abstractmethod
    def columns(self) -> int:
        """How many columns the remote holds for the course."""

    @abstractmethod
    def fail_next(self, fault: Fault, retry_after: int = 7) -> None:
        """The next score request fails: a 502, or a 429 with Retry-After."""

    @abstractmethod
    def clear_faults(self) -> None: ...


class DoubleSubject(Subject):
    def __init__(self) -> None:
        factory = DoubleFactory()
        self.remote = factory.remote("lms")
        self.remote.enrolled = {"sub-1", "sub-2"}
        destination = Destination("t1", "lms", DestinationKind.LTI13_AGS, "Double")
        super().__init__(
            client=factory(destination),
            course=CourseLink("t1", "lms", "c1", "https://lms/courses/1"),
            learners=[PersonLink("t1", "lms", f"p{i}", f"sub-{i}") for i in (1, 2)],
            stranger=PersonLink("t1", "lms", "px", "sub-x"),
        )

    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        stored = self.remote.results.get((item.remote_id, person.remote_id))
        if stored is None or stored.score_given is None:
            return None
        return stored.score_given / stored.score_maximum

    def columns(self) -> int:
        return len(self.remote.columns)

    def fail_next(self, fault: Fault, retry_after: int = 7) -> None:
        failure = server_error() if fault == "server_error" else rate_limited(retry_after)
        self.remote.fail_next(1, failure)

    def clear_faults(self) -> None:
        self.remote.failures.clear()


class HttpDoubleSubject(Subject):
    """The double over HTTP (what worker processes of the engine's tests send to)."""

    def __init__(self, base_url: str, gradebook: GradebookState, context: DestinationContext):
        self.gradebook = gradebook
        gradebook.enrolled = {"sub-1", "sub-2"}
        destination = Destination(
            "t1", "lms", DestinationKind.LTI13_AGS, "HTTP double", config={"base_url": base_url}
        )
        super().__init__(
            client=http_adapter.build(destination, context),
            course=CourseLink("t1", "lms", "c1", "course-1"),
            learners=[PersonLink("t1", "lms", f"p{i}", f"sub-{i}") for i in (1, 2)],
            stranger=PersonLink("t1", "lms", "px", "sub-x"),
        )

    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        key = (item.remote_id, person.remote_id)
        given = self.gradebook.scores.get(key, (None, None))[0]
        maximum = self.gradebook.maximums.get(key)
        return None if given is None or not maximum else given / maximum

    def columns(self) -> int:
        return 0  # it keeps scores per column id, it has no columns to make

    def fail_next(self, fault: Fault, retry_after: int = 7) -> None:
        fail = (502, None) if fault == "server_error" else (429, retry_after)
        self.gradebook.faults.append(fail)

    def clear_faults(self) -> None:
        self.gradebook.faults.clear()


class _SandboxSubject(Subject):
    sandbox: RunningSandbox
    fault_group: str

    def fail_next(self, fault: Fault, retry_after: int = 7) -> None:
        outcome = "error" if fault == "server_error" else "throttle"
        self.sandbox.admin.set_faults(
            {
                self.fault_group: {
                    "script": [outcome],
                    "error_status": 502,
                    "retry_after": retry_after,
                    "rate_limit_response": "429",
                }
            }
        )

    def clear_faults(self) -> None:
        self.sandbox.admin.clear_faults()


class AgsSubject(_SandboxSubject):
    """LTI 1.3 AGS against the sandbox LMS: the tool registered with its public key."""

    fault_group = "scores"

    def __init__(self, lms: RunningSandbox, keys: ToolKeyStore, context: DestinationContext):
        self.sandbox = lms
        client_id, deployment_id = unique("client-"), unique("dep-")
        (public,) = keys.jwks()["keys"]
        lms.admin.register_tool(
            client_id=client_id,
            deployment_id=deployment_id,
            public_key=public,
            scopes=list(AGS_SCOPES),
        )
        cfg = lms.admin.config()
        platform = validate_platform(
            {
                "id": "lms",
                "issuer": cfg["issuer"],
                "client_id": client_id,
                "deployment_ids": [deployment_id],
                "auth_login_url": cfg["authorization_url"],
                "auth_token_url": cfg["token_url"],
                "key_set_url": cfg["jwks_url"],
            }
        ).destination("t1")
        self.ctx = unique("ctx-")
        people = [unique("learner-"), unique("learner-")]
        lms.admin.add_course(id=self.ctx, title=self.ctx, learners=people)
        url = f"{lms.base_url}/api/lti/courses/{self.ctx}/line_items"
        super().__init__(
            client=build_client(platform, context),
            course=CourseLink("t1", "lms", "c1", url),
            learners=[PersonLink("t1", "lms", f"p{i}", sub) for i, sub in enumerate(people)],
            stranger=PersonLink("t1", "lms", "px", unique("stranger-")),
        )

    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        item_id = int(item.remote_id.split("?")[0].rsplit("/", 1)[1])
        line_item = self.sandbox.state.line_items[item_id]
        record = line_item.scores.get(person.remote_id)
        if record is None or record.score_given is None:
            return None
        return record.score_given / (record.score_maximum or line_item.score_maximum)

    def columns(self) -> int:
        return len(self.sandbox.state.courses[self.ctx].line_items)


class Lti11Subject(_SandboxSubject):
    """LTI 1.1 Outcomes against the sandbox LMS: the learners launched the link, which made
    the column and gave each a result sourcedid."""

    fault_group = "lti11"
    tool_url = "https://tool.example.com/lti11/launch"
    link_id = "rl-1"
    secret = "a-long-shared-secret-0123456789"

    def __init__(self, lms: RunningSandbox, context: DestinationContext) -> None:
        self.sandbox = lms
        key = unique("consumer-")
        lms.admin.add_lti11_consumer(key, self.secret)
        people = [unique("learner-"), unique("learner-")]
        for sub in people:
            lms.admin.add_user(sub=sub, name=sub.title(), email=f"{sub}@example.edu")
        self.ctx = unique("course-")
        lms.admin.add_course(id=self.ctx, title=self.ctx, learners=people)
        forms = [
            lms.admin.lti11_launch(
                consumer_key=key,
                launch_url=self.tool_url,
                course=self.ctx,
                user=sub,
                resource_link_id=self.link_id,
                title="Quiz 1",
                score_maximum=10,
            )["params"]
            for sub in people
        ]
        self.url = forms[0]["lis_outcome_service_url"]
        self.sourcedids = {p["user_id"]: p["lis_result_sourcedid"] for p in forms}
        destination = Destination(
            "t1",
            "lms11",
            DestinationKind.LTI11_OUTCOMES,
            "Sandbox LMS",
            config={"consumer_key": key, "allowed_hosts": ["127.0.0.1"]},
            secret={"consumer_secret": self.secret},
        )
        super().__init__(
            client=build_client(destination, context),
            course=CourseLink("t1", "lms11", "c1", self.ctx, {"outcome_service_url": self.url}),
            learners=[self._person(f"p{i}", sub) for i, sub in enumerate(people)],
            stranger=self._person("px", unique("stranger-"), "no-such-result"),
        )

    def _person(self, person_id: str, sub: str, sourcedid: str | None = None) -> PersonLink:
        sid = sourcedid or self.sourcedids[sub]
        data = {"sourcedids": {"a1": sid}, "outcome_urls": {"a1": self.url}}
        return PersonLink("t1", "lms11", person_id, sub, "c1", data)

    def first_link(self, activity_id: str) -> ItemLink:
        data = {"sourcedids": self.sourcedids, "outcome_service_url": self.url}
        return ItemLink("t1", "lms11", activity_id, self.link_id, data=data)

    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        for line_item in self.sandbox.state.courses[self.ctx].line_items.values():
            if line_item.resource_link_id == item.remote_id:
                record = line_item.scores.get(person.remote_id)
                if record is None or record.score_given is None:
                    return None
                return record.score_given / (record.score_maximum or line_item.score_maximum)
        raise AssertionError(f"no column for resource link {item.remote_id!r}")

    def columns(self) -> int:
        return len(self.sandbox.state.courses[self.ctx].line_items)


SIS_SEED: dict[str, Any] = {
    "clients": [{"client_id": "gradesync", "client_secret": "s3cret-value"}],
    "schools": ["sch-1"],
    "terms": [{"sourcedId": "term-1", "start": "2025-01-06", "end": "2025-06-20"}],
    "students": [{"sourcedId": "stu-1"}, {"sourcedId": "stu-2"}, {"sourcedId": "stu-3"}],
    "classes": [
        {"sourcedId": "cls-1", "school": "sch-1", "term": "term-1", "students": ["stu-1", "stu-2"]},
        {"sourcedId": "cls-2", "school": "sch-1", "term": "term-1", "students": ["stu-3"]},
    ],
    "categories": [{"sourcedId": "cat-quiz", "title": "Quizzes", "classes": ["cls-1"]}],
}


class OneRosterSubject(_SandboxSubject):
    """OneRoster 1.2 REST against the sandbox SIS: class cls-1 with two students; stu-3 is
    in another class."""

    fault_group = "oneroster"

    def __init__(self, sis: RunningSandbox, context: DestinationContext) -> None:
        self.sandbox = sis
        destination = Destination(
            "t1",
            "sis",
            DestinationKind.ONEROSTER_REST,
            "Sandbox SIS",
            config={"base_url": sis.base_url, "client_id": "gradesync", "category_match": "id"},
            secret={"client_secret": "s3cret-value"},
        )
        term = {"school": "sch-1", "term_start": "2025-01-06", "term_end": "2025-06-20"}
        super().__init__(
            client=build_client(destination, context),
            course=CourseLink("t1", "sis", "c1", "cls-1", term),
            learners=[PersonLink("t1", "sis", f"p{i}", f"stu-{i}") for i in (1, 2)],
            stranger=PersonLink("t1", "sis", "px", "stu-3"),
            category="cat-quiz",
        )

    def first_link(self, activity_id: str) -> ItemLink:
        # the administrator ticked "sync to SIS" for the activity
        return ItemLink("t1", "sis", activity_id, "", data={"sync_to_sis": True})

    def _line_items(self) -> dict[str, dict[str, Any]]:
        return {
            o.data["sourcedId"]: o.data
            for o in self.sandbox.state.sis_line_items.values()
            if o.data["class"]["sourcedId"] == "cls-1"
        }

    def held(self, item: ItemLink, person: PersonLink) -> float | None:
        maximum = float(self._line_items()[item.remote_id]["resultValueMax"])
        for result in self.sandbox.state.sis_results.values():
            data = result.data
            if (
                data["lineItem"]["sourcedId"] == item.remote_id
                and data["student"]["sourcedId"] == person.remote_id
            ):
                score = data.get("score")
                return None if score is None else float(score) / maximum
        return None

    def columns(self) -> int:
        return len(self._line_items())


KINDS = ["double", "http_double", "lti13_ags", "lti11_outcomes", "oneroster_rest"]


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    """A fresh sandbox LMS and SIS for each test: what one test leaves is not another's."""
    with running_sandbox(SandboxConfig.model_validate({"seed": {"sis": SIS_SEED}})) as sb:
        yield sb


@pytest.fixture(params=KINDS)
async def subject(request: pytest.FixtureRequest) -> AsyncIterator[Subject]:
    if request.param == "double":
        yield DoubleSubject()
        return
    if request.param == "http_double":
        with running_gradebook() as (base_url, gradebook):
            async with httpx.AsyncClient() as http:
                yield HttpDoubleSubject(base_url, gradebook, DestinationContext(http=http))
        return
    sandbox: RunningSandbox = request.getfixturevalue("sandbox")
    async with httpx.AsyncClient() as http:
        if request.param == "lti13_ags":
            db: Database = request.getfixturevalue("sqlite_db")
            keys = ToolKeyStore(db.uow)
            context = DestinationContext(http=http, tool_keys=keys)
            subject: Subject = AgsSubject(sandbox, keys, context)
        elif request.param == "lti11_outcomes":
            subject = Lti11Subject(sandbox, DestinationContext(http=http))
        else:
            subject = OneRosterSubject(sandbox, DestinationContext(http=http))
        yield subject
        await subject.client.aclose()


def later(seconds: int) -> datetime:
    """A score timestamp `seconds` after the first."""
    return T0 + timedelta(seconds=seconds)
