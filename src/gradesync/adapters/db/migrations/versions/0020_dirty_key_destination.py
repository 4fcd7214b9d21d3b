"""a dirty key may name the one destination it is recomputed for

A change that concerns one destination only (a SIS activity ticked, posted, its class or a
student mapped) marks its keys for that destination, so the other destinations of the course
do not compute them again for nothing. NULL, as every key marked until this revision: every
destination of the course.

Revision ID: 0020_dirty_key_destination
Revises: 0019_ledger_compute_failed_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_dirty_key_destination"
down_revision = "0019_ledger_compute_failed_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dirty_keys") as batch:
        batch.add_column(sa.Column("destination_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dirty_keys") as batch:
        batch.drop_column("destination_id")
