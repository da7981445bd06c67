"""Owner pages: dashboard, audit log and edit page."""
import io
import json
import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import insert, select
from conftest import NOW, bearer, wait_for_a_lock_waiter
from webutil import audit_kinds, create, sign_in, sql

from pwp import crypto, pushes
from pwp.models import AuditKind, Push, db


def test_dashboard_requires_sign_in(client):
    r = client.get("/p")
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in?next=/p")


def test_dashboard_lists_own_active_and_expired_pushes(client, make_user):
    sign_in(client, make_user)
    active = create(client, payload="a", name="Wifi", note="for the guest room")
    gone = create(client, payload="b", name="Old one", deletable_by_viewer=True)
    client.post(f"/p/{gone}/expire", data={"back": "dashboard"})
    html = client.get("/p").get_data(as_text=True)
    assert "Wifi" in html and "for the guest room" in html and "Old one" not in html
    assert f"/p/{active}/preview" in html and f"/p/{active}/audit" in html
    assert "7 days / 5 views" in html and "Active (1)" in html and "Expired (1)" in html
    assert "Old one" in client.get("/p?filter=expired").get_data(as_text=True)


def test_dashboard_hides_other_users_pushes(client, make_user):
    sign_in(client, make_user, email="a@example.com")
    create(client, payload="x", name="Alice's")
    client.post("/users/sign_out")
    sign_in(client, make_user, email="b@example.com")
    assert "Alice's" not in client.get("/p").get_data(as_text=True)


def test_dashboard_paginates_25(client, make_user):
    sign_in(client, make_user)
    for i in range(26):
        create(client, payload="x", name=f"push-{i:02d}")
    first = client.get("/p").get_data(as_text=True)
    second = client.get("/p?page=2").get_data(as_text=True)
    assert first.count("<tr>") == 25 + 1 and "Page 1 of 2" in first
    assert "push-00" in second and "push-00" not in first
    bad = client.get("/p?page=abc")
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400 and "Invalid page parameter" in html
    # Headed by the status's name, as werkzeug's errors' pages (not "Error 400 (400)").
    assert "<h1>Bad Request</h1>" in html and "<title>Bad Request (400)" in html
    # Past the end: the last page (not an empty list beside "Page 9 of 2").
    assert "push-00" in client.get("/p?page=9").get_data(as_text=True)


def test_dashboard_pages_have_no_api_cap(client, make_user, app):
    """The API stops at page 200 (upstream's rule); the dashboard shows every push."""
    sign_in(client, make_user)
    token = create(client, payload="x", name="the-oldest")
    # 200 pages of 25 newer pushes, copies of it written directly (a form post each would take minutes).
    with app.app_context():
        table = Push.__table__
        row = dict(db.session.execute(select(table).where(table.c.url_token == token)).mappings().one())
        del row["id"]
        db.session.execute(insert(table), [
            {**row, "url_token": f"{token}{i}", "name": "newer",
             "created_at": row["created_at"] + timedelta(seconds=i)} for i in range(1, 5001)])
        db.session.commit()
    last = client.get("/p?page=201")
    html = last.get_data(as_text=True)
    assert last.status_code == 200 and "Page 201 of 201" in html and "the-oldest" in html
    assert f"/p/{token}/audit" in html


def test_expire_now_from_dashboard(client, make_user, app):
    sign_in(client, make_user)
    token = create(client, payload="x", deletable_by_viewer=False)
    r = client.post(f"/p/{token}/expire", data={"_method": "delete", "back": "dashboard"})
    assert r.status_code == 302 and r.headers["Location"] == "/p"
    assert sql(app, "SELECT expired FROM pushes")[0][0]


def test_expiring_an_expired_push_says_so_and_logs_nothing(client, make_user, app):
    sign_in(client, make_user)
    token = create(client, payload="x")
    first = client.post(f"/p/{token}/expire", data={"_method": "delete"}, follow_redirects=True)
    assert "The push content has been deleted" in first.get_data(as_text=True)
    again = client.post(f"/p/{token}/expire", data={"_method": "delete"}, follow_redirects=True)
    html = again.get_data(as_text=True)
    assert "That push has already expired." in html and "has been deleted" not in html
    assert audit_kinds(app, token) == [AuditKind.creation, AuditKind.expire]


def test_audit_page_for_owner(client, make_user):
    sign_in(client, make_user)
    token = create(client, payload="x", note="secret note")
    client.get(f"/p/{token}")
    r = client.get(f"/p/{token}/audit")
    html = r.get_data(as_text=True)
    assert r.status_code == 200
    assert "creation" in html and "owner view" in html and "not counted" in html
    assert "127.0.0.1" in html and "Werkzeug" in html
    assert "secret note" in html


def test_a_phone_labels_each_cell_as_its_column_header_says(client, make_user):
    # A phone stacks a table's rows, each cell under its data-label: the dashboard's, the
    # audit log's and the administration page's times were labelled without the header's
    # "(UTC)", read there as local times.
    make_user(email="owner@example.com", admin=True, password="correct horse")
    assert client.post("/users/sign_in", data={"email": "owner@example.com",
                                               "password": "correct horse"}).status_code == 302
    token = create(client, payload="x")
    for path in ("/p", f"/p/{token}/audit", "/admin/users"):
        table = re.search(r'<table class="data.*?</table>', client.get(path).get_data(as_text=True), re.S).group()
        heads = re.findall(r'<th scope="col">([^<]*)</th>', table)
        labels = re.findall(r'<td data-label="([^"]*)"', re.search(r"<tbody>.*?</tr>", table, re.S).group())
        assert labels == heads, path


def test_audit_requires_sign_in_and_ownership(client, make_user, app):
    sign_in(client, make_user, email="a@example.com")
    token = create(client, payload="x")
    client.post("/users/sign_out")
    r = client.get(f"/p/{token}/audit")
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    sign_in(client, make_user, email="b@example.com")
    r = client.get(f"/p/{token}/audit")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert "doesn" in client.get("/").get_data(as_text=True)
    assert audit_kinds(app, token) == [AuditKind.creation]


