"""Where a recorded server process runs (pwp.instances.process_mark: this boot of its
machine, its PID namespace, its start time and its process group), so that rotate-key on the same machine and
in the same namespace knows one killed without ending is gone. Rows from before stay
without one (the 5-minute rule alone, as before).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    # (A database that lost its version table is taken for one from before migrations: it
    # may have the column already.)
    if "process" not in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("instance_keys")}:
        with op.batch_alter_table("instance_keys", schema=None) as batch_op:
            batch_op.add_column(sa.Column("process", sa.String(length=120), nullable=True))


def downgrade():
    with op.batch_alter_table("instance_keys", schema=None) as batch_op:
        batch_op.drop_column("process")
