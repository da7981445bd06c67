"""Real servers for end-to-end tests: gunicorn on a free 127.0.0.1 port, and the flask CLI.

Each server runs from the repository root (so gunicorn.conf.py applies), with its
own instance folder, writes stdout and stderr to one log file, and is always
terminated when its `with` block ends.
"""
import http.client
import json
import os
import resource
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Variables of the developer's shell that would change what a test server does.
_INHERITED_SETTINGS = ("DATABASE_URL", "SECRET_KEY", "PWPUSH_MASTER_KEY", "PWPUSH_INSTANCE_PATH",
                       "GUNICORN_CMD_ARGS", "FLASK_APP", "WEB_CONCURRENCY", "PWPUSH_GUNICORN_CONF")
START_ATTEMPTS = 1200  # x 0.1 s at least: a server that is not up after 120 s has failed (CI: 2 busy cores)


def server_env(instance_path, database_url=None, **settings) -> dict:
    """Environment for a test server: throttling off, its own instance folder."""
    env = {k: v for k, v in os.environ.items()
           if k not in _INHERITED_SETTINGS and not k.startswith("PWP__")}
    env.update({"PWPUSH_INSTANCE_PATH": str(instance_path),
                "PWP__THROTTLING__MINUTE": "0", "PWP__THROTTLING__SECOND": "0",
                "PYTHONUNBUFFERED": "1"})
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update({k: str(v) for k, v in settings.items()})
    return env


def bearer(token) -> dict:
    """Authorization header for an API token."""
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Server:
    """A running gunicorn: its base URL, port and log file."""

    port: int
    log_path: Path
    process: subprocess.Popen

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        """Everything the server printed so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=30):
        """Send one request; return (status, headers dict, body bytes)."""
        return request(self.port, method, path, body=body, headers=headers, timeout=timeout)

    def json(self, method, path, body=None, headers=None):
        """Send one request with an optional JSON body; return (status, decoded JSON or None)."""
        headers = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _headers, raw = self.request(method, path, body=data, headers=headers)
        return status, (json.loads(raw) if raw.strip() else None)


def request(port, method, path, body=None, headers=None, timeout=30, context=None):
    """One HTTP request to 127.0.0.1:port (HTTPS with an ssl context); return (status, headers
    dict, body bytes)."""
    conn = (http.client.HTTPConnection("127.0.0.1", port, timeout=timeout) if context is None
            else http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _answers(port, context=None) -> bool:
    try:
        status, _headers, _body = request(port, "GET", "/api/v2/version", timeout=2, context=context)
    except OSError:
        return False
    return status == 200


def _wait_until_up(process, port, log_path, context=None):
    """Poll /api/v2/version a bounded number of times; fail at once if gunicorn exits."""
    for _ in range(START_ATTEMPTS):
        if _answers(port, context):
            return
        try:
            # Doubles as the pause between attempts: returns at once if gunicorn died.
            process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            continue
        raise RuntimeError(f"gunicorn exited with {process.returncode}; its log:\n"
                           + log_path.read_text(errors="replace")[-4000:])
    raise RuntimeError(f"gunicorn did not answer within {START_ATTEMPTS / 10:.0f} s; its log:\n"
                       + log_path.read_text(errors="replace")[-4000:])


def stop(process, timeout=20):
    """Stop gunicorn gracefully (SIGTERM), killing its process group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def _limit(nofile, fsize):
    """(In the child, before gunicorn starts.) gunicorn()'s limits on its resources."""
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    if fsize:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))


@contextmanager
def gunicorn(env, log_path, workers=1, args=(), nofile=None, fsize=None, context=None):
    """Run `gunicorn pwpush:app` on a free 127.0.0.1 port; yield a Server; always stop it.
    nofile: (soft, hard) limits on its open files (RLIMIT_NOFILE), else this process's;
    fsize: the most bytes a file it writes may hold (RLIMIT_FSIZE: past it a write fails, EFBIG);
    context: the ssl.SSLContext to see it is up with (args with --certfile: it speaks TLS).

    The listening socket is bound here (port 0: the kernel picks a free one) and
    handed to gunicorn as fd://N, so no other process can take the port in between.
    """
    log_path = Path(log_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        command = [sys.executable, "-m", "gunicorn", "pwpush:app", "--bind", f"fd://{fd}",
                   "--workers", str(workers),
                   # gunicorn 27 otherwise opens one control socket under ~/.gunicorn for all.
                   "--no-control-socket", *args]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, pass_fds=(fd,),
                                       start_new_session=True,
                                       preexec_fn=partial(_limit, nofile, fsize))
    # Our copy of the socket is closed; gunicorn holds its own.
    try:
        _wait_until_up(process, port, log_path, context)
        yield Server(port=port, log_path=log_path, process=process)
    finally:
        stop(process)


def flask(env, *args, log_path=None, check=True) -> subprocess.CompletedProcess:
    """Run `flask --app pwpush ARGS` in the server's environment."""
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "pwpush", *args], cwd=ROOT,
                            env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=120)
    if log_path is not None:
        # stderr only: stdout of `users create` carries the new API token.
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(result.stderr)
    if check and result.returncode != 0:
        raise RuntimeError(f"flask {args[0]} exited with {result.returncode}: {result.stderr[-2000:]}")
    return result


def create_user(env, email, log_path=None) -> str:
    """Create a user with `flask --app pwpush users create`; return its API token (last line)."""
    out = flask(env, "users", "create", email, log_path=log_path).stdout
    return out.strip().splitlines()[-1].strip()
