"""Notify by e-mail (upstream's notify_by_email): validate a sender's recipients, queue one
sending per request, send it after the request's commit, recover what was left pending.

There is no job queue: a sending is a NotifyByEmail row (status pending) written with its
creation_email_send audit event; after the commit a thread of the worker sends it, having
first claimed it with one conditional write (pending -> processing), so that two workers or
app instances never both send it. `flask --app pwpush purge-expired` sends what was left
pending (a worker killed before its thread ran, or one whose MAX_SENDING_THREADS were all
busy with a slow SMTP server). Logs name a sending's id and counts, never
an address, a link or the SMTP password.
"""
import collections
import logging
import os
import re
import smtplib
import socket
import ssl
import threading
import time
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from flask import current_app
from sqlalchemy import select, update

from . import auth, pushes
from .config import SMTP_SECURITY, mail_base_url
from .errors import NotFound, TooManyNotifyRequests, ValidationFailed
from .models import AuditKind, AuditLog, NotifyByEmail, NotifyStatus, Push, User, db
from .words import plural

log = logging.getLogger("pwp")  # (the app's logger: its RedactFilter sees every record)

SUBJECT = "You have received a push"
MAX_RECIPIENTS = 5  # per push, across its sendings (upstream's)
REQUESTS_PER_MINUTE = 5  # per user (upstream's rate limit of the notify_emails action)
# Only English mails: the pages are in English. An omitted locale means it.
LOCALES = ("en",)
DEFAULT_LOCALE = "en"
# Upstream's MultipleEmailsValidator pattern; ASCII only (as Ruby's \w): no quote, angle
# bracket, space or line break can reach a header.
ADDRESS_MAX = 254
EMAIL = re.compile(r"([\w.%+-]+)@([\w-]+\.)+(\w{2,})", re.ASCII | re.IGNORECASE)
PENDING_GRACE = timedelta(minutes=1)  # a pending sending older than this was left behind
PROCESSING_STALE = timedelta(minutes=15)  # a sending still processing this long was cut off
INTERRUPTED = "The sending was interrupted (the server stopped); some recipients may have got the e-mail."
EXPIRED = "The push expired before the e-mails were sent: none was sent."
# A mail's whole SMTP conversation (connection, greeting, TLS, login, every recipient's mail)
# ends by this many PWP__MAIL__SMTP_TIMEOUTs (60 s by default): that timeout is each read's,
# and a server that trickles its answers (a byte within each) held a sending thread for ever.
SMTP_DEADLINE = 6
MAX_SENDING_THREADS = 8  # per process: a hung SMTP server holds no more threads than these
MAX_QUEUED = 32  # account mails per process waiting for one of them (a hung server: no more)
ERROR_MAX = NotifyByEmail.__table__.c.error_message.type.length

# The threads sending now (tests join them: wait_for_sends), the places they take, and the
# jobs waiting for a place (in_thread's queued: taken by a thread as it ends its job; under
# _queue_lock, as is the last place's taking and giving back, so none waits with no thread).
_threads: list[threading.Thread] = []
_threads_lock = threading.Lock()
_places = threading.BoundedSemaphore(MAX_SENDING_THREADS)
_queue: collections.deque = collections.deque()
_queue_lock = threading.Lock()


def available(config=None) -> bool:
    """Tell whether notify by e-mail can be used: enabled, an SMTP server, logins on (upstream's rule)."""
    config = config or current_app.config
    return bool(config["PWP__NOTIFY_BY_EMAIL__ENABLED"] and config["PWP__MAIL__SMTP_ADDRESS"]
                and not config["PWP__DISABLE_LOGINS"])


# ----------------------------------------------------------------------------- validation

