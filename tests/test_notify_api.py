"""Notify by e-mail through API v2: validation, limits, sending to a real SMTP server, the
audit log, recovery by purge-expired."""
import html
import logging
import re
import sqlite3
from datetime import timedelta

import psycopg
import pytest
from conftest import NOW, bearer, sql, wait_for_a_lock_waiter
from smtpsink import SmtpServer, free_port

from pwp import notify, pushes
from pwp.models import db

SECRET = "correct horse battery staple"


def create(client, token, **push):
    push.setdefault("payload", SECRET)
    return client.post("/api/v2/pushes", json={"push": push}, headers=bearer(token) if token else {})


def notify_emails(client, token, url_token, **body):
    return client.post(f"/api/v2/pushes/{url_token}/notify_emails", json=body,
                       headers=bearer(token) if token else {})


def cli(app, args):
    """Run a flask command of the app (as `flask --app pwpush ...` does, in its context)."""
    with app.app_context():
        return app.test_cli_runner().invoke(args=args)


def sendings(app):
    return sql(app, "SELECT recipients, locale, status, successful_sends, error_message, proceed_at "
                    "FROM notify_by_emails ORDER BY id")


# ----------------------------------------------------------------------------- availability

def test_version_says_email_auto_dispatch_only_with_an_smtp_server(mail, settings, database_url, tmp_path):
    assert mail.get("/api/v2/version").json["features"]["pushes"]["email_auto_dispatch"] is True


@pytest.mark.parametrize("extra", [{}, {"PWP__NOTIFY_BY_EMAIL__ENABLED": False}, {"PWP__DISABLE_LOGINS": True}],
                         ids=["no-smtp-server", "disabled", "logins-disabled"])
def test_version_says_no_email_auto_dispatch(settings, smtp, database_url, request, extra):
    if extra:
        settings.update(smtp.settings(), **extra)
    client = request.getfixturevalue("client")
    assert client.get("/api/v2/version").json["features"]["pushes"]["email_auto_dispatch"] is False


def test_notify_route_is_absent_when_the_feature_is_disabled(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__ENABLED=False)
    client = request.getfixturevalue("client")
    token = request.getfixturevalue("token")
    url_token = create(client, token).json["url_token"]
    r = notify_emails(client, token, url_token, notify_emails_to="a@example.com")
    assert r.status_code == 404
    r = create(client, token, notify_emails_to="a@example.com")
    assert r.status_code == 422 and r.json["base"] == ["Notify by email feature is not enabled"]


def test_logins_disabled_makes_it_unavailable(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__DISABLE_LOGINS=True)
    client = request.getfixturevalue("client")
    r = create(client, request.getfixturevalue("token"), notify_emails_to="a@example.com")
    assert r.status_code == 422 and r.json["notify_emails_to"] == ["are not available"]


def _start_up_log(caplog, database_url, tmp_path, **settings) -> list[tuple[str, str]]:
    from conftest import make_config

    from pwp import create_app
    with caplog.at_level(logging.INFO, logger="pwp"):
        app = create_app(make_config(database_url, **settings), instance_path=str(tmp_path / "instance"),
                         command_line=False)
    with app.app_context():
        db.engine.dispose()
    return [(r.levelname, r.getMessage()) for r in caplog.records if "mail" in r.getMessage().lower()]


def test_start_up_says_whether_notify_by_email_is_on(smtp, database_url, tmp_path, caplog):
    # Found by hand: nothing at start said whether the PWP__MAIL__* settings had taken.
    port = smtp.settings()["PWP__MAIL__SMTP_PORT"]
    assert _start_up_log(caplog, database_url, tmp_path, **smtp.settings()) == [
        ("INFO", f"Notify by e-mail is on: SMTP server 127.0.0.1:{port} (none), From pwpush <pwpush@example.com>.")]
    caplog.clear()
    assert _start_up_log(caplog, database_url, tmp_path) == [
        ("INFO", "Notify by e-mail is off: PWP__MAIL__SMTP_ADDRESS is not set.")]
    caplog.clear()
    assert _start_up_log(caplog, database_url, tmp_path, **smtp.settings(), PWP__DISABLE_LOGINS=True) == [
        ("WARNING", "Notify by e-mail is off: PWP__DISABLE_LOGINS is true (senders must sign in).")]


