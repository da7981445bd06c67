"""End to end with the real Password Pusher CLI (`pwpush==0.16.7` from PyPI).

The CLI lives in its own virtualenv outside the repository (its `pwpush` package
would clash with our `pwpush.py`), cached between runs. It talks to a real
`gunicorn pwpush:app` with zero configuration (SQLite in a tmp instance folder),
configured non-interactively (`config set url`, `login`), with its config in a
tmp XDG_CONFIG_HOME and stdin from /dev/null. Everything it pushes is read back
over HTTP and compared byte for byte.
"""
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from servers import create_user, gunicorn, request, server_env

pytestmark = pytest.mark.slow

CLI_VERSION = "0.16.7"
# The CLI's --days -> expire_after_duration table; any other value is sent as expire_after_days.
DAYS_SENT_AS_DURATION = [1, 2, 3, 4, 5, 6, 7, 14, 21, 30, 60, 90]
SECRETS = {
    "ascii": "correct horse battery staple",
    "shell": "$HOME ${PATH} `id` $(whoami) \"double\" 'single' ;|&<> \\back\\slash * ? ! #",
    "unicode": "pässwörd — 密码 пароль 🔐🎉 \u200b",
    "newlines": "line one\nline two\r\n\ttabbed  ",
}
FILE_BYTES = (b"first line\nsecond line\r\nnon-UTF-8: \xff\xfe\x80\xc3\x28 NUL:\x00 end\n"
              + "unicode: 🎉 ü\n".encode() + b"$HOME `id` ;|&\n")


def cli_venv_dir() -> Path:
    """Where the CLI's virtualenv is cached (PWPUSH_TEST_CLI_VENV overrides)."""
    if os.environ.get("PWPUSH_TEST_CLI_VENV"):
        return Path(os.environ["PWPUSH_TEST_CLI_VENV"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pwpush-tests" / f"cli-venv-{CLI_VERSION}"


def installed_version(executable) -> str | None:
    """The version the CLI reports, or None when it does not run (a broken cached venv)."""
    try:
        result = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=60)
    except OSError:
        return None
    return result.stdout.strip().rsplit(" ", 1)[-1] if result.returncode == 0 else None


@pytest.fixture(scope="session")
def cli_executable():
    """The `pwpush` executable of a virtualenv with pwpush==0.16.7, made on first use."""
    venv = cli_venv_dir()
    executable = venv / "bin" / "pwpush"
    if installed_version(executable) != CLI_VERSION:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        result = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", f"pwpush=={CLI_VERSION}"],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"pip install pwpush=={CLI_VERSION} failed:\n{result.stderr[-3000:]}"
    assert installed_version(executable) == CLI_VERSION
    return executable


class Cli:
    """Runs the real CLI with its own config folder, as a script would."""

    def __init__(self, executable, config_home):
        self.executable = executable
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PWP", "VIRTUAL_ENV"))}
        self.env.update(XDG_CONFIG_HOME=str(config_home), NO_COLOR="1", TERM="dumb",
                        COLUMNS="250", PYTHONIOENCODING="utf-8")

    def run(self, *args, stdin=None, check=True) -> subprocess.CompletedProcess:
        """Run `pwpush ARGS` (stdin from /dev/null unless text is given)."""
        result = subprocess.run([str(self.executable), *args], env=self.env, capture_output=True,
                                input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                                text=True, encoding="utf-8", timeout=120)
        if check:
            assert result.returncode == 0, (
                f"pwpush {args[0]} exited {result.returncode}: {result.stdout[-1500:]} {result.stderr[-1500:]}")
        return result

    def json(self, *args, stdin=None):
        """Run with --json and return the first JSON document it prints."""
        out = self.run("--json", *args, stdin=stdin).stdout
        start = min(i for i in (out.find("{"), out.find("[")) if i >= 0)
        return json.JSONDecoder().raw_decode(out[start:])[0]

    def push(self, *args, stdin=None) -> str:
        """Run a push command; return the url_token from the secret URL it prints."""
        url = self.json(*args, stdin=stdin)["url"]
        return token_from_url(url)


def token_from_url(url: str) -> str:
    """The url_token: the last path segment of the secret URL, without a trailing /r."""
    path = urlsplit(url).path.rstrip("/")
    if path.endswith("/r"):
        path = path[:-2]
    return path.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, cli_executable):
    """A zero-configuration server, a user with a token, and a CLI logged in to it."""
    tmp = tmp_path_factory.mktemp("cli-e2e")
    env = server_env(tmp / "instance")
    token = create_user(env, "cli@example.com")
    with gunicorn(env, tmp / "gunicorn.log", workers=2) as server:
        cli = Cli(cli_executable, tmp / "xdg")
        cli.run("config", "set", "url", server.url)
        out = cli.run("login", "--url", server.url, "--email", "cli@example.com", "--token", token).stdout
        assert "Login successful" in out
        yield server, cli, tmp / "instance" / "pwpush.sqlite3"