def test_the_audit_page_of_a_push_no_longer_stored_tells_the_owner_so(client, make_user, app):
    # (It showed the recipient's "contact the person who gave you this secret URL".)
    sign_in(client, make_user)
    token = create(client, payload="x")
    sql(app, "DELETE FROM pushes")  # as purge-expired does, PWP__PURGE_AFTER later
    r = client.get(f"/p/{token}/audit")
    assert r.status_code == 302 and r.headers["Location"] == "/p"
    page = client.get("/p").get_data(as_text=True)
    assert "That push no longer exists: expired pushes are deleted after a while." in page


def test_pages_say_hours_and_minutes_for_a_push_made_to_last_under_a_day(client, make_user, clock):
    """The API's expire_after_duration 3 is one hour; its JSON says 1 day (as upstream), but
    a page promising "1 day" would have the sender tell the recipient a day."""
    _uid, token = sign_in(client, make_user)
    r = client.post("/api/v2/pushes", json={"push": {"payload": "s", "expire_after_duration": 3}},
                    headers={"Authorization": f"Bearer {token}"})
    t = r.json["url_token"]
    preview = client.get(f"/p/{t}/preview").get_data(as_text=True)
    assert "<strong>1 hour</strong>" in preview and "valid for 1 hour or 5 views" in preview
    assert "1 day" not in preview
    clock.advance(minutes=20)
    audit = client.get(f"/p/{t}/audit").get_data(as_text=True)
    assert "1 hour or 5 views" in audit and "40 minutes / 5 views" in audit
    assert "40 minutes / 5 views" in client.get("/p").get_data(as_text=True)
    clock.advance(minutes=1, seconds=30)
    shown = client.get(f"/p/{t}").get_data(as_text=True)
    assert "deleted in 39 minutes or" in shown and "1 day" not in shown
    # A push of whole days reads in days (upstream's arithmetic) while 23 hours or more are
    # left, then in hours and minutes: "1 day" for a link that dies tonight would mislead.
    made = clock.now
    r = client.post("/api/v2/pushes", json={"push": {"payload": "s", "expire_after_days": 2}},
                    headers={"Authorization": f"Bearer {token}"})
    t = r.json["url_token"]
    assert "<strong>2 days</strong>" in client.get(f"/p/{t}/preview").get_data(as_text=True)
    clock.advance(hours=24)
    assert "<strong>1 day</strong>" in client.get(f"/p/{t}/preview").get_data(as_text=True)
    clock.advance(hours=1, seconds=1)
    preview = client.get(f"/p/{t}/preview").get_data(as_text=True)
    assert "<strong>23 hours</strong>" in preview and "1 day" not in preview
    clock.advance(hours=22, minutes=50)
    assert "<strong>10 minutes</strong>" in client.get(f"/p/{t}/preview").get_data(as_text=True)
    audit = client.get(f"/p/{t}/audit").get_data(as_text=True)
    assert "2 days or 5 views" in audit and "10 minutes / 5 views" in audit
    assert f"{made + timedelta(days=2):%Y-%m-%d %H:%M} UTC" in audit


def test_irreversible_owner_actions_ask_first(client, make_user):
    """static/app.js asks before a form with data-confirm is sent (browser test: dashboard)."""
    sign_in(client, make_user)
    token = create(client, payload="x", name="Wi-Fi")
    dashboard = client.get("/p").get_data(as_text=True)
    assert 'data-confirm="Expire Wi-Fi now? Its content is deleted' in dashboard
    assert 'data-confirm="Expire this push now?' in client.get(f"/p/{token}/audit").get_data(as_text=True)
    assert 'data-confirm="Make a new token? The old one stops working' in client.get("/users/token").get_data(as_text=True)


def test_the_audit_page_does_not_say_an_expired_push_had_no_passphrase(client, make_user):
    """Expiry deletes the passphrase's verifier with the content: "no" would be wrong."""
    sign_in(client, make_user)
    token = create(client, payload="x", passphrase="pp")
    assert "<dt>Passphrase</dt><dd>yes</dd>" in client.get(f"/p/{token}/audit").get_data(as_text=True)
    client.post(f"/p/{token}/expire", data={"_method": "delete"})
    html = client.get(f"/p/{token}/audit").get_data(as_text=True)
    assert "<dt>Passphrase</dt><dd>not kept after expiry</dd>" in html


def test_the_audit_page_counts_failed_passphrases_beside_failed_views(client, make_user, app):
    """Upstream's "Failed view attempts" counts only views of an expired push: beside wrong
    passphrases it would read as if they were not counted."""
    sign_in(client, make_user)
    token = create(client, payload="x", passphrase="pp")
    for _ in range(2):
        assert app.test_client().post(f"/p/{token}/access", data={"passphrase": "nope"}).status_code == 302
    html = client.get(f"/p/{token}/audit").get_data(as_text=True)
    assert "<dt>Failed view attempts</dt><dd>0</dd>" in html
    assert "<dt>Failed passphrase attempts</dt><dd>2</dd>" in html


# ----------------------------------------------------------------------------- edit

def _row(app, url_token):
    with app.app_context():
        return dict(db.session.execute(select(Push.__table__).where(Push.url_token == url_token)).mappings().one())


def _edit(client, url_token, **fields):
    data = {"push[expire_after_days]": "7", "push[expire_after_views]": "5", **{
        f"push[{key}]": ("on" if value is True else value) for key, value in fields.items() if value is not False}}
    return client.post(f"/p/{url_token}/edit", data=data)