def address_errors(value: str) -> tuple[list[str], list[str]]:
    """Split a comma-separated address list; return (addresses, upstream's format errors)."""
    emails = [e.strip() for e in value.split(",")]
    errors = []
    if any(not e for e in emails) or value.rstrip().endswith(","):
        errors.append("has commas used in the wrong way")
    kept = [e for e in emails if e]
    if len({e.lower() for e in kept}) != len(kept):
        errors.append("contains duplicate emails")
    if len(kept) > MAX_RECIPIENTS:
        errors.append(f"contains more than {MAX_RECIPIENTS} email(s)")
    # (254: the longest address SMTP carries; five of them fit the recipients column.)
    if not all(len(e) <= ADDRESS_MAX and EMAIL.fullmatch(e) for e in kept):
        errors.append("contains invalid email(s)")
    return kept, errors


class Asked:
    """A valid request to notify: the addresses, the locale and the values as sent (echoed)."""

    def __init__(self, recipients, locale, sent_to, sent_locale):
        self.recipients, self.locale = recipients, locale
        self.sent_to, self.sent_locale = sent_to, sent_locale


def _given(value) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def check(to, locale, user: User | None, now: datetime, push: Push | None = None,
          required=False) -> Asked | None:
    """Validate a request to notify (create: push None; the notify_emails action: required).
    None when nothing was asked; ValidationFailed with upstream's messages."""
    if not _given(to) and not required:
        return None
    errors: dict[str, list[str]] = {}

    def add(field, message):
        errors.setdefault(field, []).append(message)

    def both(plural, singular):
        add("notify_emails_to", plural)
        if _given(locale):
            add("notify_emails_to_locale", singular)

    if not available():
        both("are not available", "is not available")
        add("base", "Notify by email feature is not enabled")
    elif user is None:
        both("are not allowed for unknown users", "is not allowed for unknown users")
    elif push is not None and not pushes.is_owner(push, user):
        both("are allowed only for owners", "is allowed only for owners")
    elif push is not None and (push.expired or push.past_limits(now)):
        both("are not available for expired pushes", "is not available for expired pushes")
    if errors:
        raise ValidationFailed(errors)
    if not _given(to):
        raise ValidationFailed({"notify_emails_to": ["can't be blank"]})
    recipients, format_errors = address_errors(to) if isinstance(to, str) else ([], ["contains invalid email(s)"])
    for message in format_errors:
        add("notify_emails_to", message)
    if _given(locale) and locale not in LOCALES:
        add("notify_emails_to_locale", "is not included in the list")
    if errors:
        raise ValidationFailed(errors)
    _check_limits(len(recipients), user, push, now)
    return Asked(recipients, locale if _given(locale) else DEFAULT_LOCALE, to, locale)


def check_create(fields: dict, new: pushes.NewPush, user: User | None, now: datetime,
                 form_errors: dict | None = None) -> Asked | None:
    """A create's request to notify (check's), from the push's parameters; its errors come
    after the push's own, as upstream's model lists its validations (and a sender reads
    first: alone, they hid a blank secret until the address was mended). form_errors (the
    web form's emptied number boxes) come between them, as the page orders its fields:
    with any, ValidationFailed whatever the rest."""
    try:
        asked = check(fields.get("notify_emails_to"), fields.get("notify_emails_to_locale"), user, now)
    except ValidationFailed as exc:
        raise ValidationFailed({**pushes.validation_errors(new), **(form_errors or {}), **exc.errors}) from None
    if form_errors:
        raise ValidationFailed({**pushes.validation_errors(new), **form_errors})
    return asked


def _sent_to(where) -> int:
    """How many recipients the sendings matching `where` had."""
    return sum(len(r.split(",")) for r in db.session.scalars(select(NotifyByEmail.recipients).where(*where)))


def _check_limits(count: int, user: User, push: Push | None, now: datetime):
    """The daily cap of the user and the per-push total; ValidationFailed (base) past either."""
    # The sender's row locked: two requests at once cannot both pass a cap that has room for
    # one of them.
    auth.hold(user)
    limit = current_app.config["PWP__NOTIFY_BY_EMAIL__DAILY_LIMIT"]
    # (0: every sending is past it.) pushes.purge keeps the day's sendings.
    if limit is not None and _sent_to(
            [NotifyByEmail.user_id == user.id, NotifyByEmail.created_at >= pushes.day_start(now)]) + count > limit:
        raise ValidationFailed({"base": ["The maximum number of emails has been reached for today"]})
    already = _sent_to([NotifyByEmail.push_id == push.id]) if push is not None else 0
    if already + count > MAX_RECIPIENTS:
        raise ValidationFailed({"base": [f"You can notify up to {MAX_RECIPIENTS} email(s) and you have "
                                         f"already sent emails to {already} recipients"]})


