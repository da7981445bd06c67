"""A model-based (stateful) test of the push lifecycle.

Hypothesis drives random sequences of operations against the real app (the Flask test
client on a real SQLite file and a real PostgreSQL database, with time passed through the
`clock` fixture: no sleeps) and checks every answer against a small pure-Python model of a
push (`Model` below): create (text, url, qr, file; random limits, passphrase, retrieval
step, deletable_by_viewer; anonymous, two accounts, an admin), retrieve (.json, v1 and v2;
right, near misses, empty or no passphrase; anonymous, owner, another user, admin), the web's
payload page (a browser's, its file links taken too), HEADs, preview, audit, the owners'
active/expired lists, expiry by owner or viewer, file downloads (GET and HEAD, of a link
taken while the push lived), time passing, purge-expired; and a push used up then asked
again each way (use_up: the sequences that reach a used-up file push).

The model follows /work/shared/reference/pwpush-behaviour.md (section numbers below) with
the deviations of DESIGN.md (the passphrase is never returned; json_url works; a file push
has files). Run derandomized, so CI sees the same sequences every time (the seed comes from
the source of the test: an edit of it draws other sequences, as a run alone or in the suite
draws the same). Every step checks each stored push against the model, its audit events'
kinds and users too. Its 55 examples do not reach everything: an admin's view of its own live
push is test_api_retrieve's.
"""
import io
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from markupsafe import escape
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

import pytest

from conftest import NOW, bearer, sql
from pwp import pushes
from pwp.models import AuditKind

BASE = "http://localhost"
CALLERS = ("anon", "a", "b", "admin")  # who makes a request: nobody, two accounts, an admin
CREATORS = (None, "a", "b", "admin")
AGENT = {c: f"model-{c}" for c in CALLERS}  # each caller's User-Agent, to tell its audit events
PURGE_ANONYMOUS_AFTER = timedelta(days=1)  # the default
PURGE_AFTER = timedelta(days=3)  # set below, so that owned pushes are deleted too
DURATIONS = pushes.DURATIONS
# Wrong passphrases near the right one: one more character, a prefix, the case swapped, the
# last character changed (a check that compared a prefix, or ignored case, lets some through).
NEAR_MISSES = ("longer", "shorter", "case", "changed")
EXPIRED_PAGE = b"We apologize but this secret link has expired."

SHOW_KEYS = {"created_at", "days_remaining", "deletable_by_viewer", "deleted", "expire_after_days",
             "expire_after_views", "expired", "expired_on", "files", "html_url", "json_url", "passphrase",
             "payload", "retrieval_step", "updated_at", "url_token", "views_remaining"}
CREATE_KEYS = SHOW_KEYS - {"files", "payload"} | {"name", "note"}
DESTROY_KEYS = SHOW_KEYS - {"files", "payload"}


# A create's choices: limits in and out of range, the CLI's durations, options given or not.
NEW_PUSH = dict(
    kind=st.sampled_from(["text", "url", "qr", "file"]), creator=st.sampled_from(CREATORS),
    version=st.sampled_from(["v1", "v2"]),
    days=st.one_of(st.none(), st.integers(1, 3), st.integers(1, 90), st.sampled_from([0, 91])),
    duration=st.one_of(st.none(), st.none(), st.integers(0, len(DURATIONS) - 1)),
    views=st.one_of(st.none(), st.integers(1, 3), st.sampled_from([0, 4, 101])),
    passphrase=st.one_of(st.none(), st.just(""), st.text("abcXYZ019", min_size=1, max_size=8)),
    retrieval_step=st.one_of(st.none(), st.booleans()), deletable=st.one_of(st.none(), st.booleans()),
    text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12)
    .filter(lambda s: s.strip()),
    nfiles=st.integers(1, 2))


def near_miss(passphrase, how):
    """A wrong passphrase close to the right one (any one for a push without)."""
    if how == "shorter" and len(passphrase) > 1:
        return passphrase[:-1]
    if how == "case" and passphrase.swapcase() != passphrase:
        return passphrase.swapcase()
    if how == "changed" and passphrase:
        return passphrase[:-1] + ("b" if passphrase[-1] == "a" else "a")
    return passphrase + "w"


def iso(moment):
    return None if moment is None else moment.isoformat(timespec="milliseconds") + "Z"


