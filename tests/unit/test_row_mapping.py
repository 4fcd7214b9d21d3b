"""Rows to domain objects: each field from its column, converted by the field's type (its
converter worked out once per class), `extra` taking precedence, a field with no column
keeping its default."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gradesync.adapters.db.mapping import from_row
from gradesync.domain.model import (
    ConsoleUser,
    Enrollment,
    EnrollmentStatus,
    ExtraCredit,
    PolicySettings,
    Role,
    Tenant,
    UserRole,
)


def test_a_row_becomes_the_object_its_fields_describe() -> None:
    row = {
        "tenant_id": "t1",
        "course_id": "c1",
        "person_id": "p1",
        "role": "instructor",
        "status": "inactive",
        "status_at": datetime(2026, 1, 2, 3, 4),  # SQLite's naive UTC
        "status_source": None,
        "not_a_field": 1,
    }
    e = from_row(Enrollment, row, person_id="p2")
    assert e == Enrollment(
        "t1",
        "c1",
        "p2",
        Role.INSTRUCTOR,
        EnrollmentStatus.INACTIVE,
        status_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
    )
    assert e.section_id is None  # no column: the default
    # the same class again, from the converters kept
    assert from_row(Enrollment, {**row, "role": "learner"}).role is Role.LEARNER


def test_json_policies_and_lists_become_their_fields_types() -> None:
    tenant = from_row(Tenant, {"id": "t1", "name": "T", "policy": {"extra_credit": "cap"}})
    assert tenant.policy == PolicySettings(extra_credit=ExtraCredit.CAP)
    user = from_row(
        ConsoleUser,
        {
            "tenant_id": "t1",
            "username": "u",
            "display_name": "U",
            "password_hash": "x",
            "role": "admin",
            "course_ids": ["c1", "c2"],
        },
    )
    assert user.course_ids == ("c1", "c2") and user.role is UserRole.ADMIN


def test_an_extra_must_name_a_field() -> None:
    with pytest.raises(TypeError):
        from_row(Tenant, {"id": "t1", "name": "T"}, no_such_field=1)
