"""WSGI and command-line entry: gunicorn pwpush:app ; flask --app pwpush <command>."""
import sys

from pwp import create_app
from pwp.config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    sys.exit(f"pwpush: configuration error: {exc}")