def test_owner_edits_what_is_left_options_name_and_note(client, make_user, app, clock):
    sign_in(client, make_user)
    token = create(client, payload="s3cret", expire_after_days=7, expire_after_views=5, name="Wifi",
                   note="guest room", deletable_by_viewer=True)
    recipient = app.test_client()
    assert recipient.get(f"/api/v2/pushes/{token}").json["payload"] == "s3cret"  # 4 views left
    clock.advance(days=2, hours=1)  # 4 days 23 hours left: "5 days"
    form = client.get(f"/p/{token}/edit")
    html = form.get_data(as_text=True)
    assert form.status_code == 200 and form.headers["Cache-Control"] == "no-store"
    assert 'name="push[expire_after_days]"' in html and 'value="5" required' in html
    assert 'value="4" required' in html and 'value="Wifi"' in html and "guest room</textarea>" in html
    assert "s3cret" not in html  # the payload is not shown, nor logged as a view
    r = _edit(client, token, expire_after_days="10", expire_after_views="3", retrieval_step=True,
              name="Wifi 2", note="lobby")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/preview"
    assert "Push was successfully updated." in client.get(r.headers["Location"]).get_data(as_text=True)
    row = _row(app, token)
    assert row["expire_after_views"] == 1 + 3 and row["view_count"] == 1
    assert row["expires_at"] == clock.now + timedelta(days=10) and row["expire_after_days"] == 2 + 10
    assert (row["retrieval_step"], row["deletable_by_viewer"], row["name"]) == (True, False, "Wifi 2")
    audit = client.get(f"/p/{token}/audit").get_data(as_text=True)
    assert "lobby" in audit
    # Its life from creation, as the API's expire_after_days (was "13 days": 12 days 1 hour).
    assert "<dt>Expires after</dt><dd>12 days or 4 views</dd>" in audit
    assert audit_kinds(app, token)[-1] == AuditKind.edit
    shown = recipient.get(f"/api/v2/pushes/{token}").json
    assert (shown["views_remaining"], shown["days_remaining"], shown["deletable_by_viewer"]) == (2, 10, False)
    assert shown["payload"] == "s3cret"


def test_edit_leaves_a_number_equal_to_what_is_left(client, make_user, app, clock):
    """A push made for 5 minutes (the CLI's expire_after_duration) shows "1 day" left; saving
    the form unchanged keeps its 5 minutes (upstream ignores a value equal to what is left)."""
    _, api_token = sign_in(client, make_user)
    made = client.post("/api/v2/pushes", json={"push": {"payload": "x", "expire_after_duration": 0,
                                                        "expire_after_views": 3}},
                       headers={"Authorization": f"Bearer {api_token}"}).json
    before = _row(app, made["url_token"])
    r = _edit(client, made["url_token"], expire_after_days="1", expire_after_views="3", name="renamed")
    assert r.status_code == 302
    after = _row(app, made["url_token"])
    assert after["expires_at"] == before["expires_at"] == clock.now + timedelta(minutes=5)
    assert (after["expire_after_days"], after["expire_after_views"], after["name"]) == (1, 3, "renamed")


def test_edit_is_for_the_owner_of_a_live_push(client, make_user, app, clock):
    assert client.get("/p/abcdef/edit").headers["Location"].startswith("/users/sign_in?next=/p/abcdef/edit")
    sign_in(client, make_user, email="a@example.com")
    token = create(client, payload="x", expire_after_views=1)
    other = app.test_client()
    sign_in(other, make_user, email="b@example.com")
    for answer in (other.get(f"/p/{token}/edit"), _edit(other, token, name="mine now")):
        assert answer.status_code == 302 and answer.headers["Location"] == "/"
    assert _row(app, token)["name"] == "" and AuditKind.edit not in audit_kinds(app, token)
    assert "That push doesn&#39;t belong to you." in other.get("/").get_data(as_text=True)
    gone = client.get("/p/nosuchpushtoken000000000/edit")
    assert gone.status_code == 302 and gone.headers["Location"] == "/p"
    # The form was open when its last view came: the push stays expired, nothing logged.
    assert client.get(f"/p/{token}/edit").status_code == 200
    assert app.test_client().get(f"/api/v2/pushes/{token}").json["payload"] == "x"
    r = _edit(client, token, expire_after_views="5")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/audit"
    assert "already expired" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _row(app, token)["expire_after_views"] == 1 and AuditKind.edit not in audit_kinds(app, token)
    assert app.test_client().get(f"/api/v2/pushes/{token}").json["payload"] is None
    # Past its time, not yet marked expired: not brought back either.
    late = create(client, payload="y", expire_after_days=1)
    clock.advance(days=1)
    assert client.get(f"/p/{late}/edit").headers["Location"] == f"/p/{late}/audit"
    assert _edit(client, late, expire_after_days="5").headers["Location"] == f"/p/{late}/audit"
    assert app.test_client().get(f"/api/v2/pushes/{late}").json["expired"] is True


def test_edit_form_errors_and_bounds(client, make_user, app):
    sign_in(client, make_user)
    token = create(client, payload="x")
    long_name = _edit(client, token, name="n" * 256, note="kept")
    html = long_name.get_data(as_text=True)
    assert long_name.status_code == 422 and "Name is too long (maximum is 255 characters)" in html
    assert 'href="#push_name"' in html and "kept</textarea>" in html
    assert _edit(client, token, note="n" * 10_001).status_code == 422
    blank = client.post(f"/p/{token}/edit", data={"push[expire_after_views]": "3"})
    assert blank.status_code == 422 and "Enter the days left as a whole number (" in blank.get_data(as_text=True)
    # An emptied box (no JavaScript): said, the box marked and refilled as the form showed it.
    emptied = _edit(client, token, expire_after_days="", expire_after_views="3").get_data(as_text=True)
    assert ('min="1" max="90" value="7" required aria-invalid="true" aria-describedby="push_expire_after_days-error"'
            in emptied) and '<ul class="field-errors" id="push_expire_after_days-error">' in emptied
    assert client.post(f"/p/{token}/edit", data={}).status_code == 400
    assert _row(app, token)["expire_after_views"] == 5  # nothing changed so far
    # Typed past a bound (no JavaScript to stop it): the bound, as in the new form.
    assert _edit(client, token, expire_after_days="999", expire_after_views="0").status_code == 302
    row = _row(app, token)
    assert (row["expire_after_days"], row["expire_after_views"]) == (90, 1)


def test_edit_links_on_owner_pages(client, make_user):
    sign_in(client, make_user)
    token = create(client, payload="x")
    for page in (f"/p/{token}/preview", f"/p/{token}/audit", "/p"):
        assert f'href="/p/{token}/edit"' in client.get(page).get_data(as_text=True), page
    client.post("/users/sign_out")
    assert f'href="/p/{token}/edit"' not in client.get(f"/p/{token}/preview").get_data(as_text=True)


