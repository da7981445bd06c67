"""When a recorded server process ended (pwp.instances.Heartbeat.end): its row stays, so that
rotate-key, before it seals the key check, knows of a process on the old key that started
after its first look and ended before the next (what it stored under that key, in a push
the walk had passed, would be lost with the key). Rows from before stay without one.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # (A database that lost its version table is taken for one from before migrations: it
    # may have the column already.)
    if "ended_at" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("instance_keys")}:
        with op.batch_alter_table("instance_keys", schema=None) as batch_op:
            batch_op.add_column(sa.Column("ended_at", sa.DateTime(), nullable=True))


def downgrade():
    # (0006 deleted a row as its process ended: kept, it would read as one running, seen as it ended.)
    op.execute("DELETE FROM instance_keys WHERE ended_at IS NOT NULL")
    with op.batch_alter_table("instance_keys", schema=None) as batch_op:
        batch_op.drop_column("ended_at")
