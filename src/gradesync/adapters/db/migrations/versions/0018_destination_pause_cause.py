"""destinations store the cause of their pause beside its text

The cause (`domain.pauses.PauseCause`) labels `gradesync_destination_paused`. It was read
back from the text, so a person's reason opening like one of gradesync's own pauses was
labelled with that cause. Pauses made before this revision have no cause stored: theirs is
read from their text once, here, as it was read until now (gradesync's own openings; any
other text is a person's). A row that records no pause (enabled, no `paused_until`)
keeps NULL.

Revision ID: 0018_destination_pause_cause
Revises: 0017_ledger_fillfactor
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_destination_pause_cause"
down_revision = "0017_ledger_fillfactor"
branch_labels = None
depends_on = None

# gradesync's own pauses' openings as written until this revision (`domain.pauses`); copied,
# so that this migration reads what was stored then whatever the texts become
_OPENINGS = {
    "slow_down": "The destination asked gradesync to slow down",
    "misconfigured": "Misconfigured: ",
    "circuit_open": "Circuit breaker open",
}


def upgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.add_column(sa.Column("pause_cause", sa.String(length=32), nullable=True))
    d = sa.table(
        "destinations",
        sa.column("enabled", sa.Boolean()),
        sa.column("paused_until", sa.DateTime(timezone=True)),
        sa.column("pause_reason", sa.Text()),
        sa.column("pause_cause", sa.String(32)),
    )
    # substr, not LIKE: SQLite's LIKE ignores case, and the text was read case and all
    cause = sa.case(
        *(
            (sa.func.substr(d.c.pause_reason, 1, len(opening)) == opening, code)
            for code, opening in _OPENINGS.items()
        ),
        else_="admin",
    )
    op.execute(
        d.update()
        .where(sa.or_(d.c.enabled.is_(False), d.c.paused_until.is_not(None)))
        .values(pause_cause=cause)
    )


def downgrade() -> None:
    with op.batch_alter_table("destinations") as batch:
        batch.drop_column("pause_cause")
