"""pwpush: a self-hosted one-time secret sharing service speaking Password Pusher's API.

The package itself loads nothing but the standard library: gunicorn's master process imports
`pwp.logfilter` (gunicorn.conf.py's logger) and must not pay for Flask and SQLAlchemy, which
only the workers use. `create_app` is loaded from pwp.factory on first use.
"""
import os

__version__ = "1.0.0"
# The upstream version whose behaviour the API reproduces (reported by /api/v*/version).
UPSTREAM_VERSION = "2.11.4"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def has_cookies(req) -> bool:
    """Tell whether the request carries any cookie, without parsing them (API clients send none)."""
    return bool(req.environ.get("HTTP_COOKIE"))


def __getattr__(name):
    """`pwp.create_app`, imported from pwp.factory when first asked for."""
    if name == "create_app":
        from .factory import create_app
        return create_app
    raise AttributeError(f"module 'pwp' has no attribute {name!r}")
