"""A grade kept in the gradebook says the score it holds on the activity's scale, wherever it
is held: LTI 1.1 Outcomes holds a fraction of 1 and a SIS result no maximum of its own, and
both read as "8 / 10" of a 10-point activity, as an LTI 1.3 gradebook's does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.model import (
    CourseLink,
    DestinationKind,
    ItemLink,
    RunScope,
    ScoreForm,
    Trigger,
)
from gradesync.domain.policy import DesiredResult
from gradesync.services.clock import Clock, SystemClock
from gradesync.services.destination import ReadBack, Receipt, RequestGate, ResultTarget, ungated
from gradesync.services.engine_config import EngineSettings
from gradesync.services.runs import request_run
from gradesync.services.worker import Engine
from gradesync.testing import DoubleFactory, add_destination
from gradesync.testing.double import DoubleClient
from tests.support.api import ROSTER, ApiEnv, Caller, attempt
from tests.support.school import kept_at, school

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SENT = {
    "lms11": {"operation": "replaceResult", "score": "0.8", "sourcedid": "s-p1"},
    "sis": {"result": {"sourcedId": "r-p1", "score": 8, "scoreStatus": "fully graded"}},
}
KINDS = {"lms11": DestinationKind.LTI11_OUTCOMES, "sis": DestinationKind.ONEROSTER_REST}
HELD_8_OF_10 = '<span class="score held" title="as the gradebook holds it">8 / 10</span>'


def _kept_at_both(api: ApiEnv) -> Caller:
    """Ada's 8 of 10 on Quiz 1 was delivered to an LTI 1.1 LMS and a SIS; gradesync sends
    nothing for it now (its sync box cleared), so both gradebooks keep what they hold."""
    admin = school(api)
    keys = [kept_at(api, dest, kind, T0) for dest, kind in KINDS.items()]
    with api.db.uow() as uow:
        for key in keys:
            uow.deliveries.add(
                key=key,
                run_id=None,
                sent_at=T0,
                sent_hash="h1",
                payload=SENT[key.destination_id],
                outcome="delivered",
                remote_status=200,
                remote_message=None,
                latency_ms=5.0,
            )
        uow.commit()
    return admin


def _held(admin: Caller) -> dict[str, Any]:
    grades = admin.get("/people/p1/grades").json()["destinations"]
    return {
        d: next(c for c in cells if c["activity_id"] == "a1")["held"] for d, cells in grades.items()
    }


def _at_both(score: float, *, read_back: bool) -> dict[str, Any]:
    """What the API says both gradebooks hold: `score` of the quiz's 10 points."""
    held = {"score_given": score, "score_maximum": 10.0, "read_back": read_back}
    return {"lms11": held, "sis": held}


async def _stop_syncing_at_20_points(admin: Caller, engine: Engine) -> None:
    """The quiz stops syncing and is made worth 20 points; the engine computes again."""
    quiz = {**ROSTER["activities"][0], "points_possible": 20, "sync_enabled": False}
    assert admin.post("/ingest", json={"activities": [quiz]}).status_code == 202
    await engine.process_dirty()


def _waiting(api: ApiEnv, kinds: dict[str, DestinationKind]) -> tuple[Caller, DoubleFactory]:
    """Ada's 8 of 10 on Quiz 1, computed for the destinations of `kinds`, not yet sent; the
    LTI 1.1 gradebook takes a fraction of 1, as its adapter's does."""
    admin = school(api)
    factory = DoubleFactory()
    factory.remote("lms11").capabilities = Capabilities(
        score_form=ScoreForm.PERCENT, percent_scale=1.0, extra_credit=False
    )
    for dest, kind in kinds.items():
        add_destination(api.db.uow, "t1", dest, kind, links={"c1": f"remote-{dest}"},
                        people={"p1": f"sub-{dest}"})  # fmt: skip
    assert admin.post("/attempts", json=attempt("e1", 8)).status_code == 202
    return admin, factory


def _engine(
    api: ApiEnv, factory: DoubleFactory, client: type[DoubleClient], clock: Clock
) -> Engine:
    """An engine sending through `client`, a strict double over each destination's remote."""
    return Engine(api.db.uow, clock, lambda d: client(d, factory.remote(d.id)), EngineSettings())


def _grids(api: ApiEnv) -> dict[str, str]:
    """The course grid of c1 at each destination, as an admin signed in to the console sees it."""
    api.console_admin("t1")
    pages = {d: api.client.get("/console/courses/c1", params={"destination": d}) for d in KINDS}
    for dest, page in pages.items():
        assert page.status_code == 200, dest
    return {dest: page.text for dest, page in pages.items()}


def test_the_api_says_a_held_score_on_the_activitys_scale(api: ApiEnv) -> None:
    admin = _kept_at_both(api)
    assert _held(admin) == _at_both(8.0, read_back=False)


def test_an_activity_without_points_leaves_the_held_score_as_held(api: ApiEnv) -> None:
    """A 0-point activity has no scale to put a fraction on: LTI 1.1 reads 0.8 of 1, a SIS 8
    of no maximum, as the schema's description says."""
    admin = _kept_at_both(api)
    with api.db.uow() as uow:
        quiz = uow.activities.get("t1", "a1")
        assert quiz is not None
        uow.activities.upsert(replace(quiz, points_possible=0))
        uow.commit()
    assert _held(admin) == {
        "lms11": {"score_given": 0.8, "score_maximum": 1.0, "read_back": False},
        "sis": {"score_given": 8.0, "score_maximum": None, "read_back": False},
    }
    spec = api.client.get("/openapi.json").json()
    said = spec["components"]["schemas"]["HeldOut"]["properties"]["score_maximum"]["description"]
    assert "1 for LTI 1.1" in said and "null at a SIS" in said


