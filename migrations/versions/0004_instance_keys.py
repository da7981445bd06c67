"""The running server processes' master keys, as fingerprints (pwp.instances): rotate-key
refuses while one lacks its new key.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    # (A database that lost its version table is taken for one from before migrations: it
    # may have the table already.)
    if not sa.inspect(op.get_bind()).has_table("instance_keys"):
        op.create_table("instance_keys",
                        sa.Column("id", sa.String(length=32), nullable=False),
                        sa.Column("host", sa.String(length=255), nullable=False),
                        sa.Column("pid", sa.Integer(), nullable=False),
                        sa.Column("keys", sa.Text(), nullable=False),
                        sa.Column("started_at", sa.DateTime(), nullable=False),
                        sa.Column("seen_at", sa.DateTime(), nullable=False),
                        sa.PrimaryKeyConstraint("id"))


def downgrade():
    op.drop_table("instance_keys")