# Days and views left "from now" are bounded by the kind's maximum, so an owner can keep
#    a secret alive past the operator's PWP__*__EXPIRE_AFTER_DAYS_MAX / VIEWS_MAX (for ever,
#    by editing again). Upstream validates the total, which the maximum bounds.
def test_edit_cannot_take_a_push_past_the_kinds_maximum_life(client, make_user, app, clock):
    sign_in(client, make_user)
    token = create(client, payload="x", expire_after_days=90, expire_after_views=100)
    created = _row(app, token)["created_at"]
    clock.advance(days=89)
    sql(app, "UPDATE pushes SET view_count = 99 WHERE url_token = :t", t=token)
    assert _edit(client, token, expire_after_days="90", expire_after_views="100").status_code == 302
    row = _row(app, token)
    assert row["expires_at"] <= created + timedelta(days=90)
    assert row["expire_after_views"] <= 100


# A number equal to what is left is meant to be left alone, but it is first pulled into
#    the form's bounds: when what is left is under the minimum (or over a maximum lowered
#    since), saving only a new name grants extra views (or days).
@pytest.mark.parametrize("settings", [{"PWP__PW__EXPIRE_AFTER_VIEWS_MIN": 2}])
def test_renaming_does_not_change_the_views_left(client, make_user, app, settings):
    sign_in(client, make_user)
    token = create(client, payload="x", expire_after_views=3)
    sql(app, "UPDATE pushes SET view_count = 2 WHERE url_token = :t", t=token)  # 1 left
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert 'value="1" required' in html
    # The box and slider take what is left (a browser keeps a slider's value within its
    # bounds: the form's script would have sent 2, the minimum, for a rename).
    assert re.search(r'id="push_expire_after_views"[^>]* min="1" ', html)
    assert re.search(r'data-range-for="push_expire_after_views"[^>]*\s+min="1" ', html)
    assert _edit(client, token, expire_after_views="1", name="renamed").status_code == 302
    row = _row(app, token)
    assert row["name"] == "renamed" and row["expire_after_views"] == 3


# A 422 (a field left blank) refills the blank number with the kind's default for a new
#    push, not with what is left: saving the corrected form changes the push unasked.
def test_edit_error_refills_what_is_left(client, make_user, app):
    sign_in(client, make_user)
    token = create(client, payload="x", expire_after_views=5)
    sql(app, "UPDATE pushes SET view_count = 3 WHERE url_token = :t", t=token)  # 2 left
    r = client.post(f"/p/{token}/edit", data={"push[expire_after_days]": "7", "push[expire_after_views]": ""})
    html = r.get_data(as_text=True)
    assert r.status_code == 422
    box = re.search(r'<input type="number" id="push_expire_after_views"[^>]*>', html).group(0)
    assert 'value="2"' in box, box


def _form_fields(html):
    """The edit form's push[...] fields as the page fills them (hidden ones too)."""
    return dict(re.findall(r'name="(push\[[a-z_]+\])"[^>]*value="([^"]*)"', html))


def test_saving_a_stale_edit_form_gives_back_no_views(client, make_user, app, clock):
    """The form shows 3 views left; 2 recipients view the push while it is open; the owner
    changes only the name. The push must keep 1 view left, not get 3 again (5 views in all
    where the owner allowed 3)."""
    sign_in(client, make_user)
    token = create(client, payload="s3cret", expire_after_views=3, expire_after_days=7)
    fields = _form_fields(client.get(f"/p/{token}/edit").get_data(as_text=True))
    assert fields["push[expire_after_views]"] == "3"
    for _ in range(2):
        assert app.test_client().get(f"/api/v2/pushes/{token}.json").json["payload"] == "s3cret"
    clock.advance(days=2, hours=1)  # the days shown (7) are now 5
    fields.update({"push[name]": "renamed"})
    r = client.post(f"/p/{token}/edit", data={k: v for k, v in fields.items()
                                              if k not in ("push[retrieval_step]", "push[deletable_by_viewer]")})
    assert r.status_code == 302
    row = _row(app, token)
    assert row["expire_after_views"] - row["view_count"] == 1, "views counted while the form was open were given back"
    served = sum(app.test_client().get(f"/api/v2/pushes/{token}.json").json["payload"] == "s3cret"
                 for _ in range(5))
    assert served == 1
    assert row["expires_at"] == NOW + timedelta(days=7)  # not pushed 2 days further


def test_a_save_that_changes_nothing_logs_no_edit(client, make_user, app, clock):
    """Save on the form as opened, and Back + Save after a first save (the browser's stale
    form: its days and views are those now left, its hidden 'shown' ones from before the
    first save) change nothing: no second `edit` event, the expiry not moved by the minute
    in between."""
    sign_in(client, make_user)
    token = create(client, payload="s3cret", expire_after_views=5, expire_after_days=7)
    fields = _form_fields(client.get(f"/p/{token}/edit").get_data(as_text=True))
    as_opened = {k: v for k, v in fields.items() if k not in ("push[retrieval_step]", "push[deletable_by_viewer]")}
    assert client.post(f"/p/{token}/edit", data=as_opened).status_code == 302
    assert AuditKind.edit not in audit_kinds(app, token)
    edited = {**as_opened, "push[expire_after_days]": "3", "push[expire_after_views]": "2", "push[name]": "Wifi"}
    assert client.post(f"/p/{token}/edit", data=edited).status_code == 302
    row = _row(app, token)
    clock.advance(minutes=1)
    assert client.post(f"/p/{token}/edit", data=edited).status_code == 302
    assert audit_kinds(app, token).count(AuditKind.edit) == 1
    assert _row(app, token) == row and row["expires_at"] == NOW + timedelta(days=3)


def test_edit_form_with_lone_surrogates_is_a_422_not_a_500(client, make_user, app):
    """A JSON body (with the session's CSRF header) whose name or note holds a lone
    surrogate is refused as not UTF-8; re-rendering it crashed the page (500)."""
    sign_in(client, make_user)
    token = create(client, payload="x")
    body = json.dumps({"push": {"name": "\ud800", "note": "\udfff", "expire_after_days": 5,
                                "expire_after_views": 5}})
    r = client.post(f"/p/{token}/edit", data=body, content_type="application/json")
    assert r.status_code == 422
    r = client.post("/p", data=json.dumps({"push": {"payload": "\ud800", "kind": "text"}}),
                    content_type="application/json")
    assert r.status_code in (400, 422)


