"""Two-factor authentication (pwp.twofactor): the TOTP columns on users (off for every
account that exists) and the table of backup codes' digests. Columns and tables are added
in place (no table copy on SQLite), those the database lacks only.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def columns():
    """The revision's columns on users, as its models declare them."""
    return [sa.Column("otp_enabled_at", sa.DateTime(), nullable=True),
            sa.Column("otp_secret_ciphertext", sa.LargeBinary(), nullable=True),
            sa.Column("otp_last_step", sa.BigInteger(), nullable=True)]


def upgrade():
    # Only what the database lacks: one that lost its version table (a partial restore) is
    # taken for one from before migrations, and may have them already.
    inspector = sa.inspect(op.get_bind())
    have = {column["name"] for column in inspector.get_columns("users")}
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in columns():
            if column.name not in have:
                batch_op.add_column(column)
    if not inspector.has_table("otp_backup_codes"):
        op.create_table("otp_backup_codes",
                        sa.Column("id", sa.Integer(), nullable=False),
                        sa.Column("user_id", sa.Integer(), nullable=False),
                        sa.Column("digest", sa.String(length=64), nullable=False),
                        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
                        sa.PrimaryKeyConstraint("id"))
        op.create_index(op.f("ix_otp_backup_codes_user_id"), "otp_backup_codes", ["user_id"], unique=False)


def downgrade():
    op.drop_index(op.f("ix_otp_backup_codes_user_id"), table_name="otp_backup_codes")
    op.drop_table("otp_backup_codes")
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in ("otp_last_step", "otp_secret_ciphertext", "otp_enabled_at"):
            batch_op.drop_column(column)
