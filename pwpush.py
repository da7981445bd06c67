"""WSGI and command-line entry: gunicorn pwpush:app ; flask --app pwpush <command>."""
import sys

from pwp import create_app
from pwp.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    print(f"pwpush: configuration error: {exc}", file=sys.stderr)
    # 3 is gunicorn's "worker failed to boot": its master stops rather than start worker
    # after worker that fails the same way (with 1 it would, forever, and look alive).
    sys.exit(3)