def test_api_token_does_not_open_the_edit_page(client, make_user, app):
    """Regression guard (held): the edit page is for the signed-in owner's session only."""
    _, api_token = sign_in(client, make_user)
    token = create(client, payload="x")
    anonymous = app.test_client()
    assert anonymous.get(f"/p/{token}/edit", headers=bearer(api_token)).status_code == 302
    r = anonymous.post(f"/p/{token}/edit", headers=bearer(api_token),
                       data={"push[name]": "api", "push[expire_after_days]": "5", "push[expire_after_views]": "5"})
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")
    assert sql(app, "SELECT name FROM pushes WHERE url_token = :t", t=token)[0][0] == ""


def _file_ids(app, url_token):
    return [r[0] for r in sql(app, "SELECT f.id FROM push_files f JOIN pushes p ON p.id = f.push_id "
                                   "WHERE p.url_token = :t ORDER BY f.id", t=url_token)]


def test_owner_removes_a_file_but_never_the_last(client, make_user, app):
    _, api_token = sign_in(client, make_user)
    made = client.post("/api/v2/pushes", headers=bearer(api_token), content_type="multipart/form-data", data={
        "push[expire_after_views]": "2",
        "push[files][]": [(io.BytesIO(b"a" * 3000), "a.txt"), (io.BytesIO(b"b"), "b.txt"), (io.BytesIO(b"c"), "c.txt")]})
    token = made.json["url_token"]
    first, second, third = _file_ids(app, token)
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert html.count('action="/p/%s/delete_file"' % token) == 3 and "a.txt" in html and "2.9 KiB" in html
    r = client.post(f"/p/{token}/delete_file", data={"file_id": str(first)})
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/edit"
    assert "Removed the file a.txt." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _file_ids(app, token) == [second, third] and audit_kinds(app, token)[-1] == AuditKind.edit
    assert sql(app, "SELECT count(*) FROM push_file_parts WHERE file_id = :f", f=first)[0][0] == 0
    # Not another push's file, nor another user, nor the last one.
    other = client.post("/api/v2/pushes", headers=bearer(api_token), content_type="multipart/form-data",
                        data={"push[files][]": [(io.BytesIO(b"x"), "x.txt"), (io.BytesIO(b"y"), "y.txt")]}).json
    client.post(f"/p/{token}/delete_file", data={"file_id": str(_file_ids(app, other["url_token"])[0])})
    assert len(_file_ids(app, other["url_token"])) == 2
    stranger = app.test_client()
    sign_in(stranger, make_user, email="stranger@example.com")
    assert stranger.post(f"/p/{token}/delete_file", data={"file_id": str(second)}).headers["Location"] == "/"
    assert client.delete(f"/p/{token}/delete_file?file_id={second}").status_code == 302
    last = client.post(f"/p/{token}/delete_file", data={"file_id": str(third)})
    assert "keeps at least one file" in client.get(last.headers["Location"]).get_data(as_text=True)
    assert _file_ids(app, token) == [third]
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert "delete_file" not in html and "A file push keeps at least one file." in html
    # The recipient gets what is left.
    shown = app.test_client().get(f"/api/v2/pushes/{token}", headers=bearer(api_token)).json
    assert [f["filename"] for f in shown["files"]] == ["c.txt"]


def test_no_file_is_removed_from_an_expired_push(client, make_user, app):
    _, api_token = sign_in(client, make_user)
    token = client.post("/api/v2/pushes", headers=bearer(api_token), content_type="multipart/form-data", data={
        "push[expire_after_views]": "1", "push[files][]": [(io.BytesIO(b"a"), "a.txt"), (io.BytesIO(b"b"), "b.txt")]}
    ).json["url_token"]
    assert app.test_client().get(f"/api/v2/pushes/{token}").status_code == 200  # its last view
    files = _file_ids(app, token)  # (kept for that viewer's download links)
    r = client.post(f"/p/{token}/delete_file", data={"file_id": str(files[0])})
    assert r.headers["Location"] == f"/p/{token}/audit" and _file_ids(app, token) == files


def test_preview_after_an_edit_says_updated_not_created(client, make_user):
    sign_in(client, make_user)
    token = create(client, payload="x")
    assert "<h1>Push created</h1>" in client.get(f"/p/{token}/preview").get_data(as_text=True)
    r = _edit(client, token, name="renamed")
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "<h1>Push updated</h1>" in html and "Push created" not in html
    assert "<h1>Push created</h1>" in client.get(f"/p/{token}/preview").get_data(as_text=True)  # (flash read)


def test_edit_says_when_a_number_was_put_within_its_bounds(client, make_user):
    """No JavaScript: 999 days and 0 views are saved as 90 and 1; the owner is told so."""
    sign_in(client, make_user)
    token = create(client, payload="x")
    r = _edit(client, token, expire_after_days="999", expire_after_views="0")
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Days set to 90, the most this push allows." in html
    assert "Views set to 1, the fewest this push allows." in html
    html = client.get(_edit(client, token, expire_after_days="3", expire_after_views="2")
                      .headers["Location"]).get_data(as_text=True)
    assert "set to" not in html


@pytest.mark.parametrize("typed,stored,said", [
    ("1e1", 10, None), ("2.9", 3, None),  # (as app.js's words read them: were 1 and 2)
    ("1e30", 100, "Views set to 100, the most this push allows."),
    ("99999999999999999999", 100, "Views set to 100, the most this push allows."),  # (was a 422)
])
def test_the_edit_pages_number_box_is_read_as_the_browser_reads_it(client, make_user, app, typed, stored, said):
    sign_in(client, make_user)
    token = create(client, payload="x")
    r = _edit(client, token, expire_after_days="3", expire_after_views=typed)
    assert r.status_code == 302
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert _row(app, token)["expire_after_views"] == stored
    assert (said in html) if said else ("set to" not in html)


