"""WSGI and command-line entry: gunicorn pwpush:app ; flask --app pwpush <command>."""
import os
import sys
import time

# Before the app's imports: its log filter imports gunicorn's logger class.
UNDER_GUNICORN = "gunicorn" in sys.modules

from pwp import create_app  # noqa: E402
from pwp.config import ConfigError, DatabaseUnavailable  # noqa: E402

if UNDER_GUNICORN and not os.environ.get("PWPUSH_GUNICORN_CONF"):
    print("pwpush: warning: gunicorn did not read pwpush's gunicorn.conf.py (it reads the one in "
          "the folder it starts in, or -c PATH; --chdir is not enough): its settings are off, "
          "among them the access log filter that hides url_tokens and passphrases and the "
          "control socket left closed. Start gunicorn in the project folder or pass "
          "-c /path/to/gunicorn.conf.py.", file=sys.stderr)

try:
    app = create_app()
except DatabaseUnavailable as exc:
    print(f"pwpush: {exc}", file=sys.stderr)
    if UNDER_GUNICORN:
        # A gunicorn worker: exit 1 and gunicorn starts another, a try every few seconds
        # until the database answers (a restart, a failover), rather than stop the server.
        time.sleep(5)
    sys.exit(1)
except ConfigError as exc:
    print(f"pwpush: configuration error: {exc}", file=sys.stderr)
    # 3 is gunicorn's "worker failed to boot": its master stops rather than start worker
    # after worker that fails the same way (with 1 it would, forever, and look alive).
    sys.exit(3)
