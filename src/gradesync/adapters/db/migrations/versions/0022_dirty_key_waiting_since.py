"""a dirty key keeps when it was first marked, beside when it was last marked

`gradesync_grades_oldest_uncomputed_age_seconds` (and the alert on it) measured from the last
mark: a key marked again and again (one that cannot even be set aside is marked again at each
retry) looked new for ever, so the alert never fired for it. Keys marked before this revision
have waited since their last mark, as far as anyone can tell.

Revision ID: 0022_dirty_key_waiting_since
Revises: 0021_dirty_keys_fillfactor
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_dirty_key_waiting_since"
down_revision = "0021_dirty_keys_fillfactor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dirty_keys") as batch:
        batch.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))
    d = sa.table(
        "dirty_keys",
        sa.column("marked_at", sa.DateTime(timezone=True)),
        sa.column("waiting_since", sa.DateTime(timezone=True)),
    )
    op.execute(d.update().values(waiting_since=d.c.marked_at))
    with op.batch_alter_table("dirty_keys") as batch:
        batch.alter_column(
            "waiting_since", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("dirty_keys") as batch:
        batch.drop_column("waiting_since")
