"""Account e-mails (PWP__ENABLE_USER_ACCOUNT_EMAILS): Devise's confirmable, lockable and
recoverable columns on users, each mailed token as its digest in a unique index.

Every account that exists is confirmed (confirmed_at = created_at): turning the setting on
later must lock no one out. Columns and indexes are added in place (no table copy on SQLite).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKENS = ("confirmation_token_digest", "reset_password_token_digest", "unlock_token_digest")


def upgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("confirmation_token_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("confirmation_sent_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("reset_password_token_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("reset_password_sent_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
        batch_op.add_column(sa.Column("unlock_token_digest", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("locked_at", sa.DateTime(), nullable=True))
        for column in TOKENS:
            batch_op.create_index(batch_op.f(f"ix_users_{column}"), [column], unique=True)
    op.execute("UPDATE users SET confirmed_at = created_at")


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in TOKENS:
            batch_op.drop_index(batch_op.f(f"ix_users_{column}"))
        for column in ("locked_at", "failed_attempts", "reset_password_sent_at", "confirmation_sent_at",
                       "confirmed_at", *TOKENS):
            batch_op.drop_column(column)