def throttle(user: User, now: datetime):
    """Count one notify request of the user; TooManyNotifyRequests past 5 a minute (shared
    by every worker and instance: the database's counter, as the passphrase limit's)."""
    if pushes.throttle_hit(f"notify:{user.id}", 60, now) > REQUESTS_PER_MINUTE:
        db.session.commit()
        raise TooManyNotifyRequests()
    db.session.commit()


# ----------------------------------------------------------------------------- queueing

def queue(push, asked: Asked, actor: pushes.Actor, now: datetime) -> NotifyByEmail:
    """Write the sending (pending) and its creation_email_send event in the session's
    transaction, uncommitted. Not capped as other events: a push has at most 5 recipients,
    so few sendings. The link's base is the configured one (mail_base_url), never the
    request's Host."""
    event = AuditLog(push_id=push.id, created_at=now, **pushes.audit_event(AuditKind.creation_email_send, actor))
    db.session.add(event)
    db.session.flush()
    record = NotifyByEmail(push_id=push.id, audit_log_id=event.id, user_id=actor.user.id,
                           recipients=",".join(asked.recipients), locale=asked.locale,
                           base_url=mail_base_url(current_app.config),
                           status=NotifyStatus.pending.value, created_at=now, updated_at=now)
    db.session.add(record)
    db.session.flush()
    return record


def create_push(new: pushes.NewPush, asked: Asked | None, actor: pushes.Actor, now: datetime):
    """Create a push; with a request to notify (check's), its sending queued in the same
    transaction (check's lock on the sender's row held until the sending is counted), then
    dispatched."""
    if asked is None:
        return pushes.create(new, actor, now)
    queued = []
    push = pushes.create(new, actor, now, then=lambda push: queued.append(queue(push, asked, actor, now).id))
    dispatch(queued[0])
    return push


def notify(url_token: str, to, locale, actor: pushes.Actor, now: datetime) -> NotifyByEmail:
    """The notify_emails action: the owner's request to send a live push's link (404, 403,
    429, 422 as upstream); the sending is queued and dispatched."""
    push = pushes.owned(url_token, actor.user)
    throttle(actor.user, now)
    if not pushes.hold(push):  # (before check locks the sender's row: see pushes.hold)
        db.session.rollback()
        raise NotFound()
    asked = check(to, locale, actor.user, now, push=push, required=True)
    record = queue(push, asked, actor, now)
    db.session.commit()
    dispatch(record.id)
    return record


def dispatch(record_id: int):
    """Send a queued (committed) sending in a thread of this worker, not holding the request;
    with no thread free, leave it pending for purge-expired (send_pending)."""
    if not in_thread(_send_in_app, (current_app._get_current_object(), record_id), f"notify-{record_id}"):
        log.warning("notify %d: left pending for purge-expired: %d e-mails are being sent already",
                    record_id, MAX_SENDING_THREADS)


def in_thread(target, args, name, queued=False) -> bool:
    """Run target(*args) in a thread of this worker (wait_for_sends joins it); when
    MAX_SENDING_THREADS of them run already (an SMTP server slow to answer: each waits up to
    PWP__MAIL__SMTP_TIMEOUT at each step), queued: after theirs, by the first that ends, if
    fewer than MAX_QUEUED wait; else False, nothing run."""
    with _queue_lock:
        if not _places.acquire(blocking=False):
            if queued and len(_queue) < MAX_QUEUED:
                _queue.append((target, args))
                return True
            return False

    def run():
        job = (target, args)
        while job is not None:
            try:
                job[0](*job[1])
            except Exception as exc:  # (the targets log their own; a traceback could carry a link)
                log.error("a sending thread's job failed (%s)", type(exc).__name__)
            with _queue_lock:
                job = _queue.popleft() if _queue else None
                if job is None:
                    _places.release()

    # Not a daemon: a worker that stops (a restart, max_requests) lets it finish, within
    # gunicorn's graceful_timeout; one killed mid-send leaves a notification processing (see
    # send_pending), and loses an account mail (its owner asks for another), queued ones too.
    thread = threading.Thread(target=run, name=name)
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    try:
        thread.start()
    except BaseException:  # (no thread could be made: its place is free again)
        _places.release()
        raise
    return True


