"""gunicorn settings for pwpush, read automatically from the working directory.

`gunicorn pwpush:app` (the Procfile's web process) picks this file up. Environment:
  WEB_CONCURRENCY   worker processes (default 1; one per core to use more cores)
  GUNICORN_THREADS  threads per worker (default 4)
  PORT              PaaS port: bind 0.0.0.0:$PORT; without it bind 127.0.0.1:8000 (behind a proxy)
  BIND              an explicit address, e.g. unix:/run/pwpush.sock (wins over PORT)

Measured on one core of the 2-vCPU VM (bench/RESULTS.md, "gunicorn settings", two runs on
2026-11-27): one process with 4 threads creates as fast as one sync worker (or faster) and
4-30 % faster than two sync workers, at 95-97 MiB instead of 156-160 MiB: every extra
process on a core costs CPU per request. Threads also keep serving while one request or
client is slow. Trade-off: at full load, p99 is worse (26-28 ms vs 15-22 ms for sync
workers); `gunicorn -k sync -w 2 pwpush:app` keeps the tail lower for fewer requests per
core and ~60 MiB more.
"""
import os

_port = os.environ.get("PORT")
bind = os.environ.get("BIND") or (f"0.0.0.0:{_port}" if _port else "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = 30
graceful_timeout = 10
# No access log by default. Request paths carry url_tokens and may carry ?passphrase=...:
# when one is turned on (--access-logfile -), this logger writes them as [FILTERED], in
# error messages too, and never logs Authorization, X-User-Token or Cookie headers.
accesslog = None
logger_class = "pwp.logfilter.GunicornLogger"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
