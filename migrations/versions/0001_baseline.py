"""Baseline: the schema of the releases before migrations (schema.sql of 2026-12-06).

On a database such a release made (no version table) it adds the tables missing there,
makes again the indexes made otherwise there (the first releases' whole ones the baseline
has partial), and stops, naming them, when a table lacks columns; on an empty one it makes
every table.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

from pwp.migrate import check_columns, match_indexes

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A row id: 64 bits on PostgreSQL; on SQLite INTEGER, the rowid's alias.
BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def _partial(condition):
    """A partial index's condition, for both databases."""
    return {"sqlite_where": sa.text(condition), "postgresql_where": sa.text(condition)}


def tables():
    """The baseline's tables, as its models declared them, in creation order."""
    m = sa.MetaData()
    sa.Table("key_check", m, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("token", sa.LargeBinary, nullable=False))
    sa.Table("throttles", m, sa.Column("key", sa.String(64), primary_key=True),
             sa.Column("window", sa.BigInteger, primary_key=True), sa.Column("count", sa.Integer, nullable=False))
    sa.Table("users", m, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("email", sa.String(255), nullable=False, unique=True),
             sa.Column("password_hash", sa.String(255)), sa.Column("api_token_digest", sa.String(64), unique=True),
             sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
             sa.Column("created_at", sa.DateTime, nullable=False))
    sa.Table("pushes", m, sa.Column("id", BigId, primary_key=True),
             sa.Column("kind", sa.SmallInteger, nullable=False),
             sa.Column("url_token", sa.String(32), nullable=False, unique=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
             sa.Column("name", sa.String(255), nullable=False),
             sa.Column("expire_after_days", sa.Integer, nullable=False),
             sa.Column("expire_after_views", sa.Integer, nullable=False),
             sa.Column("expires_at", sa.DateTime, nullable=False),
             sa.Column("view_count", sa.Integer, nullable=False),
             sa.Column("expired", sa.Boolean, nullable=False), sa.Column("expired_on", sa.DateTime),
             sa.Column("deleted", sa.Boolean, nullable=False), sa.Column("deletable_by_viewer", sa.Boolean),
             sa.Column("retrieval_step", sa.Boolean, nullable=False),
             sa.Column("payload_ciphertext", sa.LargeBinary), sa.Column("note_ciphertext", sa.LargeBinary),
             sa.Column("passphrase_salt", sa.LargeBinary), sa.Column("passphrase_verifier", sa.LargeBinary),
             sa.Column("created_at", sa.DateTime, nullable=False), sa.Column("updated_at", sa.DateTime, nullable=False),
             sa.Index("ix_pushes_user_expired_created", "user_id", "expired", "created_at",
                      **_partial("user_id IS NOT NULL")),
             sa.Index("ix_pushes_expired_expires_at", "expired", "expires_at"),
             sa.Index("ix_pushes_expired_on", "expired_on", **_partial("expired_on IS NOT NULL")))
    sa.Table("user_sessions", m, sa.Column("digest", sa.String(64), primary_key=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                       index=True),
             sa.Column("created_at", sa.DateTime, nullable=False))
    sa.Table("audit_logs", m, sa.Column("id", BigId, primary_key=True),
             sa.Column("push_id", BigId, sa.ForeignKey("pushes.id", ondelete="CASCADE"), nullable=False),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
             sa.Column("kind", sa.SmallInteger, nullable=False), sa.Column("ip", sa.String(64), nullable=False),
             sa.Column("user_agent", sa.String(255), nullable=False),
             sa.Column("referrer", sa.String(255), nullable=False),
             sa.Column("created_at", sa.DateTime, nullable=False),
             sa.Index("ix_audit_logs_push_id_id", "push_id", "id"))
    sa.Table("push_files", m, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("push_id", BigId, sa.ForeignKey("pushes.id", ondelete="CASCADE"), nullable=False,
                       index=True),
             sa.Column("filename", sa.String(255), nullable=False),
             sa.Column("content_type", sa.String(255), nullable=False),
             sa.Column("size", sa.Integer, nullable=False), sa.Column("ciphertext", sa.LargeBinary, nullable=False))
    sa.Table("notify_by_emails", m, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("push_id", BigId, sa.ForeignKey("pushes.id", ondelete="CASCADE"), nullable=False,
                       index=True),
             sa.Column("audit_log_id", BigId, sa.ForeignKey("audit_logs.id", ondelete="CASCADE"), index=True),
             sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="SET NULL")),
             sa.Column("recipients", sa.String(1300), nullable=False),
             sa.Column("locale", sa.String(16), nullable=False), sa.Column("base_url", sa.Text, nullable=False),
             sa.Column("status", sa.String(16), nullable=False), sa.Column("successful_sends", sa.String(1300)),
             sa.Column("error_message", sa.String(1000)), sa.Column("proceed_at", sa.DateTime),
             sa.Column("created_at", sa.DateTime, nullable=False), sa.Column("updated_at", sa.DateTime, nullable=False),
             sa.Index("ix_notify_by_emails_user_created", "user_id", "created_at"),
             sa.Index("ix_notify_by_emails_status_created", "status", "created_at"))
    sa.Table("push_file_parts", m, sa.Column("id", BigId, primary_key=True),
             sa.Column("file_id", sa.Integer, sa.ForeignKey("push_files.id", ondelete="CASCADE"), nullable=False,
                       index=True),
             sa.Column("ciphertext", sa.LargeBinary, nullable=False))
    return m.sorted_tables


def upgrade():
    conn = op.get_bind()
    baseline = tables()
    check_columns(conn, baseline)
    match_indexes(conn, baseline)
    have = set(sa.inspect(conn).get_table_names())
    for table in baseline:
        if table.name not in have:
            table.create(conn)


def downgrade():
    raise NotImplementedError("the baseline is not undone: restore a backup instead")