class _Later:
    """Jobs to run a while later (later()), by this process's one 'sending-later' thread: a
    thread started where a job is given (a link form's answer's close()) cost its start there,
    which a client could time. It waits for the next job's time, or, with none, until it is
    told of one or of the main thread's end (woken for nothing else); not a daemon: once the
    main thread has ended (the process stops) it runs those left at once, and ends."""

    def __init__(self):  # (again in a forked child: its parent's threads, jobs and lock are not its own)
        self.ready = threading.Condition(threading.Lock())
        self.jobs = []  # (when, job)
        self.started = False
        self.ending = False

    def prepare(self):
        if self.started:  # (no lock: most requests)
            return
        with self.ready:
            if not self.started:
                threading.Thread(target=self.run, name="sending-later").start()
                # (A daemon, blocked until the main thread's end, to say it: nothing to finish.)
                threading.Thread(target=self.end, name="sending-later-end", daemon=True).start()
                self.started = True

    def end(self):
        threading.main_thread().join()
        with self.ready:
            self.ending = True
            self.ready.notify_all()

    def add(self, after: float, job):
        self.prepare()
        with self.ready:
            if not self.ending:
                self.jobs.append((time.monotonic() + after, job))
                self.ready.notify_all()
                return
        _run(job)  # (the process stops: at once)

    def run(self):
        with self.ready:
            while self.jobs or not self.ending:
                now = time.monotonic()
                soonest = min(self.jobs, key=lambda entry: entry[0], default=None)
                if soonest is None or (soonest[0] > now and not self.ending):
                    self.ready.wait(None if soonest is None else soonest[0] - now)
                    continue
                _run(soonest[1])  # (on the list meanwhile: its sending thread is not yet there)
                self.jobs.remove(soonest)
                self.ready.notify_all()  # (wait's)

    def wait(self, timeout: float) -> bool:
        """Wait until every job given has run (tests)."""
        with self.ready:
            return self.ready.wait_for(lambda: not self.jobs, timeout)


def _run(job):
    try:
        job()
    except Exception as exc:  # (a traceback could carry an address)
        log.error("a job run later failed (%s)", type(exc).__name__)


_later = _Later()


def _forked():
    """(In a forked child: gunicorn's worker, forked by its master, which loaded the app with
    --preload.) Its parent's sending threads, their places, its queued and later jobs and its
    locks (held by another thread as it forked: waited for for good) are not the child's: a
    child ran its parent's queued jobs again, counted them as its own at its stop, and sent
    nothing while its parent's threads held every place."""
    global _threads, _threads_lock, _places, _queue, _queue_lock
    _threads, _threads_lock = [], threading.Lock()
    _places = threading.BoundedSemaphore(MAX_SENDING_THREADS)
    _queue, _queue_lock = collections.deque(), threading.Lock()
    _later.__init__()


os.register_at_fork(after_in_child=_forked)


def prepare_later():
    """Start this process's thread that runs jobs later (later()), if not yet: at a request's
    start, for any request alike, not where a job is given."""
    _later.prepare()


def later(after: float, job):
    """Run job() after `after` seconds, in this process's one thread for it (prepare_later):
    it should only start a thread of its own (in_thread), or do nothing."""
    _later.add(after, job)


def _send_in_app(app, record_id: int):
    with app.app_context():
        try:
            send(record_id)
        except Exception as exc:  # (a database gone: pending or processing, for purge-expired)
            log.error("notify %d: not sent (%s)", record_id, type(exc).__name__)
        finally:
            db.session.remove()


