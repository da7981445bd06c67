"""API authentication, ownership, deletion, audit and lists."""
import pytest

from conftest import bearer


def push(client, headers=None, **fields):
    fields.setdefault("payload", "s3cret")
    r = client.post("/api/v2/pushes", json={"push": fields}, headers=headers or {})
    assert r.status_code == 201, r.json
    return r.json["url_token"]


BAD_HEADERS = [{"Authorization": "Bearer nope"}, {"Authorization": "nope"}, {"Authorization": "Bearer "},
               {"Authorization": ""}, {"X-User-Token": "whatever"},
               {"X-User-Email": "a@b.c", "X-User-Token": "nope"},
               {"Authorization": "Bearer " + "x" * 5000}, {"Authorization": "Bearer \u00e9\u00e8"}]


@pytest.mark.parametrize("headers", BAD_HEADERS)
def test_bad_token_is_401_everywhere_but_version(client, headers):
    t = push(client)
    for method, path in [("GET", f"/api/v2/pushes/{t}"), ("GET", f"/api/v2/pushes/{t}/preview"),
                         ("POST", "/api/v2/pushes"), ("DELETE", f"/api/v2/pushes/{t}"),
                         ("GET", f"/p/{t}.json"), ("POST", "/p.json"), ("GET", "/api/v2/pushes/active")]:
        r = client.open(path, method=method, headers=headers, json={"push": {"payload": "x"}})
        assert r.status_code == 401, (method, path)
        assert r.data == b""
    for path in ("/api/v2/version", "/api/v1/version", "/api/v1/version.json"):
        assert client.get(path, headers=headers).status_code == 200


def test_bearer_bare_and_legacy_headers_authenticate(client, token):
    for headers in (bearer(token), {"Authorization": token}, {"Authorization": f"Bearer    {token}"},
                    {"X-User-Email": "anything@example.com", "X-User-Token": token},
                    {"X-User-Email": "x@y.z", "X-User-Token": token, "Authorization": "Bearer wrong"}):
        assert client.get("/api/v2/pushes/active", headers=headers).status_code == 200, headers


def test_x_user_token_without_email_is_401(client, token):
    assert client.get("/api/v2/pushes/active", headers={"X-User-Token": token}).status_code == 401


def test_lists_audit_need_a_token(client):
    t = push(client)
    for path in ("/api/v2/pushes/active", "/api/v2/pushes/expired", f"/api/v2/pushes/{t}/audit",
                 "/p/active.json", "/p/expired.json", f"/p/{t}/audit.json"):
        r = client.get(path)
        assert r.status_code == 401 and r.data == b"", path


def test_bare_401s_are_labelled_json_without_charset_as_rails_head(client):
    """Upstream's bare 401s are `head :unauthorized` on a JSON request: an empty body labelled
    `application/json` (head drops the charset), on v1 and v2 alike."""
    t = push(client)
    answers = [client.get("/api/v2/pushes/active"),  # a token needed
               client.get("/p/active.json"),
               client.get(f"/api/v2/pushes/{t}", headers=bearer("wrong")),  # a token that is no one's
               client.get(f"/p/{t}/preview.json", headers={"X-User-Token": "x"}),
               client.post("/r.json", json={"url": {"payload": "https://example.com"}})]
    assert [(r.status_code, r.data, r.headers["Content-Type"]) for r in answers] == \
        [(401, b"", "application/json")] * len(answers)


@pytest.mark.parametrize("settings", [{"PWP__ALLOW_ANONYMOUS": False}])
def test_anonymous_disabled_bare_401_is_labelled_json(client, settings):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x"}})
    assert (r.status_code, r.data, r.headers["Content-Type"]) == (401, b"", "application/json")


@pytest.mark.parametrize("settings", [{"PWP__ALLOW_ANONYMOUS": False}])
def test_anonymous_disabled_requires_a_token_except_version(client, token, settings):
    t = push(client, bearer(token))
    assert client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).status_code == 401
    assert client.post("/p.json", json={"password": {"payload": "x"}}).status_code == 401
    assert client.get(f"/api/v2/pushes/{t}").status_code == 401
    assert client.get(f"/api/v2/pushes/{t}/preview").status_code == 401
    assert client.get("/api/v2/version").json["features"]["anonymous_access"] is False
    assert client.get(f"/api/v2/pushes/{t}", headers=bearer(token)).status_code == 200


def test_file_push_needs_authentication(client):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "x", "files": []}})
    assert r.status_code == 401
    assert r.json == {"error": "You need to sign in or sign up before continuing."}
    r = client.post("/api/v2/pushes", json={"push": {"kind": "file"}})
    assert r.status_code == 401
    assert client.post("/f.json", json={"file_push": {"payload": "x"}}).status_code == 401
    assert client.post("/r.json", json={"url": {"payload": "https://a.b"}}).status_code == 401


