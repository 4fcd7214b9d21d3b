"""dirty keys' pages keep room for a key's next mark (PostgreSQL)

A key marked again while it still waits to be computed (an import's attempts after its
roster marked their keys, a busy course) gets a new time, which no index holds. With room
left in the row's page PostgreSQL writes the new version there (a HOT update) and adds
nothing to the primary key's index; in a full page it writes it elsewhere and adds an
entry. Half of each page stays free, so a batch that marks every key of its pages again
finds room for each: half the buffers and WAL of such a batch's marks. The table holds the
keys waiting, not the history, so the room costs little. SQLite updates rows in place and
has no such setting.

Revision ID: 0021_dirty_keys_fillfactor
Revises: 0020_dirty_key_destination
"""

from __future__ import annotations

from alembic import op

revision = "0021_dirty_keys_fillfactor"
down_revision = "0020_dirty_key_destination"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dirty_keys SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE dirty_keys RESET (fillfactor)")