def test_a_password_sent_without_tls_to_another_host_is_warned_about(smtp, database_url, tmp_path, caplog):
    login = {**smtp.settings(), "PWP__MAIL__SMTP_USER_NAME": "pwpush", "PWP__MAIL__SMTP_PASSWORD": "hunter2"}
    assert not [m for level, m in _start_up_log(caplog, database_url, tmp_path, **login) if level == "WARNING"]
    caplog.clear()
    log = _start_up_log(caplog, database_url, tmp_path, **{**login, "PWP__MAIL__SMTP_ADDRESS": "mail.example.net"})
    assert ("WARNING", "PWP__MAIL__SMTP_SECURITY is none: the mails (their secret links) and the SMTP password "
                       "cross the network to mail.example.net unencrypted; use starttls or tls unless it is a "
                       "private network.") in log
    assert "hunter2" not in caplog.text


def test_a_mistyped_mail_setting_is_warned_about(database_url, tmp_path, caplog, monkeypatch):
    # Found by hand: PWP__MAIL__SMTP_ADRESS (one D) was ignored without a word.
    monkeypatch.setenv("PWP__MAIL__SMTP_ADRESS", "smtp.example.com")
    monkeypatch.setenv("PWP__MAIL__SMTP_ENABLE_STARTTLS_AUTO", "true")
    log = _start_up_log(caplog, database_url, tmp_path)
    assert ("WARNING", "Ignored, not pwpush settings: PWP__MAIL__SMTP_ADRESS (perhaps PWP__MAIL__SMTP_ADDRESS "
                       "was meant), PWP__MAIL__SMTP_ENABLE_STARTTLS_AUTO. The README lists the settings.") in log
    assert "smtp.example.com" not in caplog.text


# ----------------------------------------------------------------------------- sending

def test_create_with_notify_sends_one_mail_per_recipient_with_the_link_not_the_secret(mail, smtp, token, app):
    r = create(mail, token, notify_emails_to="ann@example.com, bob@example.org", passphrase="pass phrase")
    assert r.status_code == 201
    assert r.json["notify_emails_to"] == "ann@example.com, bob@example.org"
    assert r.json["notify_emails_to_locale"] == "en"
    notify.wait_for_sends()  # (the production path: a thread after the commit)
    messages = smtp.sink.wait_for(2)
    assert sorted(rcpt for rcpts, _m in messages for rcpt in rcpts) == ["ann@example.com", "bob@example.org"]
    for rcpts, message in messages:
        assert message["Subject"] == "You have received a push"
        assert message["To"] == rcpts[0] and message["From"] == "pwpush <pwpush@example.com>"
        body = message.get_content()
        assert r.json["html_url"].replace("http://localhost", "https://pwpush.example.com") in body
        assert "A secure link has been shared with you." in body
        assert SECRET not in body and "pass phrase" not in body
        assert "You need a passphrase to open it" in body
    assert sendings(app) == [("ann@example.com,bob@example.org", "en", "completed",
                              "ann@example.com,bob@example.org", None, sendings(app)[0][5])]
    assert sendings(app)[0][5] is not None


def test_the_mail_link_honours_override_base_url(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__OVERRIDE_BASE_URL="https://push.example.com")
    client = request.getfixturevalue("client")
    r = create(client, request.getfixturevalue("token"), notify_emails_to="ann@example.com", retrieval_step=True)
    notify.wait_for_sends()
    body = smtp.sink.wait_for(1)[0][1].get_content()
    assert f"https://push.example.com/p/{r.json['url_token']}/r" in body