def test_edit_says_the_link_changed_with_the_retrieval_step(client, make_user):
    """The step lives in the link (/r): a link already sent does not change with it."""
    sign_in(client, make_user)
    token = create(client, payload="x")
    assert 'value="on" aria-describedby' in client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert "Changing it changes the secret link" in client.get(f"/p/{token}/edit").get_data(as_text=True)
    html = client.get(_edit(client, token, retrieval_step=True).headers["Location"]).get_data(as_text=True)
    assert "The secret link changed" in html and "still opens without the retrieval step" in html
    assert f"/p/{token}/r" in html
    html = client.get(_edit(client, token, retrieval_step=True, name="again").headers["Location"]).get_data(as_text=True)
    assert "The secret link changed" not in html
    html = client.get(_edit(client, token).headers["Location"]).get_data(as_text=True)
    assert "still opens with the retrieval step" in html


def test_edit_form_says_minutes_left_not_one_day(client, make_user):
    """A push made for an hour shows 1 in the days box; kept as it is, it keeps its hour:
    the words under the boxes must not promise a day."""
    _, api_token = sign_in(client, make_user)
    t = client.post("/api/v2/pushes", json={"push": {"payload": "s", "expire_after_duration": 3}},
                    headers={"Authorization": f"Bearer {api_token}"}).json["url_token"]
    html = client.get(f"/p/{t}/edit").get_data(as_text=True)
    words = re.search(r'<strong data-words="days"[^>]*>([^<]*)</strong>', html)
    assert words and words.group(1) == "1 hour", words and words.group(0)
    assert 'data-kept-value="1" data-kept-words="1 hour"' in html


# ----------------------------------------------------------------------------- adding files

def _file_push(client, api_token, files, **fields):
    data = {f"push[{key}]": value for key, value in fields.items()}
    data["push[files][]"] = [(io.BytesIO(content), name) for name, content in files]
    made = client.post("/api/v2/pushes", headers=bearer(api_token), content_type="multipart/form-data", data=data)
    assert made.status_code == 201, made.data
    return made.json["url_token"]


def _add_files(client, url_token, files, **fields):
    """The edit form sent as a browser sends it with files chosen (multipart)."""
    data = {"push[expire_after_days]": "7", "push[expire_after_views]": "5",
            **{f"push[{key}]": value for key, value in fields.items()},
            "push[files][]": [(io.BytesIO(content), name) for name, content in files]}
    return client.post(f"/p/{url_token}/edit", data=data, content_type="multipart/form-data")


def _received(app, url_token, passphrase=None):
    """What a recipient downloads: {filename: bytes}."""
    recipient = app.test_client()
    query = f"?passphrase={passphrase}" if passphrase else ""
    files = recipient.get(f"/api/v2/pushes/{url_token}{query}").json["files"]
    return {f["filename"]: recipient.get(f["url"].replace("http://localhost", "")).data for f in files}


def _file_names(app, url_token):
    return [r[0] for r in sql(app, "SELECT f.filename FROM push_files f JOIN pushes p ON p.id = f.push_id "
                                   "WHERE p.url_token = :t ORDER BY f.id", t=url_token)]


def test_owner_adds_files_to_a_file_push_in_one_edit(client, make_user, app):
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"first")], expire_after_views="5")
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in html and 'name="push[files][]"' in html
    assert "Up to 9 more files and 24.9 MiB more" in html and 'name="push[passphrase]"' not in html
    # A file box left empty sends one empty part: no file is added.
    r = client.post(f"/p/{token}/edit", content_type="multipart/form-data", data={
        "push[expire_after_days]": "7", "push[expire_after_views]": "5", "push[files][]": (io.BytesIO(b""), "")})
    assert r.status_code == 302 and "Added" not in client.get(r.headers["Location"]).get_data(as_text=True)
    big = bytes(range(256)) * 5000  # 1.2 MiB: two parts
    r = _add_files(client, token, [("b.bin", big), ("c é.txt", b"third")], name="renamed")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{token}/preview"
    html = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Push was successfully updated." in html and "Added 2 files: the push now has 3 files." in html
    assert _file_names(app, token) == ["a.txt", "b.bin", "c é.txt"] and _row(app, token)["name"] == "renamed"
    assert audit_kinds(app, token) == [AuditKind.creation] + [AuditKind.edit] * 2  # one event an edit
    assert big[:1000] not in b"".join(bytes(c) for c, in sql(app, "SELECT ciphertext FROM push_file_parts"))
    edit_page = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert "b.bin" in edit_page and "c é.txt" in edit_page and "Up to 7 more files" in edit_page
    assert _received(app, token) == {"a.txt": b"first", "b.bin": big, "c é.txt": b"third"}


@pytest.mark.parametrize("settings", [{"PWP__FILES__MAX_FILE_UPLOADS": 3, "PWP__FILES__MAX_TOTAL_BYTES": 1000}])
def test_added_files_keep_to_the_limits_counted_with_the_files_kept(client, make_user, app, settings):
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.bin", b"a" * 400), ("b.bin", b"b" * 400)])
    assert "Up to 1 more file and 200 bytes more" in client.get(f"/p/{token}/edit").get_data(as_text=True)
    too_many = _add_files(client, token, [("c.bin", b"c"), ("d.bin", b"d")], name="not saved", note="kept")
    html = too_many.get_data(as_text=True)
    assert too_many.status_code == 422
    assert "You can only attach up to 3 files per push. This push has 2 files already." in html
    assert 'href="#push_files"' in html and 'aria-invalid="true"' in html and "kept</textarea>" in html
    assert "choose them again" in html
    too_big = _add_files(client, token, [("c.bin", b"c" * 201)])
    assert too_big.status_code == 422 and "only push up to 1000 bytes in total. This push has 800 bytes already." \
        in too_big.get_data(as_text=True)
    assert _file_names(app, token) == ["a.bin", "b.bin"] and _row(app, token)["name"] == ""
    assert AuditKind.edit not in audit_kinds(app, token)
    assert _add_files(client, token, [("c.bin", b"c" * 200)]).status_code == 302
    full = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert "has the most files a push can have (3)" in full and 'name="push[files][]"' not in full
    assert 'enctype="multipart/form-data"' not in full
    assert _add_files(client, token, [("d.bin", b"d")]).status_code == 422  # a form opened before it was full
    assert _file_names(app, token) == ["a.bin", "b.bin", "c.bin"]