def get_json(server, path):
    """GET a path anonymously; return (status, decoded JSON)."""
    status, _headers, body = server.request("GET", path)
    return status, json.loads(body)


def retrieve(server, url_token, passphrase=None):
    """Retrieve a push anonymously over HTTP (counts a view)."""
    query = f"?passphrase={quote(passphrase, safe='')}" if passphrase is not None else ""
    return get_json(server, f"/api/v2/pushes/{url_token}{query}")


def stored_kind(db_path, url_token):
    """The kind column of a push (the JSON API never shows the kind, as upstream)."""
    with sqlite3.connect(db_path) as conn:
        return conn.execute("SELECT kind FROM pushes WHERE url_token = ?", (url_token,)).fetchone()[0]


def test_cli_login_detects_the_v2_api(stack):
    _server, cli, _db = stack
    config = (Path(cli.env["XDG_CONFIG_HOME"]) / "pwpush" / "config.ini").read_text()
    assert "api_profile = v2" in config


@pytest.mark.parametrize("name", SECRETS)
def test_cli_push_text_round_trips_byte_for_byte(stack, name):
    server, cli, db = stack
    secret = SECRETS[name]
    url_token = cli.push("push", "--secret", secret)
    status, body = retrieve(server, url_token)
    assert status == 200
    assert body["payload"].encode("utf-8") == secret.encode("utf-8")
    assert stored_kind(db, url_token) == 0


def test_cli_push_reads_the_secret_from_stdin(stack):
    server, cli, _db = stack
    url_token = cli.push("push", stdin="piped $HOME 🎉\n")
    status, body = retrieve(server, url_token)
    # The CLI strips the trailing newline itself.
    assert (status, body["payload"]) == (200, "piped $HOME 🎉")


@pytest.mark.parametrize(("kind", "secret", "stored"), [
    ("url", "https://example.com/path?q=1&r=$HOME#frag", 2),
    ("qr", "WIFI:T:WPA;S:net 🎉;P:p@ss;;", 3),
])
def test_cli_push_url_and_qr_kinds(stack, kind, secret, stored):
    server, cli, db = stack
    url_token = cli.push("push", "--kind", kind, "--secret", secret)
    status, body = retrieve(server, url_token)
    assert (status, body["payload"]) == (200, secret)
    assert stored_kind(db, url_token) == stored


def test_cli_push_with_passphrase(stack):
    server, cli, _db = stack
    secret, passphrase = "guarded ✓ $HOME", "pass phrase ;|& `id` \"q\" 'q' 🔑"
    url_token = cli.push("push", "--secret", secret, "--passphrase", passphrase)
    assert retrieve(server, url_token)[0] == 401
    assert retrieve(server, url_token, "wrong")[0] == 401
    status, body = retrieve(server, url_token, passphrase)
    assert (status, body["payload"]) == (200, secret)
    assert body["passphrase"] is None


