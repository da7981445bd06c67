"""Account e-mails (PWP__ENABLE_USER_ACCOUNT_EMAILS): Devise's confirmable, lockable and
recoverable columns on users, each mailed token as its digest in a unique index.

Every account that exists is confirmed (confirmed_at = created_at): turning the setting on
later must lock no one out. Columns and indexes are added in place (no table copy on SQLite),
those the table lacks only.

And the baseline's indexes (pwp.migrate.match_indexes): the release before the baseline path matched
them recorded databases of pwpush's first release at 0001 with two whole where the baseline
has them partial.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""
import importlib.util
import os

import sqlalchemy as sa
from alembic import op

from pwp.migrate import match_indexes

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TOKENS = ("confirmation_token_digest", "reset_password_token_digest", "unlock_token_digest")


def columns():
    """The revision's columns, as its models declare them."""
    return [sa.Column("confirmed_at", sa.DateTime(), nullable=True),
            sa.Column("confirmation_token_digest", sa.String(length=64), nullable=True),
            sa.Column("confirmation_sent_at", sa.DateTime(), nullable=True),
            sa.Column("reset_password_token_digest", sa.String(length=64), nullable=True),
            sa.Column("reset_password_sent_at", sa.DateTime(), nullable=True),
            sa.Column("failed_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
            sa.Column("unlock_token_digest", sa.String(length=64), nullable=True),
            sa.Column("locked_at", sa.DateTime(), nullable=True)]


def upgrade():
    # Only what the table lacks: a database that lost its version table (a partial restore)
    # is taken for one from before migrations, and may have them already.
    inspector = sa.inspect(op.get_bind())
    have = {column["name"] for column in inspector.get_columns("users")}
    indexes = {index["name"] for index in inspector.get_indexes("users")}
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in columns():
            if column.name not in have:
                batch_op.add_column(column)
        for column in TOKENS:
            if f"ix_users_{column}" not in indexes:
                batch_op.create_index(batch_op.f(f"ix_users_{column}"), [column], unique=True)
    if "confirmed_at" not in have:
        op.execute("UPDATE users SET confirmed_at = created_at")
    match_indexes(op.get_bind(), _baseline().tables())


def _baseline():
    """Revision 0001's module (its file name is no module name)."""
    spec = importlib.util.spec_from_file_location(
        "pwpush_revision_0001", os.path.join(os.path.dirname(__file__), "0001_baseline.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        for column in TOKENS:
            batch_op.drop_index(batch_op.f(f"ix_users_{column}"))
        for column in ("locked_at", "failed_attempts", "reset_password_sent_at", "confirmation_sent_at",
                       "confirmed_at", *TOKENS):
            batch_op.drop_column(column)
