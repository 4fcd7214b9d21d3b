"""a claim of dirty keys reads the oldest marks from an index, not a sort of every key

A computing pass claims the keys marked longest ago (`ORDER BY marked_at LIMIT n`). Without
an index PostgreSQL sorted every waiting key for each claim, and the sort could not stop at
the first n: the claim locks the rows it takes (`FOR UPDATE SKIP LOCKED`), which rules out
its top-n sort. At 120,000 keys waiting (a roster import's marks) a claim of 500 took 233 ms
and spilled 7 MB to disk; with the index, 2.5 ms. SQLite sorted them too. A key marked again
while it waits now adds an index entry (PostgreSQL can no longer write the new mark as a HOT
update: the index holds the time it changes); docs/benchmarks.md weighs the two.

Revision ID: 0026_dirty_keys_claim_order
Revises: 0025_deliveries_score_scale
"""

from __future__ import annotations

from alembic import op

revision = "0026_dirty_keys_claim_order"
down_revision = "0025_deliveries_score_scale"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_dirty_keys_marked", "dirty_keys", ["marked_at"])


def downgrade() -> None:
    op.drop_index("ix_dirty_keys_marked", table_name="dirty_keys")