def test_anonymous_url_push_via_p_json_is_allowed(client):
    r = client.post("/p.json", json={"password": {"payload": "https://a.b", "kind": "url"}})
    assert r.status_code == 201


def test_v1_url_push_with_token(client, token):
    r = client.post("/r.json", json={"url": {"payload": "https://a.b"}}, headers=bearer(token))
    assert r.status_code == 201 and r.json["deletable_by_viewer"] is None


def test_file_push_without_files_is_422(client, token):
    r = client.post("/api/v2/pushes", json={"push": {"kind": "file", "payload": ""}}, headers=bearer(token))
    assert r.status_code == 422 and "files" in r.json


def test_viewer_can_delete_a_deletable_push(client):
    t = push(client, deletable_by_viewer=True, expire_after_views=5)
    r = client.delete(f"/p/{t}.json")
    assert r.status_code == 200
    body = r.json
    assert body["expired"] is True and body["deleted"] is True and body["passphrase"] is None
    assert not {"payload", "name", "note", "files"} & set(body)
    after = client.get(f"/p/{t}.json").json
    assert after["payload"] is None and after["deleted"] is True and after["views_remaining"] == 4


def test_deleting_twice_is_200_without_a_second_log(client, token):
    t = push(client, bearer(token))
    assert client.delete(f"/api/v2/pushes/{t}", headers=bearer(token)).status_code == 200
    assert client.delete(f"/api/v2/pushes/{t}", headers=bearer(token)).status_code == 200
    kinds = [e["kind"] for e in client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).json["logs"]]
    assert kinds == ["creation", "expire"]


def test_non_deletable_push_refuses_viewers_and_other_users(client, make_user):
    _, owner = make_user("owner@example.com")
    _, other = make_user("other@example.com")
    t = push(client, bearer(owner), deletable_by_viewer=False)
    for headers in ({}, bearer(other)):
        for path in (f"/api/v2/pushes/{t}", f"/p/{t}.json"):
            r = client.delete(path, headers=headers)
            assert r.status_code == 401
            assert r.json == {"error": "That push is not deletable by viewers."}
    assert client.get(f"/api/v2/pushes/{t}/preview").status_code == 200
    r = client.delete(f"/api/v2/pushes/{t}", headers=bearer(owner))
    assert r.status_code == 200 and r.json["expired"] is True


def test_delete_unknown_is_404(client):
    r = client.delete("/api/v2/pushes/doesnotexist")
    assert r.status_code == 404 and r.json == {"error": "not-found"}


def test_audit_ownership(client, make_user):
    _, owner = make_user("owner@example.com")
    _, other = make_user("other@example.com")
    t = push(client, bearer(owner))
    assert client.get(f"/api/v2/pushes/{t}/audit").status_code == 401
    r = client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(other))
    assert r.status_code == 403 and r.json == {"error": "That push doesn't belong to you."}
    r = client.get(f"/p/{t}/audit.json", headers=bearer(owner))
    assert r.status_code == 200
    entry = r.json["views"][0]
    assert set(entry) == {"ip", "user_agent", "referrer", "kind", "created_at", "updated_at"}
    # v1 renders the audit rows themselves: their columns' order, kind first (v2's builder
    # names its keys in its own order).
    assert list(entry) == ["kind", "ip", "user_agent", "referrer", "created_at", "updated_at"]
    v2 = client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(owner)).json["logs"][0]
    assert list(v2) == ["ip", "user_agent", "referrer", "kind", "created_at", "updated_at"]
    assert entry["kind"] == "creation"
    assert client.get("/api/v2/pushes/nope/audit", headers=bearer(owner)).status_code == 404


def test_anonymous_push_audit_is_403_for_everyone(client, token):
    t = push(client)
    assert client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).status_code == 403


def test_audit_sequence_matches_upstream(client, token):
    t = push(client, bearer(token), passphrase="pp", expire_after_views=3)
    client.get(f"/api/v2/pushes/{t}?passphrase=pp", headers={"User-Agent": "UA-1", "Referer": "https://ref"})
    client.get(f"/api/v2/pushes/{t}?passphrase=pp")
    client.get(f"/api/v2/pushes/{t}")
    client.delete(f"/api/v2/pushes/{t}", headers=bearer(token))
    client.get(f"/api/v2/pushes/{t}")
    client.get(f"/api/v2/pushes/{t}")
    logs = client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).json["logs"]
    assert [e["kind"] for e in logs] == ["creation", "view", "view", "failed_passphrase", "expire",
                                         "failed_view", "failed_view"]
    assert logs[1]["user_agent"] == "UA-1" and logs[1]["referrer"] == "https://ref"
    assert logs[1]["ip"] == "127.0.0.1"
    assert logs[2]["referrer"] == ""