def test_files_too_large_to_take_on_the_edit_page_lead_back_to_it(client, make_user):
    """A body over the upload limit is refused before the form is read (413): the page says the
    push's limit and links back to the edit page, not to the start page (nor of a secret's length)."""
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"first")])
    r = _add_files(client, token, [("huge.bin", b"x" * (27 * 1024 * 1024))])
    html = r.get_data(as_text=True)
    assert r.status_code == 413 and "Too large to send" in html
    assert "A push&#39;s files can be up to 25.0 MiB in all, counting the files it has." in html
    assert f'<a href="/p/{token}/edit">Back to the edit page</a>' in html
    assert "Back to the start page" not in html and "characters" not in html


def test_files_added_to_a_push_with_a_passphrase_need_it_and_are_sealed_with_it(client, make_user, app, clock):
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"first")], passphrase="open sesame", expire_after_views="5")
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert '<label for="push_passphrase">This push\'s passphrase (only to add files)</label>' in html
    missing = _add_files(client, token, [("b.txt", b"second")], name="not saved")
    assert missing.status_code == 422
    assert "Enter this push&#39;s passphrase to add files" in missing.get_data(as_text=True)
    wrong = _add_files(client, token, [("b.txt", b"second")], passphrase="open sesame!")
    html = wrong.get_data(as_text=True)
    assert wrong.status_code == 422 and "That is not this push&#39;s passphrase" in html
    assert 'href="#push_passphrase"' in html and "open sesame!" not in html  # never echoed
    assert _file_names(app, token) == ["a.txt"] and _row(app, token)["name"] == ""
    assert audit_kinds(app, token) == [AuditKind.creation, AuditKind.failed_passphrase]
    # A name change alone needs no passphrase.
    assert _edit(client, token, name="renamed").status_code == 302
    r = _add_files(client, token, [("b.txt", b"second")], passphrase="open sesame")
    assert r.status_code == 302 and _file_names(app, token) == ["a.txt", "b.txt"]
    assert _received(app, token, "open sesame") == {"a.txt": b"first", "b.txt": b"second"}
    # Its files open only with the passphrase's key, as the first one.
    (part,), = sql(app, "SELECT p.ciphertext FROM push_file_parts p JOIN push_files f ON f.id = p.file_id "
                        "WHERE f.filename = 'b.txt'")
    _, key = crypto.derive("open sesame", bytes(_row(app, token)["passphrase_salt"]))
    with app.app_context():
        ring = pushes.keyring()
        assert b"second" not in ring.decrypt(bytes(part))
        assert b"".join(ring.open_parts([bytes(part)], key)) == b"second"
    # Guesses count with the recipients' (5 a minute for the push): the sixth is refused.
    clock.advance(minutes=1)
    for _ in range(5):
        assert _add_files(client, token, [("x.txt", b"x")], passphrase="guess").status_code == 422
    throttled = _add_files(client, token, [("x.txt", b"x")], passphrase="open sesame")
    assert throttled.status_code == 429 and "Too many passphrase attempts" in throttled.get_data(as_text=True)
    assert _file_names(app, token) == ["a.txt", "b.txt"]


def test_files_sent_to_an_expired_a_strangers_or_another_kinds_push_are_not_stored(client, make_user, app):
    _, api_token = sign_in(client, make_user)
    used = _file_push(client, api_token, [("a.txt", b"a")], expire_after_views="1", passphrase="pp")
    assert app.test_client().get(f"/api/v2/pushes/{used}?passphrase=pp").status_code == 200  # its last view
    for _ in range(6):  # (no passphrase attempt counted for a push that takes no files: never a 429)
        r = _add_files(client, used, [("b.txt", b"b")], passphrase="pp")
        assert r.status_code == 302 and r.headers["Location"] == f"/p/{used}/audit"
    assert _file_names(app, used) == ["a.txt"]  # (kept for its last viewer's links)
    live = _file_push(client, api_token, [("a.txt", b"a")])
    stranger = app.test_client()
    sign_in(stranger, make_user, email="stranger@example.com")
    r = _add_files(stranger, live, [("b.txt", b"b")])
    assert r.status_code == 302 and r.headers["Location"] == "/" and _file_names(app, live) == ["a.txt"]
    text = create(client, payload="x")
    assert 'name="push[files][]"' not in client.get(f"/p/{text}/edit").get_data(as_text=True)
    r = _add_files(client, text, [("b.txt", b"b")], name="renamed")
    assert r.status_code == 302 and r.headers["Location"] == f"/p/{text}/preview"
    assert "No files were added: only a file push has files." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert sql(app, "SELECT count(*) FROM push_files")[0][0] == 2
    anonymous = app.test_client()
    r = _add_files(anonymous, live, [("b.txt", b"b")])
    assert r.status_code == 302 and r.headers["Location"].startswith("/users/sign_in")


