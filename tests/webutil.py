"""Helpers for the web tests: create pushes through the form, sign in, read rows."""
import re

from conftest import sql


def form(**fields):
    """push[...] form fields; booleans become a checked ('on') or absent checkbox."""
    data = {}
    for key, value in fields.items():
        if value is True:
            data[f"push[{key}]"] = "on"
        elif value is not False:
            data[f"push[{key}]"] = value
    return data


def create(client, **fields):
    """Create a push through the web form; return its url_token."""
    fields.setdefault("kind", "text")
    response = client.post("/p", data=form(**fields))
    assert response.status_code == 302, response.data
    match = re.fullmatch(r"/p/([a-z0-9]+)/preview", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


def sign_in(client, make_user, email="owner@example.com", password="correct horse"):
    """Create a user with a password and sign the client in; return (user_id, api_token)."""
    user = make_user(email=email, password=password)
    response = client.post("/users/sign_in", data={"email": email, "password": password})
    assert response.status_code == 302
    return user


def view_count(app, url_token):
    """The push's counted views, read from the database."""
    return sql(app, "SELECT view_count FROM pushes WHERE url_token = :t", t=url_token)[0][0]


def audit_kinds(app, url_token):
    """The push's audit event kinds (integers), oldest first."""
    return [r[0] for r in sql(app, "SELECT a.kind FROM audit_logs a JOIN pushes p ON p.id = a.push_id "
                                   "WHERE p.url_token = :t ORDER BY a.id", t=url_token)]
