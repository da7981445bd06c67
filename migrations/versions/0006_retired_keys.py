"""The master keys rotate-key retired, as fingerprints (pwp.models.RetiredKey): a server
process whose first key is one encrypts nothing with it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # (A database that lost its version table is taken for one from before migrations: it
    # may have the table already.)
    if not sa.inspect(op.get_bind()).has_table("retired_keys"):
        op.create_table("retired_keys",
                        sa.Column("fingerprint", sa.String(length=16), nullable=False),
                        sa.Column("retired_at", sa.DateTime(), nullable=False),
                        sa.PrimaryKeyConstraint("fingerprint"))


def downgrade():
    op.drop_table("retired_keys")