def pending_jobs() -> int:
    """This process's e-mail jobs not finished: being sent, waiting for a sending thread, or to
    be started later (later(); a forked child's its own). A stopping worker's (pwp/worker_mails.py)."""
    with _threads_lock:
        sending = sum(thread.is_alive() for thread in _threads)
    return sending + len(_queue) + len(_later.jobs)


def wait_for_a_job(seconds: float) -> bool:
    """Wait up to `seconds` for a job of pending_jobs() to end or start; False at once when none
    can (jobs queued with no sending thread left to take them)."""
    with _threads_lock:
        threads = [thread for thread in _threads if thread.is_alive()]
    if threads:
        threads[0].join(seconds)
    elif _later.jobs:
        _later.wait(seconds)
    else:
        return False
    return True


def wait_for_sends(timeout: float = 30):
    """Wait for this process's sending threads to end (tests), those they start too, and
    those to be started later (later())."""
    _later.wait(timeout)
    joined = set()
    while True:
        with _threads_lock:
            threads = [thread for thread in _threads if thread not in joined]
        if not threads:
            return
        for thread in threads:
            thread.join(timeout)
            joined.add(thread)


# ----------------------------------------------------------------------------- sending

def send(record_id: int, now: datetime | None = None) -> str | None:
    """Claim a pending sending (pending -> processing, one conditional write: one sender
    wins) and send it, one mail per recipient; return its final status, or None if another
    sender had it."""
    now = now or pushes.utcnow()
    claimed = db.session.execute(
        update(NotifyByEmail).where(NotifyByEmail.id == record_id, NotifyByEmail.status == NotifyStatus.pending.value)
        .values(status=NotifyStatus.processing.value, updated_at=now)
        .execution_options(synchronize_session=False)).rowcount
    db.session.commit()
    if not claimed:
        return None
    record = db.session.get(NotifyByEmail, record_id)
    push = db.session.get(Push, record.push_id)
    recipients = record.recipient_list
    if push is None or push.expired or push.past_limits(now):
        return _finish(record_id, len(recipients), [], EXPIRED, now)
    body = _body(push, record, now)
    # End the read before the SMTP server's turn, which may last its timeout at each step:
    # on SQLite the transaction held the database's write lock (BEGIN IMMEDIATE), on
    # PostgreSQL a pooled connection.
    db.session.rollback()
    sent, error, why = deliver(current_app.config, recipients, body)
    return _finish(record_id, len(recipients), sent, error, pushes.utcnow(), why)


def _body(push, record, now) -> str:
    """The share message of the preview page, with the secret link (no payload), on the
    configured base (as now set; the row keeps the one it was queued with)."""
    from .api import secret_url
    from .web import share_message

    return share_message(push, secret_url(push, record.base_url, locale=""), now)


