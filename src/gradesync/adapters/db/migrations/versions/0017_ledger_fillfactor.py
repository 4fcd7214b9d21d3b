"""ledger pages keep room for a row's next version (PostgreSQL)

Each result's claim rewrites its row's lease and timestamp, none of them indexed. With room
left in the row's page PostgreSQL writes the new version there (a HOT update) and touches
none of the ledger's five indexes; in a full page it writes it elsewhere and adds an entry
to every index. SQLite updates rows in place and has no such setting.

The setting shapes pages written from now on: an existing ledger's full pages gain room as
their rows move to new pages, or at once with `VACUUM FULL ledger` (which locks the table
while it runs).

Revision ID: 0017_ledger_fillfactor
Revises: 0016_people_email_index
"""

from __future__ import annotations

from alembic import op

revision = "0017_ledger_fillfactor"
down_revision = "0016_people_email_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE ledger RESET (fillfactor)")
