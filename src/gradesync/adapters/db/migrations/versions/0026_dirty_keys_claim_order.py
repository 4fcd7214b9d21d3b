"""dirty keys queue for their claims in an index, in the order they were first marked

A computing pass claimed the keys marked longest ago (`ORDER BY marked_at LIMIT n`), with no
index: PostgreSQL sorted every waiting key for each claim, and the sort could not stop at the
first n, since the claim locks the rows it takes (`FOR UPDATE SKIP LOCKED`) and that rules out
a top-n sort. At 120,000 keys waiting (a roster import's marks) a claim of 500 took 233 ms and
spilled 7 MB to disk; read in order from an index, 0.5 ms. SQLite sorted them too.

The index is on a column of its own, `queued_at`: a key's first mark, which marking it again
leaves as it is. An index on `marked_at`, which every new mark changes, would cost each key
marked again while it waits a new index entry (no HOT update on PostgreSQL, migration 0021):
twice the time of a batch's marks. So a key marked again keeps its place in the queue (it
used to go to the back); only a key that cannot even be set aside is sent to the back.

Revision ID: 0026_dirty_keys_claim_order
Revises: 0025_deliveries_score_scale
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_dirty_keys_claim_order"
down_revision = "0025_deliveries_score_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dirty_keys") as batch:
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    d = sa.table(
        "dirty_keys",
        sa.column("marked_at", sa.DateTime(timezone=True)),
        sa.column("queued_at", sa.DateTime(timezone=True)),
    )
    op.execute(d.update().values(queued_at=d.c.marked_at))  # the order claims took so far
    with op.batch_alter_table("dirty_keys") as batch:
        batch.alter_column("queued_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_dirty_keys_queue", "dirty_keys", ["queued_at"])


def downgrade() -> None:
    op.drop_index("ix_dirty_keys_queue", table_name="dirty_keys")
    with op.batch_alter_table("dirty_keys") as batch:
        batch.drop_column("queued_at")