def test_audit_pagination(client, token):
    t = push(client, bearer(token), expire_after_views=100)
    for _ in range(60):
        client.get(f"/api/v2/pushes/{t}")
    page1 = client.get(f"/api/v2/pushes/{t}/audit?page=1", headers=bearer(token)).json["logs"]
    page2 = client.get(f"/api/v2/pushes/{t}/audit?page=2", headers=bearer(token)).json["logs"]
    assert len(page1) == 50 and len(page2) == 11
    assert client.get(f"/api/v2/pushes/{t}/audit?page=0", headers=bearer(token)).json["logs"] == page1
    assert client.get(f"/api/v2/pushes/{t}/audit?page=-1", headers=bearer(token)).json["logs"] == page1
    assert client.get(f"/api/v2/pushes/{t}/audit?page=3", headers=bearer(token)).json["logs"] == []


@pytest.mark.parametrize("page", ["abc", "201", "", "1.5", "08", "1e3", "99999999999999999999",
                                  # Ruby reads no _ right after a prefix, nor strips a non-ASCII space.
                                  "0x_1", "0b_1", "1%C2%A0", "%E3%80%801"])
@pytest.mark.parametrize("path", ["/api/v2/pushes/active", "/api/v2/pushes/expired", "/p/active.json"])
def test_bad_page_is_400(client, token, page, path):
    r = client.get(f"{path}?page={page}", headers=bearer(token))
    assert r.status_code == 400 and r.json == {"error": "Invalid page parameter"}


@pytest.mark.parametrize("page", ["200", " 2 ", "0x2", "010", "1_0", "0d10", "0_7", "0x0_1", "%0B1%0C"])
def test_ruby_integer_pages_are_accepted(client, token, page):
    assert client.get(f"/api/v2/pushes/active?page={page}", headers=bearer(token)).json == []


def test_active_and_expired_lists(client, token, clock):
    tokens = []
    for i in range(60):
        tokens.append(push(client, bearer(token), name=f"n{i}", note=f"note{i}"))
        clock.advance(seconds=1)
    page1 = client.get("/api/v2/pushes/active", headers=bearer(token)).json
    page2 = client.get("/api/v2/pushes/active?page=2", headers=bearer(token)).json
    assert len(page1) == 50 and len(page2) == 10
    assert page1[0]["url_token"] == tokens[-1] and page1[0]["name"] == "n59" and page1[0]["note"] == "note59"
    assert "payload" not in page1[0]
    assert client.get("/api/v2/pushes/expired", headers=bearer(token)).json == []
    client.delete(f"/api/v2/pushes/{tokens[0]}", headers=bearer(token))
    expired = client.get("/p/expired.json", headers=bearer(token)).json
    assert [p["url_token"] for p in expired] == [tokens[0]]


def test_lists_show_only_the_callers_pushes(client, make_user):
    _, a = make_user("a@example.com")
    _, b = make_user("b@example.com")
    push(client, bearer(a))
    push(client)
    assert client.get("/api/v2/pushes/active", headers=bearer(b)).json == []
    assert len(client.get("/f/active.json", headers=bearer(a)).json) == 1


def test_version_features_reflect_settings(app, client):
    features = client.get("/api/v2/version").json["features"]
    assert features["pushes"]["file_attachments"] == {"enabled": True, "requires_authentication": True}
    assert client.get("/api/v1/version.json").json == {"application_version": "2.11.4",
                                                        "api_version": "1.5", "edition": "oss"}


@pytest.mark.parametrize("settings", [{"PWP__ENABLE_FILE_PUSHES": False, "PWP__ENABLE_URL_PUSHES": False,
                                       "PWP__ENABLE_QR_PUSHES": False}])
def test_version_features_when_kinds_disabled(client, token, settings):
    pushes = client.get("/api/v2/version").json["features"]["pushes"]
    assert pushes["file_attachments"]["enabled"] is False
    assert pushes["url_pushes"] == {"enabled": False} and pushes["qr_code_pushes"] == {"enabled": False}
    assert client.post("/f.json", json={"file_push": {"payload": "x"}}, headers=bearer(token)).status_code == 404