def test_cli_push_file_round_trips_byte_for_byte(stack, tmp_path):
    server, cli, db = stack
    path = tmp_path / "secret notes ü.bin"
    path.write_bytes(FILE_BYTES)
    # In multipart every value is a string, booleans Python-style ("True"/"False").
    url_token = cli.push("push-file", str(path), "--days", "3", "--views", "2", "--no-deletable",
                         "--no-retrieval-step")
    assert stored_kind(db, url_token) == 1
    status, body = retrieve(server, url_token)
    assert status == 200
    assert (body["expire_after_days"], body["expire_after_views"], body["views_remaining"]) == (3, 2, 1)
    assert (body["deletable_by_viewer"], body["retrieval_step"]) == (False, False)
    assert [f["filename"] for f in body["files"]] == [path.name]
    link = urlsplit(body["files"][0]["url"])
    assert (link.hostname, link.port) == ("127.0.0.1", server.port)
    status, _headers, data = request(server.port, "GET", link.path)
    assert status == 200
    assert data == FILE_BYTES


@pytest.mark.parametrize("days", [*DAYS_SENT_AS_DURATION, 10])
def test_cli_days_give_the_right_expire_after_days(stack, days):
    server, cli, _db = stack
    url_token = cli.push("push", "--secret", f"days {days}", "--days", str(days), "--views", "3")
    status, body = retrieve(server, url_token)
    assert status == 200
    assert (body["expire_after_days"], body["days_remaining"]) == (days, days)
    assert (body["expire_after_views"], body["views_remaining"]) == (3, 2)


def test_cli_list_shows_the_pushes_in_json_and_text(stack):
    _server, cli, _db = stack
    url_token = cli.push("push", "--secret", "listed", "--note", "ticket 42 ✓", "--name", "db ✓")
    listed = cli.json("list")
    assert listed[0]["url_token"] == url_token  # newest first
    assert (listed[0]["note"], listed[0]["name"]) == ("ticket 42 ✓", "db ✓")
    assert listed[0]["views_remaining"] == listed[0]["expire_after_views"]
    text = cli.run("list").stdout
    assert "Active Pushes" in text
    assert url_token[:8] in text


def test_cli_audit_shows_creation_and_views(stack):
    server, cli, _db = stack
    url_token = cli.push("push", "--secret", "audited")
    assert retrieve(server, url_token)[0] == 200
    logs = cli.json("audit", url_token)["logs"]
    assert [entry["kind"] for entry in logs] == ["creation", "view"]
    assert logs[0]["user_agent"].startswith("pwpush-cli/")
    assert "Audit Log" in cli.run("audit", url_token).stdout


def test_cli_expire_deletes_the_payload(stack):
    server, cli, _db = stack
    url_token = cli.push("push", "--secret", "short-lived")
    body = cli.json("expire", url_token)
    assert (body["url_token"], body["expired"], body["deleted"]) == (url_token, True, True)
    status, body = retrieve(server, url_token)
    assert (status, body["expired"], body["payload"]) == (200, True, None)
    assert url_token in [p["url_token"] for p in cli.json("list", "--expired")]
    assert url_token not in [p["url_token"] for p in cli.json("list")]
    assert "Expired Pushes" in cli.run("list", "--expired").stdout


def test_cli_shows_a_refusal_as_the_servers_json_without_a_trailing_newline(stack):
    """A body with no "error" key (a 422's errors hash) is shown as its raw text: Flask's
    jsonify ended it with "\\n", which the CLI printed inside its message; upstream's does not."""
    _server, cli, _db = stack
    result = cli.run("--json", "push", "--kind", "url", "--secret", "ftp://example.com/x", check=False)
    assert result.returncode == 1
    shown = json.JSONDecoder().raw_decode(result.stdout[result.stdout.find("{"):])[0]
    assert shown == {"error": '{"payload":["must be a valid HTTP or HTTPS URL."]}', "status_code": 422}