def unix(moment):
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


@dataclass
class MPush:
    """The model of one push: what the app should have stored."""

    token: str
    kind: str
    owner: str | None
    payload: str
    files: list  # [(filename, content_type, bytes)]
    passphrase: str | None
    days: int
    views: int
    expires_at: datetime
    retrieval_step: bool
    deletable: bool | None
    created_at: datetime
    updated_at: datetime
    view_count: int = 0
    expired: bool = False  # the stored flag (lazy expiry writes it on a read)
    expired_on: datetime | None = None
    deleted: bool = False
    files_kept: bool = True
    gone: bool = False  # deleted by purge-expired
    log: list = field(default_factory=list)  # [(kind, time, caller)]
    links: list = field(default_factory=list)  # [(url, granted at, content)] of granted views
    counted_payloads: int = 0  # payloads the app served to counted views (observed)

    def past_limits(self, now):
        return self.expires_at <= now or self.view_count >= self.views

    def in_download_window(self, now):
        # A file push viewed under 5 minutes ago keeps its files for the viewer (pushes.FILE_LINK_SECONDS).
        return (self.kind == "file" and self.expires_at > now
                and self.updated_at > now - timedelta(seconds=pushes.FILE_LINK_SECONDS))

    def expire(self, now):
        """§3.3: payload, passphrase and files go; expired_on is now."""
        self.expired, self.expired_on, self.updated_at, self.files_kept = True, now, now, False

    def lazy_expire(self, now, keep_files=False):
        if not self.expired and self.past_limits(now) and not (keep_files and self.in_download_window(now)):
            self.expire(now)

    def days_remaining(self, now):
        return max(0, math.ceil((self.expires_at - now).total_seconds() / 86400))


def bounded(value, lo, hi, default):
    """§3.2: a missing or out-of-range value is the default (not clamped)."""
    return default if value is None or not lo <= value <= hi else value


