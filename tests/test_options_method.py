"""OPTIONS, by the kind of route: a page lists its methods (as Flask's automatic OPTIONS
would); an API path answers as upstream's router, 404 (the one CORS route, POST /p.json,
answers its preflight). Never a view run, and a token's existence never shows."""
import pytest

from conftest import make_config
from pwp import create_app
from pwp.models import db
from webutil import audit_kinds, view_count

PAGES = {  # path -> its methods, as a page's Allow lists them
    "/p/{t}": "GET, HEAD, OPTIONS", "/p/{t}/r": "GET, HEAD, OPTIONS",
    "/p/{t}/passphrase": "GET, HEAD, OPTIONS", "/p/{t}/preview": "GET, HEAD, OPTIONS",
    "/p/{t}/edit": "GET, HEAD, OPTIONS, POST", "/p/{t}/audit": "GET, HEAD, OPTIONS",
    "/p/{t}/expire": "DELETE, GET, HEAD, OPTIONS, POST", "/f/{t}": "GET, HEAD, OPTIONS",
    "/r/{t}": "GET, HEAD, OPTIONS", "/r/{t}/r": "GET, HEAD, OPTIONS", "/": "GET, HEAD, OPTIONS",
    "/p": "GET, HEAD, OPTIONS, POST", "/p/new": "GET, HEAD, OPTIONS",
}
API = ["/api/v2/pushes/{t}", "/api/v2/pushes/{t}.json", "/api/v2/pushes/{t}/preview",
       "/api/v2/pushes/{t}/audit", "/api/v2/pushes", "/api/v2/version", "/api/v1/version.json",
       "/p/{t}.json", "/p/{t}/preview.json", "/f/{t}.json", "/r/{t}.json", "/f.json", "/r.json",
       "/pfb/abc/a.txt"]
UNKNOWN = "a0b1c2d3e4f5g6h7"


def _answer(client, path, **headers):
    r = client.open(path, method="OPTIONS", headers=headers)
    return r.status_code, r.headers.get("Allow"), r.content_type, r.data


@pytest.mark.parametrize("path", sorted(PAGES))
def test_a_page_answers_options_with_its_methods_and_runs_no_view(app, client, path):
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json["url_token"]
    known = _answer(client, path.format(t=url_token))
    assert known == _answer(client, path.format(t=UNKNOWN))  # (the token's existence never shows)
    assert known[:2] == (200, PAGES[path]) and known[3] == b""
    assert known == _answer(client, path.format(t=url_token), Accept="application/json")  # (a page, whoever asks)
    assert view_count(app, url_token) == 0 and audit_kinds(app, url_token) == [0]  # (creation only)


@pytest.mark.parametrize("path", API)
def test_an_api_path_answers_options_as_upstreams_router_404(client, path):
    url_token = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json["url_token"]
    known = _answer(client, path.format(t=url_token))
    assert known == _answer(client, path.format(t=UNKNOWN))
    assert known[0] == 404 and known[1] is None and known[3] == b'{"status":404,"error":"Not Found"}'


def test_a_page_refusing_a_method_lists_options_among_its_methods(client):
    r = client.put("/p/new")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD, OPTIONS"


def test_the_gateway_answers_options_as_the_internal_instance_and_runs_no_view(app, client, database_url, tmp_path):
    gateway = create_app(make_config(database_url, PWP_PUBLIC_GATEWAY=True), instance_path=str(tmp_path / "gw"))
    try:
        url_token = client.post("/api/v2/pushes", json={"push": {"payload": "x"}}).json["url_token"]
        for path in ("/p/{t}", "/p/{t}/r", "/p/{t}/passphrase", "/p/{t}/expire", "/f/{t}", "/static/app.css"):
            r = gateway.test_client().open(path.format(t=url_token), method="OPTIONS")
            assert (r.status_code, r.data) == (200, b"") and "OPTIONS" in r.headers["Allow"], path
        for path in ("/p/new", "/p", "/p/{t}/edit", "/api/v2/pushes/{t}"):  # (absent there: no route, any method)
            assert gateway.test_client().open(path.format(t=url_token), method="OPTIONS").status_code == 404, path
        assert view_count(app, url_token) == 0
    finally:
        with gateway.app_context():
            db.session.remove()
            db.engine.dispose()
