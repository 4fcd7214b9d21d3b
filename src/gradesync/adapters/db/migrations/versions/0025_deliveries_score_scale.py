"""the delivery log keeps the scale a score was sent on, where the gradebook takes none

An LTI 1.1 gradebook takes a fraction of 1 and a SIS a score without its maximum: what they
hold was read on the activity's points at the time of the send. Those points are kept beside
the send (`score_scale`), so that a held score still reads on them after the activity's
points change. Lines logged before this revision have none (NULL): theirs read on the
activity's points now, as they did until now.

Revision ID: 0025_deliveries_score_scale
Revises: 0024_attempts_checked_by_ingest
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025_deliveries_score_scale"
down_revision = "0024_attempts_checked_by_ingest"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("score_scale", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("score_scale")