def test_the_mail_link_is_on_the_configured_host_never_the_requests(settings, smtp, database_url, request):
    """A signed-in user sending `Host: evil.example` (a proxy's default server passes any
    Host) must not have the instance's sender mail a link to evil.example: mail links are
    built from PWP__HOST_DOMAIN / PWP__HOST_PROTOCOL (upstream's), API and web alike."""
    settings.update(smtp.settings(), PWP__HOST_DOMAIN="pwpush.example.com", PWP__HOST_PROTOCOL="https")
    client, token = request.getfixturevalue("client"), request.getfixturevalue("token")
    evil = {**bearer(token), "Host": "evil.example"}
    r = client.post("/api/v2/pushes", json={"push": {"payload": SECRET, "notify_emails_to": "ann@example.com"}},
                    headers=evil)
    assert r.status_code == 201 and r.json["html_url"].startswith("http://evil.example/")  # (the API's answer)
    url_token = r.json["url_token"]
    r = client.post(f"/api/v2/pushes/{url_token}/notify_emails", json={"notify_emails_to": "bob@example.com"},
                    headers=evil)
    assert r.status_code == 201
    notify.wait_for_sends()
    for _rcpts, message in smtp.sink.wait_for(2):
        body = message.get_content()
        assert f"https://pwpush.example.com/p/{url_token}" in body and "evil.example" not in body
    assert {row[0] for row in sql(request.getfixturevalue("app"), "SELECT base_url FROM notify_by_emails")} \
        == {"https://pwpush.example.com"}


def test_audit_log_has_creation_email_send_with_the_sending(mail, smtp, token):
    url_token = create(mail, token, notify_emails_to="ann@example.com").json["url_token"]
    notify.wait_for_sends()
    logs = mail.get(f"/api/v2/pushes/{url_token}/audit", headers=bearer(token)).json["logs"]
    assert [e["kind"] for e in logs] == ["creation", "creation_email_send"]
    nested = logs[1]["notify_by_email"]
    assert nested["recipients"] == "ann@example.com" and nested["locale"] == "en"
    assert nested["status"] == "completed" and nested["successful_sends"] == "ann@example.com"
    assert "error_message" not in nested and nested["proceed_at"].endswith("Z")
    assert "notify_by_email" not in logs[0]
    views = mail.get(f"/p/{url_token}/audit.json", headers=bearer(token)).json["views"]
    assert "notify_by_email" not in views[1]  # (v1's shape is upstream's v1)


def test_notify_emails_action_queues_and_sends(mail, smtp, token, app):
    url_token = create(mail, token).json["url_token"]
    r = notify_emails(mail, token, url_token, notify_emails_to="ann@example.com", notify_emails_to_locale="en")
    assert r.status_code == 201 and r.json == {"message": "Recipient(s) are added to the queue to be sent."}
    notify.wait_for_sends()
    assert smtp.sink.wait_for(1)[0][0] == ["ann@example.com"]
    assert [row[2] for row in sendings(app)] == ["completed"]


def test_refused_connection_fails_the_sending_naming_no_secret(settings, database_url, request, caplog):
    port = free_port()
    settings.update({"PWP__MAIL__SMTP_ADDRESS": "127.0.0.1", "PWP__MAIL__SMTP_PORT": port,
                     "PWP__MAIL__SMTP_SECURITY": "none", "PWP__MAIL__MAILER_SENDER": "pwpush@example.com",
                     "PWP__HOST_DOMAIN": "pwpush.example.com"})
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    with caplog.at_level(logging.INFO, logger=app.logger.name):
        r = create(client, request.getfixturevalue("token"), notify_emails_to="ann@example.com")
        notify.wait_for_sends()
    (_to, _locale, status, successful, error, _at), = sendings(app)
    assert status == "failed" and successful is None
    assert error == "Sent to 0 of 1 recipient(s). The SMTP server: Connection refused"
    assert r.json["url_token"] not in error and SECRET not in error
    # Found by hand (a wrong port): the log said "failed, 0 of 1 sent" at INFO, and not why.
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert [re.sub(r"^notify \d+", "notify N", w) for w in warnings] == [
        f"notify N: failed, 0 of 1 sent: the SMTP server 127.0.0.1:{port} (none): Connection refused"]
    assert "ann@example.com" not in caplog.text


def test_a_refused_recipient_makes_it_partially_failed(mail, smtp, token, app):
    create(mail, token, notify_emails_to="refuse@example.com,ann@example.com")
    notify.wait_for_sends()
    assert smtp.sink.wait_for(1)[0][0] == ["ann@example.com"]
    (_to, _locale, status, successful, error, _at), = sendings(app)
    assert (status, successful) == ("partially_failed", "ann@example.com")
    assert error == "Sent to 1 of 2 recipient(s). refuse@example.com: refused (SMTP 550)"


