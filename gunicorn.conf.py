"""gunicorn settings for pwpush, read automatically from the working directory.

`gunicorn pwpush:app` (the Procfile's web process) picks this file up. Environment:
  WEB_CONCURRENCY  worker processes (default 2: one per core of a small VPS; each ~65 MiB)
  PORT             PaaS port: bind 0.0.0.0:$PORT; without it bind 127.0.0.1:8000 (behind a proxy)
  BIND             an explicit address, e.g. unix:/run/pwpush.sock (wins over PORT)
Measured alternatives on a 2-vCPU VM are in bench/RESULTS.md ("gunicorn settings").
"""
import os

_port = os.environ.get("PORT")
bind = os.environ.get("BIND") or (f"0.0.0.0:{_port}" if _port else "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Sync workers: each request is short and CPU-bound (no slow upstream calls); gthread bought
# no throughput here and a worse p99 (bench/RESULTS.md).
worker_class = "sync"
timeout = 30
graceful_timeout = 10
# No access log: request paths carry url_tokens, which must never be logged.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
