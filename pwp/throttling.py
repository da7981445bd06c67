"""Per-IP request throttling, as upstream's Rack::Attack: PWP__THROTTLING__SECOND / __MINUTE.

Counters live in PWP__THROTTLING__STORAGE_URI: memory:// keeps them per process
(each gunicorn worker counts on its own), redis://host:port/db shares them between
workers and app instances. A limit of 0 turns it off.
"""
from flask import request


def _exempt():
    # Static assets and the health check never count.
    return request.endpoint in ("static", "web.up")


def init_app(app):
    """Install the limiter when at least one limit is set."""
    cfg = app.config
    limits = [f"{cfg[f'PWP__THROTTLING__{unit.upper()}']} per {unit}" for unit in ("second", "minute")
              if cfg[f"PWP__THROTTLING__{unit.upper()}"]]
    if not limits:
        return None
    # Imported only when throttling is on: Flask-Limiter and its storage libraries
    # add several MiB to every worker.
    from flask_limiter import Limiter
    from flask_limiter.util import get_remote_address

    return Limiter(
        get_remote_address, app=app, application_limits=[";".join(limits)],
        application_limits_exempt_when=_exempt, storage_uri=cfg["PWP__THROTTLING__STORAGE_URI"],
        # Fixed windows, as Rack::Attack counts: the moving window's in-memory store walks
        # every client's entries every 10 ms (bench/PROFILE.md, "The default configuration").
        strategy="fixed-window", headers_enabled=True, retry_after="delta-seconds",
        # If Redis is down, serve rather than fail every request.
        swallow_errors=True, key_prefix="pwpush")