def test_a_refused_recipient_is_a_warning_naming_no_address(mail, smtp, token, app, caplog):
    with caplog.at_level(logging.INFO, logger=app.logger.name):
        create(mail, token, notify_emails_to="refuse@example.com,ann@example.com")
        notify.wait_for_sends()
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert [re.sub(r"^notify \d+", "notify N", w) for w in warnings] == [
        "notify N: partially_failed, 1 of 2 sent: 1 refused by the SMTP server"]
    assert "refuse@example.com" not in caplog.text


def test_starttls_required_but_not_offered_fails(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__MAIL__SMTP_SECURITY="starttls")
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    create(client, request.getfixturevalue("token"), notify_emails_to="ann@example.com")
    notify.wait_for_sends()
    assert sendings(app)[0][2:5] == ("failed", None, "Sent to 0 of 1 recipient(s). The SMTP server: the server "
                                                     "does not offer STARTTLS")
    assert smtp.sink.messages == []


def test_nothing_is_sent_for_a_push_expired_before_its_sending(mail, smtp, token, app):
    url_token = create(mail, token).json["url_token"]
    record_id = queued(app, url_token, "ann@example.com", NOW)
    assert mail.delete(f"/api/v2/pushes/{url_token}", headers=bearer(token)).status_code == 200
    with app.app_context():
        assert notify.send(record_id, NOW) == "failed"
    assert sendings(app)[0][2:5] == ("failed", None, notify.EXPIRED) and smtp.sink.messages == []


def _user(app, user_id):
    from pwp.models import User
    return db.session.get(User, user_id)


def queued(app, url_token, to, at=None, check=True) -> int:
    """Queue a sending of the push's link to `to` (checked, unless not), as the owner asked
    it `at`, without sending it; return its id."""
    with app.app_context():
        push = pushes.find(url_token)
        user = _user(app, push.user_id)
        at = at or pushes.utcnow()
        asked = notify.check(to, None, user, at, push=push) if check else notify.Asked(to.split(","), "en", "", "")
        record_id = notify.queue(push, asked, pushes.Actor(user=user), at).id
        db.session.commit()
        return record_id


def test_a_sending_is_claimed_once(mail, smtp, token, app):
    url_token = create(mail, token).json["url_token"]
    record_id = queued(app, url_token, "ann@example.com")
    with app.app_context():
        assert notify.send(record_id) == "completed"
        assert notify.send(record_id) is None  # (already claimed: not sent again)
    assert len(smtp.sink.wait_for(1)) == 1


def test_purge_expired_sends_what_was_left_pending_over_a_minute(mail, smtp, token, app):
    url_token = create(mail, token).json["url_token"]
    now = pushes.utcnow()
    queued(app, url_token, "ann@example.com", now - timedelta(seconds=30))
    queued(app, url_token, "bob@example.com", now - timedelta(minutes=2))
    result = cli(app, ["purge-expired"])
    assert result.exit_code == 0 and "notifications sent 1" in result.output
    assert [row[2] for row in sendings(app)] == ["pending", "completed"]
    assert smtp.sink.wait_for(1)[0][0] == ["bob@example.com"]


def left_pending_without_the_mail_settings(app, mail, token):
    """A sending queued two minutes ago (a worker went before sending it), and the app then
    run without PWP__MAIL__SMTP_ADDRESS, as a cron job without the server's variables."""
    url_token = create(mail, token).json["url_token"]
    with app.app_context():
        push = pushes.find(url_token)
        user = _user(app, push.user_id)
        now = pushes.utcnow()
        notify.queue(push, notify.check("bob@example.com", None, user, now, push=push),
                     pushes.Actor(user=user), now - timedelta(minutes=2))
        db.session.commit()
    app.config["PWP__MAIL__SMTP_ADDRESS"] = None