def test_cli_config_defaults_arrive_as_strings_and_are_honoured(stack, tmp_path):
    server, logged_in, _db = stack
    # A copy of the logged-in configuration, so other tests keep the defaults.
    shutil.copytree(logged_in.env["XDG_CONFIG_HOME"], tmp_path / "xdg")
    cli = Cli(logged_in.executable, tmp_path / "xdg")
    # Values from config.ini reach the JSON body as strings ("4", "false").
    for key, value in {"expire_after_views": "4", "expire_after_days": "2",
                       "retrieval_step": "false", "deletable_by_viewer": "false"}.items():
        cli.run("config", "set", key, value)
    url = cli.json("push", "--secret", "configured")["url"]
    assert not url.endswith("/r")
    status, body = retrieve(server, token_from_url(url))
    assert status == 200
    assert (body["expire_after_views"], body["expire_after_days"]) == (4, 2)
    assert (body["retrieval_step"], body["deletable_by_viewer"]) == (False, False)


def test_cli_anonymous_push_without_login(stack, tmp_path):
    server, logged_in, _db = stack
    cli = Cli(logged_in.executable, tmp_path / "xdg")
    cli.run("config", "set", "url", server.url)
    url_token = cli.push("push", "--secret", "anonymous ✓", "--views", "1")
    status, body = retrieve(server, url_token)
    assert (status, body["payload"], body["expired"]) == (200, "anonymous ✓", False)
    status, body = retrieve(server, url_token)
    assert (status, body["payload"], body["expired"]) == (200, None, True)
    # Owned pushes only: the anonymous push is in nobody's list.
    assert url_token not in [p["url_token"] for p in logged_in.json("list", "--expired")]


@pytest.fixture(scope="module")
def mail_stack(tmp_path_factory, cli_executable):
    """A server that sends notification e-mails to a real SMTP server, and a CLI logged in to it."""
    from smtpsink import SmtpServer

    smtp = SmtpServer()
    smtp.controller.start()
    tmp = tmp_path_factory.mktemp("cli-mail")
    env = server_env(tmp / "instance", **smtp.environ())
    token = create_user(env, "mail@example.com")
    try:
        with gunicorn(env, tmp / "gunicorn.log", workers=2) as server:
            cli = Cli(cli_executable, tmp / "xdg")
            cli.run("login", "--url", server.url, "--email", "mail@example.com", "--token", token)
            yield server, cli, smtp, token
    finally:
        smtp.controller.stop()


def test_cli_push_notify_emails_the_link(mail_stack):
    """`pwpush push --notify`: the CLI asks /api/v2/version for email_auto_dispatch, sends
    notify_emails_to, and the mail reaches the SMTP server with the link, not the secret."""
    server, cli, smtp, token = mail_stack
    url = cli.json("push", "--secret", "mailed by the CLI", "--notify", "ann@example.com,bob@example.com")["url"]
    messages = smtp.sink.wait_for(2)  # (sent by a thread of the gunicorn worker: waited for, not slept)
    assert sorted(r for rcpts, _m in messages for r in rcpts) == ["ann@example.com", "bob@example.com"]
    for _rcpts, message in messages:
        body = message.get_content()
        assert message["Subject"] == "You have received a push"
        assert f"https://pwpush.example.com/p/{token_from_url(url)}" in body  # (PWP__HOST_DOMAIN's host)
        assert "mailed by the CLI" not in body
    url_token = token_from_url(url)
    status, _h, body = server.request("GET", f"/api/v2/pushes/{url_token}/audit",
                                      headers={"Authorization": f"Bearer {token}"})
    logs = json.loads(body)["logs"]
    assert status == 200 and [e["kind"] for e in logs] == ["creation", "creation_email_send"]
    assert logs[1]["notify_by_email"]["recipients"] == "ann@example.com,bob@example.com"
