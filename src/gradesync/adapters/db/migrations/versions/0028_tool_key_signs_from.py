"""tool keys: the time each key starts signing (published before it signs), and revocation

A rotated key is published at once and signs only once every cache of the key set (serve's
and the platforms') holds it. Existing keys signed from when they were made. A key made by a
process that predates the column signs from when it was made (the server default). A revoked
key (a forced rotation replaced it) is left out of the key set at once.

Revision ID: 0028_tool_key_signs_from
Revises: 0027_ledger_retrying_index
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0028_tool_key_signs_from"
down_revision = "0027_ledger_retrying_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("signs_from", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE tool_keys SET signs_from = created_at")
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.alter_column(
            "signs_from",
            existing_type=sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("CURRENT_TIMESTAMP"),
        )


def downgrade() -> None:
    # The code before this revision signs with the newest key not retired and publishes every
    # key retired within the overlap. A revoked key must not be published again, and a key
    # still waiting to sign would sign at once, before platforms hold it: both are deleted.
    # The key signing now was due to retire when the waiting one started: it signs on.
    # now as a bound value: SQLite compares the stored text, which CURRENT_TIMESTAMP's format
    # (no fraction of a second) does not match
    now = sa.bindparam("now", datetime.now(UTC), type_=sa.DateTime(timezone=True))
    op.execute("DELETE FROM tool_keys WHERE revoked_at IS NOT NULL")
    op.execute(sa.text("DELETE FROM tool_keys WHERE signs_from > :now").bindparams(now))
    op.execute(
        sa.text("UPDATE tool_keys SET retired_at = NULL WHERE retired_at > :now").bindparams(now)
    )
    with op.batch_alter_table("tool_keys", schema=None) as batch_op:
        batch_op.drop_column("revoked_at")
        batch_op.drop_column("signs_from")
