"""Alembic's environment: the app's engine and models.

pwp.migrate runs the revisions on a connection it holds (in a transaction, under its lock);
`flask --app pwpush db-revision` compares a scratch database with the models.
"""
from alembic import context

from pwp.migrate import VERSION_TABLE
from pwp.models import db

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection, target_metadata=db.metadata, version_table=VERSION_TABLE.name,
    # SQLite alters a table by copying it: autogenerate writes batch operations for it.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True, compare_server_default=True)
with context.begin_transaction():
    context.run_migrations()