def _finish(record_id: int, total: int, sent: list[str], error: str | None, now: datetime,
            why: str | None = None) -> str:
    """Record how a sending ended; log it (a warning with why, naming no address, if not all went)."""
    status = (NotifyStatus.completed if len(sent) == total and not error
              else NotifyStatus.partially_failed if sent else NotifyStatus.failed).value
    db.session.execute(
        update(NotifyByEmail).where(NotifyByEmail.id == record_id)
        .values(status=status, successful_sends=",".join(sent) or None, error_message=error or None,
                proceed_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    db.session.commit()
    if why is None:  # (all sent, or the push expired first)
        log.info("notify %d: %s, %d of %d sent", record_id, status, len(sent), total)
    else:
        log.warning("notify %d: %s, %d of %d sent: %s", record_id, status, len(sent), total, why)
    return status


def _describe(exc: Exception) -> str:
    """An SMTP failure in a few words: codes and error kinds, never the server's text."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "the server does not offer STARTTLS"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"the server refused the user name or password (SMTP {exc.smtp_code})"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or type(exc).__name__})"
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return "timed out"  # (smtplib turns a timed-out answer into SMTPServerDisconnected)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return type(exc).__name__


class _Watch:
    """A mail's SMTP connection, shut down by give_up() (deliver's timer, at the conversation's
    deadline): each read or write then fails at once, however the server trickles. Through a
    duplicate of its descriptor, ours until close(): the same connection once TLS wraps it, and
    never another one's descriptor, closed by smtplib and reused meanwhile."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sock = None
        self.given_up = False

    def add(self, sock):
        with self.lock:
            try:
                self.sock = socket.socket(fileno=os.dup(sock.fileno()))
            except OSError:
                sock.close()
                raise
            if self.given_up:  # (its connect took the rest of the deadline)
                self.sock.shutdown(socket.SHUT_RDWR)

    def give_up(self):
        with self.lock:
            self.given_up = True
            if self.sock is not None:
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # (the server closed it already)
                    pass

    def close(self):
        with self.lock:
            if self.sock is not None:
                self.sock.close()


class _Watched:
    """(smtplib's SMTP, SMTP_SSL.) Its connection given to a _Watch as it is made."""

    def __init__(self, watch, *args, **kwargs):
        self.watch = watch
        super().__init__(*args, **kwargs)

    def _get_socket(self, host, port, timeout):
        sock = super()._get_socket(host, port, timeout)
        self.watch.add(sock)
        return sock


class _SMTP(_Watched, smtplib.SMTP):
    pass


class _SMTP_SSL(_Watched, smtplib.SMTP_SSL):
    pass


def _connect(config, watch):
    security, timeout = config["PWP__MAIL__SMTP_SECURITY"], config["PWP__MAIL__SMTP_TIMEOUT"]
    host, port = config["PWP__MAIL__SMTP_ADDRESS"], config["PWP__MAIL__SMTP_PORT"] or SMTP_SECURITY[security]
    context = ssl.create_default_context()
    if security == "tls":
        smtp = _SMTP_SSL(watch, host, port, timeout=timeout, context=context)
    else:
        smtp = _SMTP(watch, host, port, timeout=timeout)
    try:
        if security == "starttls":
            smtp.starttls(context=context)
        if config["PWP__MAIL__SMTP_USER_NAME"]:
            smtp.login(config["PWP__MAIL__SMTP_USER_NAME"], config["PWP__MAIL__SMTP_PASSWORD"] or "")
    except BaseException:
        smtp.close()
        raise
    return smtp


def message(sender: str, recipient: str, body: str, subject: str = SUBJECT) -> EmailMessage:
    """One mail (recipient: a validated or stored address, so no header can be injected)."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = recipient
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    msg.set_content(body)
    return msg


def deliver(config, recipients: list[str], body: str,
            subject: str = SUBJECT) -> tuple[list[str], str | None, str | None]:
    """Send one mail per recipient over one SMTP connection; return who got it, what failed
    (for the sender: the addresses refused) and why, for the log (naming no address)."""
    sender = config["PWP__MAIL__MAILER_SENDER"]
    sent, failures, refused = [], [], 0
    seconds = SMTP_DEADLINE * config["PWP__MAIL__SMTP_TIMEOUT"]
    watch = _Watch()
    timer = threading.Timer(seconds, watch.give_up)
    timer.daemon = True  # (cancelled as the conversation ends; a process that exits needs it not)
    timer.start()
    try:
        with _connect(config, watch) as smtp:
            for recipient in recipients:
                try:
                    smtp.send_message(message(sender, recipient, body, subject), from_addr=parseaddr(sender)[1],
                                      to_addrs=[recipient])
                    sent.append(recipient)
                except smtplib.SMTPRecipientsRefused as exc:
                    if watch.given_up:  # (its answer cut short: none)
                        raise
                    code = exc.recipients.get(recipient, (None,))[0]
                    failures.append(f"{recipient}: refused (SMTP {code})")
                    refused += 1
                except smtplib.SMTPResponseException as exc:
                    if watch.given_up:  # (an answer cut short)
                        raise
                    failures.append(f"{recipient}: {_describe(exc)}")
                    refused += 1
    except (OSError, smtplib.SMTPException) as exc:
        reason = f"took longer than {seconds} s" if watch.given_up else _describe(exc)
        failures.append(f"The SMTP server: {reason}")
        security = config["PWP__MAIL__SMTP_SECURITY"]
        server = f"{config['PWP__MAIL__SMTP_ADDRESS']}:{config['PWP__MAIL__SMTP_PORT'] or SMTP_SECURITY[security]}"
        why = f"the SMTP server {server} ({security}): {reason}"
    else:
        why = None
    finally:
        timer.cancel()
        watch.close()
    if not failures:
        return sent, None, None
    if refused:
        why = "; ".join(filter(None, [f"{refused} refused by the SMTP server", why]))
    error = f"Sent to {len(sent)} of {len(recipients)} recipient(s). " + "; ".join(failures)
    # (Five long addresses refused run past the column: PostgreSQL would refuse the record.)
    return sent, error if len(error) <= ERROR_MAX else error[:ERROR_MAX - 1] + "…", why


# ----------------------------------------------------------------------------- recovery, pages

def send_pending(now: datetime) -> tuple[int, int]:
    """Send the sendings left pending over a minute (purge-expired); mark those cut off
    while processing as failed. Return how many were sent (or tried), and how many were left
    pending because notify by e-mail is not available here (a cron job without the server's
    PWP__MAIL__* settings must not fail them: the server, or a later run, can still send them)."""
    db.session.execute(
        update(NotifyByEmail).where(NotifyByEmail.status == NotifyStatus.processing.value,
                                    NotifyByEmail.updated_at <= now - PROCESSING_STALE)
        .values(status=NotifyStatus.failed.value, error_message=INTERRUPTED, proceed_at=now, updated_at=now)
        .execution_options(synchronize_session=False))
    ids = list(db.session.scalars(
        select(NotifyByEmail.id).where(NotifyByEmail.status == NotifyStatus.pending.value,
                                       NotifyByEmail.created_at <= now - PENDING_GRACE)
        .order_by(NotifyByEmail.id)))
    db.session.commit()
    if not available():
        return 0, len(ids)
    return sum(1 for record_id in ids if send(record_id, now) is not None), 0


def of_events(event_ids: list[int]) -> dict[int, NotifyByEmail]:
    """The sendings of these audit events, by event id."""
    if not event_ids:
        return {}
    return {r.audit_log_id: r for r in db.session.scalars(
        select(NotifyByEmail).where(NotifyByEmail.audit_log_id.in_(event_ids)))}


def of_push(push) -> list[NotifyByEmail]:
    """A push's sendings, oldest first (its preview page lists them)."""
    return list(db.session.scalars(
        select(NotifyByEmail).where(NotifyByEmail.push_id == push.id).order_by(NotifyByEmail.id)))


def summaries(push_ids: list[int]) -> dict[int, str]:
    """For the dashboard: what became of each push's sendings, in a few words, by push id
    ('Link e-mailed to 2 addresses', 'Link e-mailed to 1 of 2 (1 failed)'); none: no entry."""
    counts: dict[int, list[int]] = {}
    if push_ids:
        for record in db.session.scalars(select(NotifyByEmail).where(NotifyByEmail.push_id.in_(push_ids))):
            total, sent, failed = counts.setdefault(record.push_id, [0, 0, 0])
            recipients = len(record.recipient_list)
            done = len(record.successful_sends.split(",")) if record.successful_sends else 0
            finished = record.status in (NotifyStatus.completed.value, NotifyStatus.partially_failed.value,
                                         NotifyStatus.failed.value)
            counts[record.push_id] = [total + recipients, sent + done, failed + (recipients - done if finished else 0)]
    out = {}
    for push_id, (total, sent, failed) in counts.items():
        if sent == total:
            out[push_id] = f"Link e-mailed to {plural(total, 'address', 'addresses')}"
        else:
            queued = total - sent - failed
            why = ", ".join(w for n, w in ((failed, f"{failed} failed"), (queued, f"{queued} queued")) if n)
            out[push_id] = f"Link e-mailed to {sent} of {total} ({why})"
    return out


def recipients_left(push) -> int:
    """How many more addresses the push's link may be sent to."""
    return max(0, MAX_RECIPIENTS - _sent_to([NotifyByEmail.push_id == push.id]))

