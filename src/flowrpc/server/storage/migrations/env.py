"""Alembic environment: migrations run on the connection that
`flowrpc.server.storage.migrate.upgrade` hands over."""

from alembic import context

from flowrpc.server.storage.migrate import for_dialect
from flowrpc.server.storage.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=True,
    include_object=for_dialect(connection.dialect.name),
)
with context.begin_transaction():
    context.run_migrations()
