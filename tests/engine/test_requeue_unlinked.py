"""A launch that ties an activity's column to its resource link sends again the grades the
LMS refused for want of one (`launch._requeue_unlinked`). Those rows are read under lock:
read unlocked, a grade computed and committed between the read and the write (the learner's
newer attempt) was written back over with the refused, older one, and the newer never sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gradesync.adapters.db.database import Database
from gradesync.domain.ledger import desired_to_json
from gradesync.domain.model import DeliveryState, LedgerKey, LedgerRow
from gradesync.domain.policy import DesiredResult
from gradesync.services.destination import NO_RESOURCE_LINK
from gradesync.services.lti.launch import _requeue_unlinked
from tests.support.races import AfterFirstRead

from .conftest import COURSE, DEST, T, learner, ledger, seed

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _grade(score: float) -> dict[str, object]:
    graded = ("FullyGraded", "Completed", None, False, False, False, NOW, "", None)
    return desired_to_json(DesiredResult(score, 10.0, *graded))


def _refused(i: int) -> LedgerRow:
    return LedgerRow(
        LedgerKey(T, DEST, "a1", learner(i)), DeliveryState.REJECTED, "h7", _grade(7.0),
        reason_code=NO_RESOURCE_LINK, reason_text="no resource link", updated_at=NOW,
    )  # fmt: skip


def test_a_grade_computed_while_the_refused_ones_are_sent_again_is_kept(db: Database) -> None:
    seed(db, learners=2)
    with db.uow() as uow:
        uow.ledger.save_many([(_refused(i), COURSE) for i in range(2)])
        uow.commit()
    newer = LedgerKey(T, DEST, "a1", learner(1))

    def computed() -> None:  # p001's newer attempt, computed as computing writes it
        with db.uow() as uow:
            uow.ledger.get_keys([newer], lock=True)
            nine = LedgerRow(newer, DeliveryState.PENDING, "h9", _grade(9.0), updated_at=NOW)
            uow.ledger.save_many([(nine, COURSE)])
            uow.commit()

    racing = AfterFirstRead(db, "ledger", ("iter_scope", "get_many"), computed)
    with racing() as uow:
        _requeue_unlinked(uow, T, DEST, COURSE, "a1", NOW + timedelta(minutes=1))
        uow.commit()
    racing.finish()
    if not db.is_sqlite:  # the computation waited for the refused rows, read under lock
        assert racing.second is not None and racing.second.blocked
    rows = ledger(db)
    assert rows[("a1", learner(0))].state is DeliveryState.PENDING  # sent again
    assert rows[("a1", learner(1))].state is DeliveryState.PENDING
    assert rows[("a1", learner(1))].desired == _grade(9.0)