def test_purge_expired_without_the_mail_settings_leaves_pending_sendings_alone(mail, smtp, token, app):
    # Found by hand: a cron job without the server's PWP__MAIL__* variables sent to no server
    # and failed the sendings ("The SMTP server: SMTPServerDisconnected"), which none could mend.
    left_pending_without_the_mail_settings(app, mail, token)
    result = cli(app, ["purge-expired"])
    assert result.exit_code == 0 and "notifications sent 0" in result.output
    assert "1 notification e-mail left pending: PWP__MAIL__SMTP_ADDRESS is not set here" in result.output
    assert [row[2] for row in sendings(app)] == ["pending"]


def test_purge_expired_fails_a_sending_cut_off_while_processing(mail, token, app):
    url_token = create(mail, token).json["url_token"]
    queued(app, url_token, "ann@example.com", NOW)
    sql(app, "UPDATE notify_by_emails SET status = 'processing', updated_at = :t",
        t=pushes.utcnow() - timedelta(minutes=20))
    assert cli(app, ["purge-expired"]).exit_code == 0
    assert sendings(app)[0][2:5] == ("failed", None, notify.INTERRUPTED)


def test_deleting_pushes_and_accounts_deletes_their_sendings(settings, smtp, database_url, request):
    settings.update(smtp.settings(), PWP__PURGE_AFTER=86400)
    client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
    make_user = request.getfixturevalue("make_user")
    _uid, token = make_user()
    create(client, token, notify_emails_to="ann@example.com")
    other_id, other = make_user(email="other@example.com")
    create(client, other, notify_emails_to="bob@example.com")
    notify.wait_for_sends()
    sql(app, "UPDATE pushes SET expired = :t, expired_on = :old WHERE user_id = :u",
        t=True, old=pushes.utcnow() - timedelta(days=2), u=other_id)
    sql(app, "UPDATE notify_by_emails SET created_at = :old WHERE user_id = :u",
        old=pushes.utcnow() - timedelta(days=2), u=other_id)  # (sent before it expired)
    assert cli(app, ["purge-expired"]).exit_code == 0
    assert [row[0] for row in sendings(app)] == ["ann@example.com"]
    assert cli(app, ["users", "delete", "owner@example.com", "--yes"]).exit_code == 0
    assert sendings(app) == []


# ----------------------------------------------------------------------------- validation

def test_anonymous_create_with_notify_is_422(mail):
    r = create(mail, None, notify_emails_to="a@example.com", notify_emails_to_locale="en")
    assert r.status_code == 422 and r.json == {
        "notify_emails_to": ["are not allowed for unknown users"],
        "notify_emails_to_locale": ["is not allowed for unknown users"]}
    assert sql(mail.application, "SELECT count(*) FROM pushes")[0][0] == 0


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_create_with_push_and_notify_errors_lists_the_pushs_first(mail, token, app, version):
    """A blank payload and a bad address together: both are said, the push's first, as
    upstream's model lists its own validations before the notify ones (the address's alone
    hid the blank payload until the address was mended). v1 drops notify_emails_*."""
    if version == "v2":
        r = create(mail, token, payload=" ", notify_emails_to="not an address")
        assert r.status_code == 422 and list(r.json.items()) == [
            ("payload", ["Payload is required."]), ("notify_emails_to", ["contains invalid email(s)"])]
        r = create(mail, None, payload="", notify_emails_to="a@example.com")
        assert r.status_code == 422 and list(r.json.items()) == [
            ("payload", ["Payload is required."]), ("notify_emails_to", ["are not allowed for unknown users"])]
    else:
        r = mail.post("/p.json", json={"password": {"payload": " ", "notify_emails_to": "not an address"}},
                      headers=bearer(token))
        assert r.status_code == 422 and r.json == {"payload": ["Payload is required."]}
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0


@pytest.mark.parametrize("to, messages", [
    ("a@example.com,", ["has commas used in the wrong way"]),
    ("a@example.com,,b@example.com", ["has commas used in the wrong way"]),
    (",a@example.com", ["has commas used in the wrong way"]),
    ("a@example.com, A@Example.com", ["contains duplicate emails"]),
    (",".join(f"u{i}@example.com" for i in range(6)), ["contains more than 5 email(s)"]),
    ("not-an-address", ["contains invalid email(s)"]),
    ("a@example", ["contains invalid email(s)"]),
    ("a@example.com\r\nBcc: evil@example.com", ["contains invalid email(s)"]),
    ("Ann <a@example.com>", ["contains invalid email(s)"]),
    ("a" * 243 + "@example.com", ["contains invalid email(s)"]),
    ("b@example.com,b@example.com,", ["has commas used in the wrong way", "contains duplicate emails"]),
], ids=["trailing-comma", "double-comma", "leading-comma", "duplicate", "six", "invalid", "no-tld",
        "header-injection", "display-name", "too-long", "two-errors"])
