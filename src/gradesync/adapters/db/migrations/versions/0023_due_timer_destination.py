"""a due timer may name the one destination it marks its key for

A key marked for one destination (a change at one SIS) that cannot even be set aside is
tried again by a timer, and a past-due zero computed for one destination falls due by one:
the timer marked the key for every destination of its course when it fired, so the others
computed it again for nothing. NULL, as every timer set until this revision: every
destination of the course.

Revision ID: 0023_due_timer_destination
Revises: 0022_dirty_key_waiting_since
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_due_timer_destination"
down_revision = "0022_dirty_key_waiting_since"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("due_timers") as batch:
        batch.add_column(sa.Column("destination_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("due_timers") as batch:
        batch.drop_column("destination_id")
