"""Per-IP request throttling, as upstream's Rack::Attack: PWP__THROTTLING__SECOND / __MINUTE.

A WSGI layer in front of the API's hot path and Flask (inside ProxyFix, so the address is
the client's when proxies are trusted) counts every request but static assets and the
health check, in fixed windows as Rack::Attack does, with the `limits` library. Counters
live in PWP__THROTTLING__STORAGE_URI: memory:// keeps them per process (each gunicorn
worker counts on its own), redis://host:port/db shares them between workers and app
instances. A limit of 0 turns it off. A request over a limit goes to Flask, whose error
handlers answer 429 (JSON for the API, the error page in a browser) with Retry-After. If
the storage cannot be reached or does not answer within REDIS_TIMEOUT, requests are served
rather than all refused (or all kept waiting), uncounted for BACKOFF_SECONDS.

At the WSGI edge rather than in Flask (Flask-Limiter): the API's hot path then serves the
default configuration too, and a request costs a fraction (bench/PROFILE.md).
"""
import logging
import math
import time

from flask import request
from werkzeug.exceptions import TooManyRequests

from .config import ConfigError

log = logging.getLogger("pwp")  # (the app's logger: its RedactFilter sees every record)
THROTTLED = "pwp.throttled"  # environ key: seconds until the client may try again
KEY = "pwpush"  # the counters' namespace (Redis keys contain it)
# Seconds Redis has to connect and to answer (redis-py waits forever, so a Redis that took
# connections but answered nothing held every request); the URI's own socket_timeout and
# socket_connect_timeout, if it names them, win.
REDIS_TIMEOUT = 0.5
BACKOFF_SECONDS = 5  # after a storage failure, requests go uncounted this long (no waits)


class Throttle:
    """WSGI layer: count the request; a client over a limit is answered by `refuse`."""

    def __init__(self, wsgi_app, refuse, limits, storage_uri, exempt_prefix):
        # Imported only when throttling is on (and the Redis client only for redis://).
        from limits.errors import ConfigurationError
        from limits.storage import storage_from_string
        from limits.strategies import FixedWindowRateLimiter

        self.wsgi_app = wsgi_app
        self.refuse = refuse
        self.limits = limits
        timeouts = {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT} \
            if storage_uri.startswith(("redis", "valkey")) else {}
        try:
            storage = storage_from_string(storage_uri, **timeouts)
        except (ConfigurationError, ValueError):  # an unknown scheme, its client missing, a bad port
            scheme = storage_uri.partition(":")[0]  # (the rest may hold a password)
            raise ConfigError(f"PWP__THROTTLING__STORAGE_URI: cannot use this {scheme}: URI; expected "
                              "memory:// or redis://[:password@]host:port/db") from None
        self.strategy = FixedWindowRateLimiter(storage)
        self.exempt_prefix = exempt_prefix
        self.clock = time.monotonic
        self.down_until = 0.0  # the clock's time until which the storage is left alone

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path != "/up" and not path.startswith(self.exempt_prefix):
            wait = self._over_limit(environ.get("REMOTE_ADDR") or "")
            if wait:
                environ[THROTTLED] = wait
                return self.refuse(environ, start_response)
        return self.wsgi_app(environ, start_response)

    def _over_limit(self, client: str) -> int:
        """Count one request of the client; seconds to wait if a limit is exceeded, else 0."""
        if self.down_until and self.clock() < self.down_until:
            return 0
        try:
            for item in self.limits:
                if not self.strategy.hit(item, KEY, client):
                    reset_at = self.strategy.get_window_stats(item, KEY, client).reset_time
                    return max(1, math.ceil(reset_at - time.time()))
        except Exception as exc:  # storage down: serve (the address is not logged)
            self.down_until = self.clock() + BACKOFF_SECONDS
            log.warning("throttling storage unavailable (%s); requests not counted for %d s",
                        type(exc).__name__, BACKOFF_SECONDS)
        return 0


def _refuse_throttled():
    wait = request.environ.get(THROTTLED)
    if wait:
        raise TooManyRequests(retry_after=wait)


def init_app(app, flask_wsgi_app):
    """Put the throttle in front of app.wsgi_app when at least one limit is set;
    throttled requests go straight to flask_wsgi_app, whose first hook refuses them."""
    cfg = app.config
    if not cfg["PWP__THROTTLING__SECOND"] and not cfg["PWP__THROTTLING__MINUTE"]:
        return
    from limits import RateLimitItemPerMinute, RateLimitItemPerSecond

    limits = [item(cfg[name]) for item, name in (
        (RateLimitItemPerSecond, "PWP__THROTTLING__SECOND"),
        (RateLimitItemPerMinute, "PWP__THROTTLING__MINUTE")) if cfg[name]]
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_throttled)
    app.wsgi_app = Throttle(app.wsgi_app, flask_wsgi_app, limits, cfg["PWP__THROTTLING__STORAGE_URI"],
                            (app.static_url_path or "/static") + "/")