def test_address_list_rules(mail, token, to, messages):
    r = create(mail, token, notify_emails_to=to)
    assert r.status_code == 422 and r.json == {"notify_emails_to": messages}
    r = notify_emails(mail, token, create(mail, token).json["url_token"], notify_emails_to=to)
    assert r.status_code == 422 and r.json == {"notify_emails_to": messages}


@pytest.mark.parametrize("value", [5, ["a@example.com"], {"a": 1}])
def test_a_recipient_list_that_is_not_a_string_is_invalid(mail, token, value):
    r = create(mail, token, notify_emails_to=value)
    assert r.status_code == 422 and r.json == {"notify_emails_to": ["contains invalid email(s)"]}


def test_five_addresses_are_accepted(mail, smtp, token):
    r = create(mail, token, notify_emails_to=",".join(f"{'u' * 240}{i}@example.com" for i in range(5)))
    assert r.status_code == 201
    notify.wait_for_sends()
    assert len(smtp.sink.wait_for(5)) == 5


@pytest.mark.parametrize("locale, status", [("de", 422), ("xx", 422), (7, 422), ("en", 201), ("", 201)])
def test_locale_must_be_an_available_one(mail, token, locale, status):
    r = create(mail, token, notify_emails_to="a@example.com", notify_emails_to_locale=locale)
    assert r.status_code == status
    if status == 422:
        assert r.json == {"notify_emails_to_locale": ["is not included in the list"]}
    else:
        assert r.json["notify_emails_to_locale"] == "en"
    notify.wait_for_sends()


def test_notify_action_statuses(mail, token, make_user):
    url_token = create(mail, token).json["url_token"]
    assert notify_emails(mail, None, url_token, notify_emails_to="a@example.com").status_code == 401
    assert notify_emails(mail, None, url_token).data == b""
    other = make_user(email="other@example.com")[1]
    r = notify_emails(mail, other, url_token, notify_emails_to="a@example.com")
    assert r.status_code == 403 and r.json == {"error": "That push doesn't belong to you."}
    r = notify_emails(mail, token, "nosuchtoken", notify_emails_to="a@example.com")
    assert r.status_code == 404 and r.json == {"error": "not-found"}
    r = notify_emails(mail, token, url_token)
    assert r.status_code == 422 and r.json == {"notify_emails_to": ["can't be blank"]}


def test_notify_action_takes_top_level_parameters_only(mail, token):
    url_token = create(mail, token).json["url_token"]
    r = notify_emails(mail, token, url_token, push={"notify_emails_to": "a@example.com"})
    assert r.status_code == 422 and r.json == {"notify_emails_to": ["can't be blank"]}


def test_notify_action_on_an_expired_push_is_422(mail, token):
    url_token = create(mail, token).json["url_token"]
    mail.delete(f"/api/v2/pushes/{url_token}", headers=bearer(token))
    r = notify_emails(mail, token, url_token, notify_emails_to="a@example.com", notify_emails_to_locale="en")
    assert r.status_code == 422 and r.json == {
        "notify_emails_to": ["are not available for expired pushes"],
        "notify_emails_to_locale": ["is not available for expired pushes"]}


def test_notify_action_on_a_push_past_its_time_is_422(mail, token, clock):
    url_token = create(mail, token, expire_after_days=1).json["url_token"]
    clock.advance(days=2)
    r = notify_emails(mail, token, url_token, notify_emails_to="a@example.com")
    assert r.status_code == 422 and r.json == {"notify_emails_to": ["are not available for expired pushes"]}