def test_the_course_grid_says_a_held_score_on_the_activitys_scale(api: ApiEnv) -> None:
    _kept_at_both(api)
    for dest, page in _grids(api).items():
        assert HELD_8_OF_10 in page, dest
        assert "0.8 / 1" not in page


class _Shaped(DoubleClient):
    """The strict double, logging each send as the kind's adapter does: LTI 1.1 Outcomes a
    fraction of 1 (replaceResult), OneRoster a result's score without its maximum."""

    async def put_result(
        self,
        target: ResultTarget,
        result: DesiredResult,
        timestamp: datetime,
        *,
        each_request: RequestGate = ungated,
    ) -> Receipt:
        said = await super().put_result(target, result, timestamp, each_request=each_request)
        body: dict[str, Any]
        if self.destination.kind is DestinationKind.LTI11_OUTCOMES:
            body = {"operation": "replaceResult", "score": f"{result.score_given:g}"}
        else:
            body = {"result": {"sourcedId": "r-p1", "score": result.score_given}}
        return Receipt(body, said.status, said.message)


async def test_a_held_score_keeps_the_points_it_was_sent_on(api: ApiEnv) -> None:
    """Ada's 8 of 10 is sent to an LTI 1.1 LMS (as 0.8) and a SIS (as 8); then the quiz
    stops syncing and is made worth 20 points. The gradebooks still hold what they took on
    10 points: 8 / 10, not 16 / 20 (LTI 1.1) or 8 / 20 (SIS)."""
    admin, factory = _waiting(api, KINDS)
    engine = _engine(api, factory, _Shaped, SystemClock())
    try:
        await engine.process_dirty()
        assert (await engine.deliver_due()).delivered == 2
        assert [r.score_given for r in factory.remote("lms11").results.values()] == [0.8]
        await _stop_syncing_at_20_points(admin, engine)
    finally:
        await engine.aclose()
    assert _held(admin) == _at_both(8.0, read_back=False)
    for dest, page in _grids(api).items():  # the course grid says the same
        assert HELD_8_OF_10 in page, dest


class _ReadShaped(_Shaped):
    """Also reads the gradebook back as the kind's adapter does: LTI 1.1 a fraction of 1
    (readResult), OneRoster a result's score without its maximum."""

    async def read_results(
        self, course: CourseLink, item: ItemLink, *, each_request: RequestGate | None = None
    ) -> Sequence[ReadBack]:
        backs = await super().read_results(course, item, each_request=each_request)
        if self.destination.kind is DestinationKind.LTI11_OUTCOMES:
            return backs
        return [replace(b, score_maximum=None) for b in backs]


async def test_a_grade_read_back_keeps_the_points_it_was_read_on(api: ApiEnv) -> None:
    """Ada's 8 of 10 is sent to an LTI 1.1 LMS and a SIS, an instructor types 9 of 10 over
    it in each (0.9 in the LMS, 9 at the SIS), and a run reads it back and keeps the edit.
    Then the quiz stops syncing and is made worth 20 points: the gradebooks hold what was
    typed on 10 points, 9 / 10, not 18 / 20 (LTI 1.1) or 9 / 20 (SIS)."""
    admin, factory = _waiting(api, KINDS)
    clock = SystemClock()
    engine = _engine(api, factory, _ReadShaped, clock)
    try:
        await engine.process_dirty()
        assert (await engine.deliver_due()).delivered == 2
        for dest, typed in (("lms11", 0.9), ("sis", 9.0)):  # the instructor's edits
            results = factory.remote(dest).results
            results.update({k: replace(s, score_given=typed) for k, s in results.items()})
            run, _ = request_run(
                api.db.uow, None, clock, RunScope("t1", dest, "c1"), Trigger.MANUAL, "ada"
            )
            done = await engine.execute_run(run.id)
            assert done is not None and done.counts["overridden"] == 1, done
        await _stop_syncing_at_20_points(admin, engine)
    finally:
        await engine.aclose()
    assert _held(admin) == _at_both(9.0, read_back=True)


async def test_an_lti11_fraction_keeps_the_points_it_was_computed_on(api: ApiEnv) -> None:
    """Ada's 0.8 is computed on the 10-point quiz; before it is sent the quiz is made worth
    20, and after it, the quiz stops syncing. The LMS took 0.8, a fraction of the 10 points
    it was computed on: it reads 8 / 10, not 16 / 20 of the points the quiz had at the send."""
    admin, factory = _waiting(api, {"lms11": KINDS["lms11"]})
    engine = _engine(api, factory, _Shaped, SystemClock())
    try:
        await engine.process_dirty()  # 0.8 of 10 points
        quiz = {**ROSTER["activities"][0], "points_possible": 20}
        assert admin.post("/ingest", json={"activities": [quiz]}).status_code == 202
        assert (await engine.deliver_due()).delivered == 1  # sent before the recompute
        assert [r.score_given for r in factory.remote("lms11").results.values()] == [0.8]
        stopped = {**quiz, "sync_enabled": False}
        assert admin.post("/ingest", json={"activities": [stopped]}).status_code == 202
        await engine.process_dirty()  # no longer synced: kept in the LMS
    finally:
        await engine.aclose()
    assert _held(admin) == {
        "lms11": {"score_given": 8.0, "score_maximum": 10.0, "read_back": False}
    }
