from conftest import bearer


def test_version_is_public(client):
    r = client.get("/api/v2/version", headers=bearer("nonsense"))
    assert r.status_code == 200
    assert r.json["api_version"] == "2.1"


def test_create_and_retrieve(client, token):
    r = client.post("/api/v2/pushes", json={"push": {"payload": "s3cret"}}, headers=bearer(token))
    assert r.status_code == 201
    r = client.get(f"/api/v2/pushes/{r.json['url_token']}")
    assert r.json["payload"] == "s3cret"