def test_a_push_reaches_five_recipients_at_most_across_sendings(mail, token):
    url_token = create(mail, token, notify_emails_to="a@example.com,b@example.com,c@example.com").json["url_token"]
    r = notify_emails(mail, token, url_token, notify_emails_to="d@example.com,e@example.com,f@example.com")
    assert r.status_code == 422 and r.json == {
        "base": ["You can notify up to 5 email(s) and you have already sent emails to 3 recipients"]}
    assert notify_emails(mail, token, url_token, notify_emails_to="d@example.com,e@example.com").status_code == 201
    notify.wait_for_sends()


def test_daily_cap_per_user(settings, smtp, database_url, request, clock):
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT=3)
    client = request.getfixturevalue("client")
    token = request.getfixturevalue("token")
    assert create(client, token, notify_emails_to="a@example.com,b@example.com").status_code == 201
    r = create(client, token, notify_emails_to="c@example.com,d@example.com")
    assert r.status_code == 422 and r.json == {"base": ["The maximum number of emails has been reached for today"]}
    assert create(client, token, notify_emails_to="c@example.com").status_code == 201
    other = request.getfixturevalue("make_user")(email="other@example.com")[1]
    assert create(client, other, notify_emails_to="e@example.com").status_code == 201  # (per user)
    clock.advance(days=1)  # (a new UTC day)
    assert create(client, token, notify_emails_to="f@example.com,g@example.com").status_code == 201
    notify.wait_for_sends()


@pytest.mark.parametrize("limit, status", [(0, 422), (None, 201)], ids=["zero-blocks", "none-unlimited"])
def test_daily_cap_zero_and_unlimited(settings, smtp, database_url, request, limit, status):
    settings.update(smtp.settings(), PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT=limit)
    client = request.getfixturevalue("client")
    token = request.getfixturevalue("token")
    if limit is None:
        for _ in range(110):  # (past the default cap of 500 recipients)
            url_token = create(client, token).json["url_token"]
            queued(client.application, url_token, ",".join(f"u{i}@example.com" for i in range(5)), check=False)
    r = create(client, token, notify_emails_to="a@example.com")
    assert r.status_code == status
    notify.wait_for_sends()


def test_five_notify_requests_a_minute_per_user(mail, token, clock):
    url_token = create(mail, token).json["url_token"]
    for _ in range(5):
        assert notify_emails(mail, token, url_token).status_code == 422
    r = notify_emails(mail, token, url_token, notify_emails_to="a@example.com")
    assert r.status_code == 429
    assert r.json == {"error": "Too many email notification requests. Please try again in a minute."}
    clock.advance(minutes=1)
    assert notify_emails(mail, token, url_token, notify_emails_to="a@example.com").status_code == 201
    notify.wait_for_sends()


def test_v1_never_takes_notify_emails(mail, smtp, token, app):
    r = mail.post("/p.json", json={"password": {"payload": "x", "notify_emails_to": "a@example.com",
                                                "notify_emails_to_locale": "xx"}}, headers=bearer(token))
    assert r.status_code == 201 and "notify_emails_to" not in r.json
    assert sendings(app) == []


def _nothing_held(database_url) -> bool:
    """Whether no connection holds a transaction now: SQLite's write lock is free (taken and
    given back at once, no waiting), no PostgreSQL connection sits idle in a transaction."""
    if database_url.startswith("sqlite"):
        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                            "AND state LIKE 'idle in transaction%'").fetchone()[0] == 0


def test_no_transaction_is_held_while_the_mails_go_out(settings, database_url, request):
    """The sender read its sending and the push, then talked to the SMTP server inside that
    read's transaction: on SQLite it held the database's write lock (BEGIN IMMEDIATE) all the
    while, so every create and view of every worker waited on the SMTP server (up to its
    timeout at each step), on PostgreSQL a pooled connection sat idle in a transaction."""
    smtp = SmtpServer(on_data=lambda: _nothing_held(database_url))
    smtp.controller.start()
    try:
        settings.update(smtp.settings())
        client, app = request.getfixturevalue("client"), request.getfixturevalue("app")
        url_token = create(client, request.getfixturevalue("token")).json["url_token"]
        record_id = queued(app, url_token, "ann@example.com,bob@example.com")
        with app.app_context():
            assert notify.send(record_id) == "completed"  # (here: the probe runs while it waits)
    finally:
        smtp.controller.stop()
    assert smtp.sink.seen == [True, True]


