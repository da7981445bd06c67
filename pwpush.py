"""WSGI and command-line entry: gunicorn pwpush:app ; flask --app pwpush <command>."""
import sys
import time

from pwp import create_app
from pwp.config import ConfigError, DatabaseUnavailable

try:
    app = create_app()
except DatabaseUnavailable as exc:
    print(f"pwpush: {exc}", file=sys.stderr)
    if "gunicorn" in sys.modules:
        # A gunicorn worker: exit 1 and gunicorn starts another, a try every few seconds
        # until the database answers (a restart, a failover), rather than stop the server.
        time.sleep(5)
    sys.exit(1)
except ConfigError as exc:
    print(f"pwpush: configuration error: {exc}", file=sys.stderr)
    # 3 is gunicorn's "worker failed to boot": its master stops rather than start worker
    # after worker that fails the same way (with 1 it would, forever, and look alive).
    sys.exit(3)
