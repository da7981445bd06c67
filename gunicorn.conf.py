"""gunicorn settings, read automatically by `gunicorn pwpush:app` run from this folder.

Command-line flags override these (e.g. `--access-logfile -` turns the access log on).
"""

# Request paths carry url_tokens (/p/<token>, /api/v2/pushes/<token>) and may carry
# ?passphrase=...: this logger writes them as [FILTERED] in the access log and in
# error messages, and never logs Authorization, X-User-Token or Cookie headers.
logger_class = "pwp.logfilter.GunicornLogger"