def _refuse_sendings(app):
    """Make the database refuse every new sending (a trigger), as a failing write would."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        sql(app, "CREATE TRIGGER refuse BEFORE INSERT ON notify_by_emails BEGIN SELECT RAISE(ABORT, 'refused'); END")
        return
    sql(app, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'refused'; END $$")
    sql(app, "CREATE TRIGGER refuse BEFORE INSERT ON notify_by_emails FOR EACH ROW EXECUTE FUNCTION refuse()")


def test_a_push_and_its_sending_are_stored_together_or_not_at_all(mail, token, app):
    """The push was committed first and its sending after, in a second transaction: a sending
    that could not be written left a push the client was told nothing of (a 500, so it made
    another), and the sender's row lock (the caps' check) ended before the sending was counted."""
    _refuse_sendings(app)
    try:
        status = create(mail, token, notify_emails_to="ann@example.com").status_code
    except Exception as exc:  # (the test client re-raises what Flask would answer 500)
        status = type(exc).__name__
    finally:  # (the run's PostgreSQL database serves the tests after this one)
        sql(app, "DROP TRIGGER refuse" + ("" if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
                                          else " ON notify_by_emails; DROP FUNCTION refuse()"))
    assert status != 201
    assert sql(app, "SELECT count(*) FROM pushes")[0][0] == 0
    assert sql(app, "SELECT count(*) FROM audit_logs")[0][0] == 0


def test_five_long_addresses_all_refused_are_recorded(mail, smtp, token, app):
    """Five refusals of 254-character addresses made an error message of 1 407 characters:
    PostgreSQL's error_message column (1 000) refused it, and the sending stayed processing."""
    to = ",".join(f"refuse{i}{'u' * 235}@example.com" for i in range(5))
    assert create(mail, token, notify_emails_to=to).status_code == 201
    notify.wait_for_sends()
    (_to, _locale, status, successful, error, _at), = sendings(app)
    assert (status, successful) == ("failed", None)
    assert error.startswith("Sent to 0 of 5 recipient(s). refuse0") and len(error) <= 1000


def test_the_api_page_says_when_this_instance_sends_no_email(settings, smtp, database_url, request):
    # Found by hand: without an SMTP server /help/api offered notify_emails_to as if it worked.
    client = request.getfixturevalue("client")
    assert "not on this instance, which sends no e-mail" in html.unescape(client.get("/help/api").get_data(as_text=True))


def test_the_api_page_offers_notify_when_this_instance_sends_email(mail):
    text = html.unescape(mail.get("/help/api").get_data(as_text=True))
    assert "Up to 5 comma-separated addresses to e-mail the link to (signed-in creators" in text
    assert "sends no e-mail" not in text


def test_notify_during_its_accounts_deletion_waits_and_is_404_not_a_deadlock(mail, smtp, token, app, database_url):
    """An account deletion locks its pushes' rows, then the account's; the notify action locked
    the sender's row (its caps), then logged against the push: each waited for the other's
    (PostgreSQL aborts one: a 500). It now holds the push first, so it waits, then finds it gone."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import threading
    url_token = create(mail, token).json["url_token"]
    (user_id,), = sql(app, "SELECT user_id FROM pushes WHERE url_token = :t", t=url_token)
    answer = []
    with psycopg.connect(database_url) as deletion:
        deletion.execute("SELECT id FROM pushes WHERE user_id = %s ORDER BY id FOR UPDATE", (user_id,))
        sender = threading.Thread(target=lambda: answer.append(
            notify_emails(mail, token, url_token, notify_emails_to="ann@example.com")))
        sender.start()
        wait_for_a_lock_waiter(database_url, "the notify action", thread=sender)
        deletion.execute("SELECT id FROM users WHERE id = %s FOR UPDATE", (user_id,))
        deletion.execute("DELETE FROM pushes WHERE user_id = %s", (user_id,))
        deletion.execute("DELETE FROM users WHERE id = %s", (user_id,))
        deletion.commit()
        sender.join(timeout=60)
    assert answer[0].status_code == 404, answer[0].status_code
    assert sendings(app) == []