@pytest.mark.parametrize("settings", [{"PWP__ENABLE_FILE_PUSHES": False, "PWP__ENABLE_URL_PUSHES": False}])
def test_the_f_and_r_routes_are_gone_while_their_kind_is_off(client, token, settings):
    """As upstream, which registers them only while the kind is on: a 404 for everyone."""
    t = client.post("/p.json", json={"password": {"payload": "x"}}).json["url_token"]
    for prefix in ("f", "r"):
        for method, path in [("post", f"/{prefix}.json"), ("get", f"/{prefix}/active.json"),
                             ("get", f"/{prefix}/expired.json"), ("get", f"/{prefix}/{t}.json"),
                             ("delete", f"/{prefix}/{t}.json"), ("get", f"/{prefix}/{t}/preview.json"),
                             ("get", f"/{prefix}/{t}/audit.json")]:
            for headers in ({}, bearer(token)):
                r = getattr(client, method)(path, headers=headers)
                assert r.status_code == 404 and r.json == {"status": 404, "error": "Not Found"}, (method, path)
    assert client.get(f"/p/{t}.json").json["payload"] == "x"  # /p still answers
    assert client.get("/p/active.json", headers=bearer(token)).status_code == 200


def test_new_token_replaces_the_old_one(app, client, make_user):
    from pwp.auth import find_user, issue_token
    _, old = make_user("t@example.com")
    with app.app_context():
        new = issue_token(find_user("t@example.com"))
    assert client.get("/api/v2/pushes/active", headers=bearer(old)).status_code == 401
    assert client.get("/api/v2/pushes/active", headers=bearer(new)).status_code == 200


def test_tokens_are_stored_as_digests(app, token):
    from conftest import sql
    (digest,), = sql(app, "SELECT api_token_digest FROM users")
    assert token not in digest and len(digest) == 64


@pytest.mark.parametrize("other", [{"Origin": "https://sibling.localhost"}, {"Origin": "null"},
                                   {"Sec-Fetch-Site": "same-site"},
                                   {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"}])
def test_a_browser_session_acts_on_api_writes_only_from_this_site(app, client, make_user, other):
    """The API takes no CSRF token (as upstream): a form on another origin of the same site
    (SameSite=Lax lets its posts carry the cookie) must not create or delete as the user."""
    make_user(email="u@example.com", password="correct horse")
    assert client.post("/users/sign_in", data={"email": "u@example.com",
                                               "password": "correct horse"}).status_code == 302
    form = {"password[payload]": "planted"}
    planted = client.post("/p.json", data=form, headers=other)
    assert planted.status_code == 201
    own = client.post("/p.json", data=form, headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    curl = client.post("/p.json", data=form)  # a client that names no origin
    listed = {p["url_token"] for p in client.get("/api/v2/pushes/active").json}
    assert listed == {own.json["url_token"], curl.json["url_token"]}  # the planted one is anonymous
    # Reads act as the user wherever they come from (the owner's view is not counted).
    assert client.get(f"/api/v2/pushes/{own.json['url_token']}", headers=other).json[
        "views_remaining"] == 5


def test_nul_in_a_forwarded_client_address_is_logged_without_it(settings, database_url, request):
    """X-Forwarded-For is taken as the client's address only from trusted proxies, but one
    that passes a NUL on (or a count set too high) must not make every view a 500."""
    settings["PWP__TRUSTED_PROXIES"] = 1
    client, token = request.getfixturevalue("client"), request.getfixturevalue("token")
    headers = {**bearer(token), "X-Forwarded-For": "10.0.0.1\x00x"}
    t = client.post("/api/v2/pushes", json={"push": {"payload": "s"}}, headers=headers).json["url_token"]
    assert client.get(f"/api/v2/pushes/{t}", headers=headers).json["payload"] == "s"
    logs = client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).json["logs"]
    assert [e["ip"] for e in logs] == ["10.0.0.1x", "10.0.0.1x"]


def test_nul_in_user_agent_or_referrer_is_logged_without_it(client, token):
    # gunicorn refuses a NUL in a header (400), but other WSGI servers pass it on, and
    # PostgreSQL's text cannot hold one: the create, view and web page must not be a 500.
    headers = {"User-Agent": "UA\x00-1", "Referer": "https://ref\x00/x"}
    r = client.post("/api/v2/pushes", json={"push": {"payload": "s"}}, headers={**bearer(token), **headers})
    assert r.status_code == 201
    t = r.json["url_token"]
    assert client.get(f"/api/v2/pushes/{t}", headers=headers).json["payload"] == "s"
    assert client.get(f"/p/{t}", headers=headers).status_code == 200
    logs = client.get(f"/api/v2/pushes/{t}/audit", headers=bearer(token)).json["logs"]
    assert [e["user_agent"] for e in logs] == ["UA-1"] * len(logs) and len(logs) == 3
    assert {e["referrer"] for e in logs} == {"https://ref/x"}