@pytest.mark.parametrize("settings", [{"PWP__PURGE_AFTER": int(PURGE_AFTER.total_seconds())}])
def test_the_push_lifecycle_follows_its_model(app, client, clock, make_user, settings):
    ids_tokens = {"a": make_user("a@example.com"), "b": make_user("b@example.com"),
                  "admin": make_user("admin@example.com", admin=True)}
    tokens = {name: token for name, (_id, token) in ids_tokens.items()}
    user_ids = {"anon": None, **{name: user_id for name, (user_id, _token) in ids_tokens.items()}}

    def headers(caller):
        return {"User-Agent": AGENT[caller], **(bearer(tokens[caller]) if caller != "anon" else {})}

    class Model(RuleBasedStateMachine):
        pushes = Bundle("pushes")

        def __init__(self):
            super().__init__()
            for table in ("push_file_parts", "push_files", "notify_by_emails", "audit_logs", "pushes", "throttles"):
                sql(app, f"DELETE FROM {table}")
            clock.now = NOW
            self.attempts = {}  # (token, minute window) -> passphrase attempts (§3.6)
            self.created = []  # every MPush, in creation order

        # Each example starts with pushes: without them, every rule but the few that need none
        # is out of reach, and Hypothesis's swarm testing leaves create out of some examples.
        # The first is an account's (an admin's half the time): its owner's views, audit and
        # lists need one.
        @initialize(target=pushes, **{**NEW_PUSH, "creator": st.sampled_from(CREATORS[1:])})
        def first_push(self, **new):
            return self.create(**new)

        @initialize(target=pushes, **NEW_PUSH)
        def second_push(self, **new):
            return self.create(**new)

        @property
        def now(self):
            return clock.now

        # ------------------------------------------------------------------ expected answers

        def push_json(self, p, version, shown_live=False):
            json_path = f"/api/v2/pushes/{p.token}" if version == "v2" else f"/p/{p.token}.json"
            return {
                "expire_after_views": p.views, "expired": False if shown_live else p.expired,
                "url_token": p.token, "deletable_by_viewer": p.deletable, "retrieval_step": p.retrieval_step,
                "expired_on": None if shown_live else iso(p.expired_on), "passphrase": None,
                "created_at": iso(p.created_at), "updated_at": iso(p.updated_at),
                "expire_after_days": p.days, "days_remaining": p.days_remaining(self.now),
                "views_remaining": max(0, p.views - p.view_count), "deleted": p.deleted,
                "json_url": BASE + json_path, "html_url": self.secret_url(p)}

        @staticmethod
        def secret_url(p):
            return f"{BASE}/p/{p.token}" + ("/r" if p.retrieval_step else "")

        def log(self, p, kind, caller):
            p.log.append((kind, self.now, caller))

        def window(self, p):
            """§3.6: the push's minute its passphrase attempts are counted in."""
            now = unix(self.now)
            return p.token, now - now % 60

        def attempt(self, p):
            """Count one passphrase attempt; tell whether it is one too many (§3.6: 5 a minute)."""
            self.attempts[self.window(p)] = self.attempts.get(self.window(p), 0) + 1
            return self.attempts[self.window(p)] > 5

        def counted_view(self, p, caller):
            """§3.4 step 5: a view by anyone but its owner or an admin; the last one expires
            the push after its answer, but for a file push (its files wait for the viewer).
            Return whether the push is shown live."""
            p.view_count += 1
            p.updated_at = self.now
            p.counted_payloads += 1
            self.log(p, "view", caller)
            last = p.view_count >= p.views
            if last and p.kind != "file":
                p.expire(self.now)
            return last and p.kind != "file"

        @staticmethod
        def assert_not_found(r):
            assert (r.status_code, r.json) == (404, {"error": "not-found"}), (r.status_code, r.data)

        # ------------------------------------------------------------------ create

        @rule(target=pushes, **NEW_PUSH)
        def create(self, kind, creator, version, days, duration, views, passphrase, retrieval_step, deletable,
                   text, nfiles):
            payload = {"text": text, "qr": text, "file": text if nfiles == 1 else "",
                       "url": "https://example.com/" + str(len(text))}[kind]
            fields = {"kind": kind, "payload": payload, "expire_after_days": days,
                      "expire_after_duration": duration, "expire_after_views": views, "passphrase": passphrase,
                      "retrieval_step": retrieval_step, "deletable_by_viewer": deletable}
            fields = {k: v for k, v in fields.items() if v is not None}
            root, path = ("push", "/api/v2/pushes") if version == "v2" else ("password", "/p.json")
            files = [(f"f{i}-{len(text)}.txt", "text/plain", f"{text}:{i}".encode()) for i in range(nfiles)] \
                if kind == "file" else []
            caller = creator or "anon"
            if kind == "file":  # multipart, as the CLI sends files
                data = {f"{root}[{k}]": str(v).lower() if isinstance(v, bool) else str(v) for k, v in fields.items()}
                data[f"{root}[files][]"] = [(io.BytesIO(content), name, ctype) for name, ctype, content in files]
                r = client.post(path, data=data, headers=headers(caller), content_type="multipart/form-data")
            else:
                r = client.post(path, json={root: fields}, headers=headers(caller))
            if kind == "file" and creator is None:  # §2: a file push needs an account
                assert (r.status_code, r.json) == (401, {"error": "You need to sign in or sign up before continuing."})
                return None
            assert r.status_code == 201, r.data
            now = self.now
            if duration is not None and DURATIONS[duration] < timedelta(days=1):
                stored_days, expires_at = 1, now + DURATIONS[duration]  # the CLI's sub-day steps
            else:
                stored_days = bounded(DURATIONS[duration].days if duration is not None else days, 1, 90, 7)
                expires_at = now + timedelta(days=stored_days)
            p = MPush(token=r.json["url_token"], kind=kind, owner=creator, payload=payload, files=files,
                      passphrase=passphrase or None, days=stored_days, views=bounded(views, 1, 100, 5),
                      expires_at=expires_at, retrieval_step=True if retrieval_step is None else retrieval_step,
                      deletable=None if kind == "url" else (True if deletable is None else deletable),
                      created_at=now, updated_at=now)
            self.log(p, "creation", caller)
            self.created.append(p)
            expected = self.push_json(p, version)
            expected.update(name="", note="")
            assert set(r.json) == CREATE_KEYS and r.json == expected
            return p

        # ------------------------------------------------------------------ retrieve

        @rule(p=pushes, caller=st.sampled_from(CALLERS),
              mode=st.sampled_from(["right", *NEAR_MISSES, "empty", "none"]), version=st.sampled_from(["v1", "v2"]))
        def retrieve(self, p, caller, mode, version):
            """Any caller, any passphrase, through either API version."""
            if p is None:
                return
            sent = {"right": p.passphrase or "x", "empty": "", "none": None}.get(mode) \
                if mode not in NEAR_MISSES else near_miss(p.passphrase or "", mode)
            path = f"/api/v2/pushes/{p.token}" if version == "v2" else f"/p/{p.token}.json"
            r = client.get(path, headers=headers(caller), query_string={} if sent is None else {"passphrase": sent})
            if p.gone:
                return self.assert_not_found(r)
            now, counted = self.now, caller not in (p.owner, "admin")
            p.lazy_expire(now)  # §3.4 step 3 (check_limits)
            if not p.expired and p.passphrase:
                if sent:  # §3.6: attempts carrying a passphrase count, right or wrong
                    if self.attempt(p):
                        assert (r.status_code, r.json) == (
                            429, {"error": "Too many passphrase attempts. Please try again in a minute."})
                        return
                if sent != p.passphrase:  # §3.4 step 4
                    self.log(p, "failed_passphrase", caller)
                    assert r.status_code == 401 and r.json["error"] == "That passphrase is incorrect.", r.data
                    return
            assert r.status_code == 200, r.data
            assert set(r.json) == SHOW_KEYS
            assert r.headers["Cache-Control"] == "no-store"
            if p.expired:  # §3.4 step 5: a failed view, counted (QUIRK)
                p.view_count += 1
                self.log(p, "failed_view", caller)
                assert r.json == {**self.push_json(p, version), "payload": None, "files": []}
                return
            if counted:
                shown_live = self.counted_view(p, caller)
            else:
                shown_live = False
                self.log(p, "admin_view" if caller == "admin" else "owner_view", caller)
            body = r.json
            got_files = body.pop("files")
            assert body == {**self.push_json(p, version, shown_live=shown_live), "payload": p.payload}
            assert [(f["filename"], f["content_type"]) for f in got_files] == [(n, t) for n, t, _ in p.files]
            p.links += [(f["url"], now, content) for f, (_n, _t, content) in zip(got_files, p.files)]

        @rule(p=pushes, caller=st.sampled_from(["anon", "b"]))
        def view(self, p, caller):
            """What most requests are: a recipient's view with the right passphrase, if any."""
            links = len(p.links) if p is not None else 0
            self.retrieve(p, caller, "right", "v2")
            if p is not None and len(p.links) > links:  # and downloads a file at once
                self.download(p)

        @rule(p=pushes, version=st.sampled_from(["v1", "v2"]))
        def own_view(self, p, version):
            """Its owner's view (an admin's, of an anonymous push), with the right passphrase:
            logged, not counted. Rare by retrieve's draws alone (the caller its owner, the push
            live, the passphrase right)."""
            if p is not None:
                self.retrieve(p, p.owner or "admin", "right", version)

        @rule(p=pushes, modes=st.lists(st.sampled_from(["right", *NEAR_MISSES]), min_size=2, max_size=7),
              seconds=st.integers(0, 20))
        def guesses(self, p, modes, seconds):
            """Passphrases tried one after another, a few seconds apart: a sixth in a minute is a 429."""
            for mode in modes:
                self.retrieve(p, "anon", mode, "v2")
                clock.advance(seconds=seconds)

        @rule(p=pushes, which=st.integers(0, 9), method=st.sampled_from(["GET", "GET", "HEAD"]))
        def download(self, p, which=-1, method="GET"):
            """A file link of a granted view (the last one's, or an older one, taken while the
            push lived): the file while the push lives and the link is under 5 minutes old;
            after expiry (or purge) never. A HEAD: the same status, no body."""
            if p is None or not p.links:
                return
            url, granted_at, content = p.links[which % len(p.links)]
            r = client.open(url.removeprefix(BASE), method=method)
            got = r.status_code, r.data  # (read first: a download's snapshot ends, even if this step fails)
            fresh = unix(self.now) - unix(granted_at) <= pushes.FILE_LINK_SECONDS
            if not p.gone and not p.expired and p.expires_at > self.now and fresh:
                assert got == (200, content if method == "GET" else b"")
            else:
                assert got[0] == 404 and content not in got[1]

        @rule(p=pushes, mode=st.sampled_from(["right", "none"]))
        def web_page(self, p, mode):
            """§7.7 the payload page (a browser without cookies; the passphrase, if asked, as
            ?passphrase=): a view counted as the API's; an expired push's a failed view and the
            expired page; a live passphrase push without one a redirect to its form, unlogged."""
            if p is None:
                return
            sent = (p.passphrase or "x") if mode == "right" else None
            r = client.get(f"/p/{p.token}", headers=headers("anon"),
                           query_string={} if sent is None else {"passphrase": sent})
            if p.gone:  # §7.8: as a token that never was
                assert r.status_code == 200 and EXPIRED_PAGE in r.data
                return
            now = self.now
            p.lazy_expire(now, keep_files=True)  # (the page's look before the gate)
            if not p.expired and p.passphrase and (sent is None or self.attempt(p)):  # §3.5, §3.6
                assert (r.status_code, r.headers.get("Location")) == (302, f"/p/{p.token}/passphrase")
                return
            p.lazy_expire(now)
            if p.expired:
                p.view_count += 1
                self.log(p, "failed_view", "anon")
                assert r.status_code == 200 and EXPIRED_PAGE in r.data
                return
            self.counted_view(p, "anon")
            if p.kind == "url":  # §3.8: 303 to the URL
                assert (r.status_code, r.headers["Location"]) == (303, p.payload)
                return
            assert r.status_code == 200 and EXPIRED_PAGE not in r.data, r.data
            page = r.get_data(as_text=True)
            if p.kind != "qr":  # (a QR push's page is its SVG image)
                assert str(escape(p.payload)) in page
            links = re.findall(r'<a href="(/pfb/[^"]+)" download>([^<]*)</a>', page)
            assert [name for _url, name in links] == [str(escape(n)) for n, _t, _c in p.files]
            p.links += [(url, now, content) for (url, _n), (_n2, _t, content) in zip(links, p.files)]

        @rule(p=pushes, where=st.sampled_from(["v2", "v1", "web"]), caller=st.sampled_from(CALLERS))
        def head(self, p, where, caller):
            """A HEAD of a payload URL (a link checker's): 200, no body, nothing counted or logged
            (README, deviation 12; upstream counts a view); the lazy expiry of any look."""
            if p is None:
                return
            path = {"v2": f"/api/v2/pushes/{p.token}", "v1": f"/p/{p.token}.json", "web": f"/p/{p.token}"}[where]
            r = client.head(path, headers=headers(caller if where != "web" else "anon"))
            if p.gone:
                assert r.status_code == (200 if where == "web" else 404)
                return
            p.lazy_expire(self.now, keep_files=True)
            assert (r.status_code, r.data) == (200, b"")

        @rule(p=pushes, caller=st.sampled_from(["anon", "b"]), then=st.sampled_from(["v1", "v2", "web", "head"]),
              link=st.sampled_from([0, -1]), method=st.sampled_from(["GET", "HEAD"]))
        def use_up(self, p, caller, then, link, method):
            """A recipient's views until none is left (a minute later when this minute's
            passphrase attempts are spent), then the push asked again one way, then a file link
            taken while it lived: a used-up push serves no more payloads, nor files once it is
            next opened (a HEAD opens nothing)."""
            if p is None:
                return
            caller = "anon" if caller == p.owner else caller
            while not (p.gone or p.expired or p.past_limits(self.now)):
                if p.passphrase and self.attempts.get(self.window(p), 0) >= 5:
                    clock.advance(seconds=60)
                    continue
                self.view(p, caller)
            if then == "web":
                self.web_page(p, "right")
            elif then == "head":
                self.head(p, "web", "anon")
            else:
                self.retrieve(p, caller, "right", then)
            self.download(p, link, method)

        @rule(p=pushes, before=st.sampled_from([1, 60, 299]), after=st.sampled_from([0, 1]))
        def late_view(self, p, before, after):
            """A recipient's view in a push's last minutes, its file downloaded once the push's
            time has run out (the link under 5 minutes old, the push not read since): its end
            ends the links. The newest live file push's, if any (else few draws reach one)."""
            p = next((q for q in reversed(self.all_pushes()) if q.kind == "file" and not q.expired), p)
            if p is None:
                return
            clock.now = max(self.now, p.expires_at - timedelta(seconds=before))
            self.view(p, "anon" if p.owner == "b" else "b")
            clock.now = max(self.now, p.expires_at + timedelta(seconds=after))
            self.download(p)

        # ------------------------------------------------------------------ preview, audit

        @rule(p=pushes, caller=st.sampled_from(CALLERS))
        def preview(self, p, caller):
            if p is None:
                return
            r = client.get(f"/api/v2/pushes/{p.token}/preview", headers=headers(caller))
            if p.gone:
                return self.assert_not_found(r)
            p.lazy_expire(self.now, keep_files=True)  # no view counted, nothing logged (§1.6)
            assert (r.status_code, r.json) == (200, {"url": self.secret_url(p)})

        @rule(p=pushes)
        def retrieval_step_page(self, p):
            """§7.5: the web's retrieval step counts no view; of an expired push, a failed view."""
            if p is None:
                return
            r = client.get(f"/p/{p.token}/r", headers=headers("anon"))
            assert r.status_code == 200
            expired_page = b"We apologize but this secret link has expired." in r.data
            if p.gone:  # (as for a token that never was)
                assert expired_page
                return
            p.lazy_expire(self.now, keep_files=True)
            if p.expired or p.past_limits(self.now):
                p.view_count += 1
                self.log(p, "failed_view", "anon")
                assert expired_page
            else:
                assert not expired_page and f'href="/p/{p.token}"'.encode() in r.data

        @rule(p=pushes, caller=st.sampled_from(CALLERS), version=st.sampled_from(["v1", "v2"]))
        def audit(self, p, caller, version):
            if p is None:
                return
            path, key = (f"/api/v2/pushes/{p.token}/audit", "logs") if version == "v2" \
                else (f"/p/{p.token}/audit.json", "views")
            r = client.get(path, headers=headers(caller))
            if caller == "anon":  # §2: a token is required (an empty 401)
                assert r.status_code == 401 and r.data == b""
            elif p.gone:
                self.assert_not_found(r)
            elif caller != p.owner:  # anonymous pushes are nobody's; admins are not owners
                assert (r.status_code, r.json) == (403, {"error": "That push doesn't belong to you."})
            else:
                expected = [{"kind": kind, "ip": "127.0.0.1", "user_agent": AGENT[who], "referrer": "",
                             "created_at": iso(at), "updated_at": iso(at)} for kind, at, who in p.log]
                assert r.status_code == 200 and r.json == {key: expected[:pushes.PER_PAGE]}

        # ------------------------------------------------------------------ expire by owner or viewer

        @rule(p=pushes, caller=st.sampled_from(CALLERS), version=st.sampled_from(["v1", "v2"]))
        def delete(self, p, caller, version):
            if p is None:
                return
            path = f"/api/v2/pushes/{p.token}" if version == "v2" else f"/p/{p.token}.json"
            r = client.delete(path, headers=headers(caller))
            if p.gone:
                return self.assert_not_found(r)
            if caller != p.owner and p.deletable is not True:  # §3.7
                assert (r.status_code, r.json) == (401, {"error": "That push is not deletable by viewers."})
                return
            if not p.expired:  # the stored flag: an already expired push is answered as it is, no event
                p.expire(self.now)
                p.deleted = True
                self.log(p, "expire", caller)
            assert r.status_code == 200 and set(r.json) == DESTROY_KEYS
            assert r.json == self.push_json(p, version)

        @rule(p=pushes, version=st.sampled_from(["v1", "v2"]))
        def owner_delete(self, p, version):
            """§3.7: expiring by its owner (an admin, of an anonymous push: not deletable by it
            unless by viewers)."""
            if p is not None:
                self.delete(p, p.owner or "admin", version)

        @rule(p=pushes, caller=st.sampled_from(["anon", "b"]))
        def viewer_delete(self, p, caller):
            """§3.7: a recipient's deletion, allowed only when deletable_by_viewer is true."""
            if p is not None:
                self.delete(p, "a" if caller == p.owner else caller, "v2")

        @rule(caller=st.sampled_from(CALLERS), version=st.sampled_from(["v1", "v2"]))
        def unknown_token(self, caller, version):
            path = f"/api/v2/pushes/{'z' * 24}" if version == "v2" else f"/p/{'z' * 24}.json"
            self.assert_not_found(client.get(path, headers=headers(caller)))
            self.assert_not_found(client.delete(path, headers=headers(caller)))

        # ------------------------------------------------------------------ time and purge

        @rule(step=st.one_of(
            st.sampled_from([timedelta(seconds=1), timedelta(seconds=61), timedelta(minutes=5),
                             timedelta(minutes=5, seconds=1), timedelta(hours=23, minutes=59), timedelta(days=1),
                             timedelta(days=1, seconds=1), timedelta(days=3)]),
            st.integers(1, 6 * 3600).map(lambda s: timedelta(seconds=s))))
        def time_passes(self, step):
            clock.advance(seconds=step.total_seconds())

        @rule(p=pushes, offset=st.sampled_from([-1, 0, 1]))
        def time_reaches_the_expiry_of(self, p, offset):
            """To a second before, at or after a push's expiry (expires_at <= now is expired)."""
            target = p.expires_at + timedelta(seconds=offset) if p is not None else self.now
            if target > self.now:
                clock.now = target

        @rule()
        def purge_expired(self):
            now = self.now
            with app.app_context():
                counts = pushes.purge(now)
            expected = dict.fromkeys(("expired", "files_deleted", "anonymous_deleted", "owned_deleted"), 0)
            for p in self.all_pushes():
                if not p.expired and p.past_limits(now) and not p.in_download_window(now):
                    expected["files_deleted"] += len(p.files)
                    expected["expired"] += 1
                    p.expire(now)
                after = PURGE_ANONYMOUS_AFTER if p.owner is None else PURGE_AFTER
                if p.expired and p.expired_on <= now - after:
                    p.gone = True
                    expected["anonymous_deleted" if p.owner is None else "owned_deleted"] += 1
            assert counts == expected

        @rule(caller=st.sampled_from(["a", "b", "admin"]), expired=st.booleans(), version=st.sampled_from(["v1", "v2"]))
        def owners_list(self, caller, expired, version):
            """§1.6 active/expired: the stored flag (no lazy expiry), newest first."""
            path = f"/api/v2/pushes/{'expired' if expired else 'active'}" if version == "v2" \
                else f"/p/{'expired' if expired else 'active'}.json"
            r = client.get(path, headers=headers(caller))
            mine = [p for p in reversed(self.all_pushes()) if p.owner == caller and p.expired == expired]
            expected = [{**self.push_json(p, version), "name": "", "note": ""} for p in mine]
            assert r.status_code == 200 and r.json == expected[:pushes.PER_PAGE]

        # ------------------------------------------------------------------ invariants

        def all_pushes(self):
            return [p for p in self.created if not p.gone]

        @invariant()
        def stored_rows_match_the_model(self):
            rows = sql(app, "SELECT p.url_token, p.view_count, p.expired, p.deleted, p.payload_ciphertext IS NULL, "
                            "p.passphrase_verifier IS NULL, "
                            "(SELECT count(*) FROM push_files f WHERE f.push_id = p.id) FROM pushes p")
            stored = {t: (v, bool(e), bool(d), bool(np), bool(npp), nf, []) for t, v, e, d, np, npp, nf in rows}
            # Every push's events, oldest first: each one's kind and whose (an anonymous push's
            # too, whose audit no one can ask for).
            for t, kind, user_id in sql(app, "SELECT p.url_token, a.kind, a.user_id FROM audit_logs a "
                                             "JOIN pushes p ON p.id = a.push_id ORDER BY a.id"):
                stored[t][-1].append((AuditKind(kind).name, user_id))
            model = {p.token: (p.view_count, p.expired, p.deleted, p.expired, p.expired or not p.passphrase,
                               len(p.files) if p.files_kept else 0, [(kind, user_ids[who]) for kind, _at, who in p.log])
                     for p in self.all_pushes()}
            assert stored == model
            for p in self.all_pushes():  # never more payloads to counted viewers than views allowed
                assert p.counted_payloads <= p.views

    run_state_machine_as_test(Model, settings=hsettings(
        derandomize=True, database=None, max_examples=55, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], print_blob=False))