@pytest.mark.parametrize("settings", [{"PWP__FILES__MAX_FILE_UPLOADS": 3}])
def test_an_add_that_waited_for_another_counts_the_files_it_added(client, make_user, app, database_url, settings):
    """Another edit holds the push's row and adds two files; this one, checked before they
    were committed, waits for the row, then counts them: over the cap, nothing stored."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite's BEGIN IMMEDIATE runs a request's whole transaction alone")
    import threading

    import psycopg
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"a")])
    push_id = _row(app, token)["id"]
    with psycopg.connect(database_url) as other:
        other.execute("SELECT id FROM pushes WHERE id = %s FOR UPDATE", (push_id,))
        for name in ("b.txt", "c.txt"):
            other.execute("INSERT INTO push_files (push_id, filename, content_type, size, ciphertext) "
                          "VALUES (%s, %s, 'text/plain', 1, '')", (push_id, name))
        answer = []
        adder = threading.Thread(target=lambda: answer.append(_add_files(client, token, [("d.txt", b"d")])))
        adder.start()
        wait_for_a_lock_waiter(database_url, "the edit", thread=adder)
        other.commit()
        adder.join(timeout=30)
    assert answer[0].status_code == 422, answer[0].status_code
    assert "This push has 3 files already." in answer[0].get_data(as_text=True)
    assert _file_names(app, token) == ["a.txt", "b.txt", "c.txt"]


def test_views_counted_while_an_edit_waits_count_against_the_kinds_maximum(settings, database_url, request,
                                                                          monkeypatch):
    """An edit checks the views asked for against what was counted when it read the push; views
    counted before it locks the row (here three recipients on real threads, after the passphrase
    check's commit) were added on top: 6 asked of a maximum of 6 made 9."""
    settings["PWP__FILES__EXPIRE_AFTER_VIEWS_MAX"] = 6
    client, make_user, app = (request.getfixturevalue(name) for name in ("client", "make_user", "app"))
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"first")], passphrase="open sesame", expire_after_views="5")
    lock_live, statuses = pushes._lock_live, []

    def view():
        statuses.append(app.test_client().get(f"/api/v2/pushes/{token}?passphrase=open%20sesame").status_code)

    def viewed_meanwhile(push, now):
        threads = [threading.Thread(target=view) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        return lock_live(push, now)
    monkeypatch.setattr(pushes, "_lock_live", viewed_meanwhile)
    r = _add_files(client, token, [("b.txt", b"second")], passphrase="open sesame", expire_after_views="6")
    assert r.status_code == 302 and statuses == [200] * 3
    row = _row(app, token)
    assert (row["view_count"], row["expire_after_views"]) == (3, 6)


def test_a_save_that_changes_nothing_says_so(client, make_user, app):
    # Found walking the edit page in a browser: Save on the form as opened wrote nothing
    # (77d4419) yet said "Push was successfully updated." under "Push updated".
    sign_in(client, make_user)
    token = create(client, payload="s3cret", expire_after_views=5, expire_after_days=7)
    fields = _form_fields(client.get(f"/p/{token}/edit").get_data(as_text=True))
    as_opened = {k: v for k, v in fields.items() if k not in ("push[retrieval_step]", "push[deletable_by_viewer]")}
    page = client.post(f"/p/{token}/edit", data=as_opened, follow_redirects=True).get_data(as_text=True)
    assert "Nothing was changed: the push is as it was." in page
    assert "successfully updated" not in page and "Push updated" not in page
    # (The heading said "Push created" after a Save that changed nothing.)
    assert "<h1>Push unchanged</h1>" in page and "Push created" not in page
    page = client.post(f"/p/{token}/edit", data={**as_opened, "push[name]": "Wifi"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Push was successfully updated." in page and "Nothing was changed" not in page


def test_a_name_with_line_breaks_is_edited_in_a_box_that_shows_them(client, make_user, app):
    """A name the API gave line breaks: a one-line name box cannot show them, so a save of the
    box's text as shown had to keep them, and an owner who removed them on purpose (the name
    typed without them) saw "Nothing was changed". A box that shows them lets both be said."""
    _, api_token = sign_in(client, make_user)
    name = "first line\nsecond line"
    token = client.post("/api/v2/pushes", headers=bearer(api_token),
                        json={"push": {"payload": "x", "name": name, "expire_after_days": 7, "expire_after_views": 5,
                                       "deletable_by_viewer": False, "retrieval_step": False}}).json["url_token"]
    html = client.get(f"/p/{token}/edit").get_data(as_text=True)
    assert re.search(r'<textarea id="push_name" name="push\[name\]"[^>]*>\nfirst line\nsecond line</textarea>', html)
    assert _edit(client, token, name="first line\r\nsecond line").status_code == 302  # (as a browser sends it)
    assert _row(app, token)["name"] == name and AuditKind.edit not in audit_kinds(app, token)
    page = client.post(f"/p/{token}/edit", follow_redirects=True, data={
        "push[expire_after_days]": "7", "push[expire_after_views]": "5", "push[name]": "first linesecond line"})
    assert "Push was successfully updated." in page.get_data(as_text=True)
    assert _row(app, token)["name"] == "first linesecond line" and audit_kinds(app, token)[-1] == AuditKind.edit
    assert '<input type="text" id="push_name"' in client.get(f"/p/{token}/edit").get_data(as_text=True)


def test_a_long_name_with_line_breaks_saved_as_shown_is_not_too_long(client, make_user, app):
    """255 characters with line breaks, as the API allows: the box sends each break as CR LF,
    over 255, which refused every save of the edit page."""
    _, api_token = sign_in(client, make_user)
    name = ("x" * 50 + "\n") * 4 + "y" * 51
    assert len(name) == 255
    token = client.post("/api/v2/pushes", headers=bearer(api_token),
                        json={"push": {"payload": "x", "name": name}}).json["url_token"]
    r = _edit(client, token, expire_after_views="3", name=name.replace("\n", "\r\n"))
    assert r.status_code == 302, r.get_data(as_text=True)
    row = _row(app, token)
    assert (row["name"], row["expire_after_views"]) == (name, 3)


@pytest.mark.parametrize("settings", [{"PWP__FILES__MAX_FILE_UPLOADS": 2}])
def test_an_emptied_box_is_said_with_the_edit_forms_other_errors_in_the_pages_order(client, make_user, app,
                                                                                  settings):
    """An emptied days box (no JavaScript) is said with the note's length, the files' count and
    a missing passphrase in one 422, in the page's order (was: alone, the others on the next
    save); nothing is written."""
    _, api_token = sign_in(client, make_user)
    token = _file_push(client, api_token, [("a.txt", b"first")], passphrase="open sesame")
    before, events = _row(app, token), audit_kinds(app, token)
    r = _add_files(client, token, [("b.txt", b"b"), ("c.txt", b"c")], expire_after_days="",
                   name="not saved", note="n" * 10_001)
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "4 errors prohibited this push from being saved" in html
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert re.findall(r'href="#push_(\w+)"', summary) == ["files", "passphrase", "expire_after_days", "note"]
    assert "You can only attach up to 2 files per push. This push has 1 file already." in summary
    assert "Enter this push&#39;s passphrase to add files" in summary
    assert "Enter the days left as a whole number (" in summary and "Note is too long" in summary
    assert _row(app, token) == before and audit_kinds(app, token) == events and _file_names(app, token) == ["a.txt"]
    # An emptied box alone is said too, and with a passphrase given, none is checked (nor counted).
    r = _add_files(client, token, [("b.txt", b"b")], expire_after_days="", passphrase="wrong")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and "1 error prohibited" in html and "Enter the days left" in html
    assert _row(app, token) == before and audit_kinds(app, token) == events and _file_names(app, token) == ["a.txt"]
