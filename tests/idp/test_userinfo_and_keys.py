"""``/userinfo`` through tokenguard's verifier; signing-key persistence and publish-before-sign rotation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from support import Clock

from idp_mock.cli import main as cli_main
from idp_mock.keys import KeyManager

from .conftest import ISS, Idp, decode_jwt, escaped_pem

USERINFO = ISS + "/userinfo"


def _challenges(response: object) -> str:
    return ", ".join(response.headers.getlist("WWW-Authenticate"))  # type: ignore[attr-defined]


def test_userinfo_with_a_dpop_token(idp: Idp, k1: dict, k2: dict) -> None:
    code, verifier = idp.authorize(scope="openid profile email")
    token = idp.code_grant(code, verifier, dpop=idp.proof(k1)).json["access_token"]
    headers = [("Authorization", f"DPoP {token}"),
               ("DPoP", idp.proof(k1, url=USERINFO, method="GET", access_token=token))]
    response = idp.client.get("/userinfo", base_url=ISS, headers=headers)
    assert response.status_code == 200, (response.json, _challenges(response))
    assert response.json == {"sub": "alice", "name": "Alice Example", "preferred_username": "alice",
                             "email": "alice@example.test"}
    replay = idp.client.get("/userinfo", base_url=ISS, headers=headers)
    assert replay.status_code == 401 and 'error="invalid_dpop_proof"' in _challenges(replay)
    as_bearer = idp.client.get("/userinfo", base_url=ISS, headers=[("Authorization", f"Bearer {token}")])
    assert as_bearer.status_code == 401 and "invalid_token" in _challenges(as_bearer)
    other_key = idp.client.get("/userinfo", base_url=ISS, headers=[
        ("Authorization", f"DPoP {token}"), ("DPoP", idp.proof(k2, url=USERINFO, method="GET", access_token=token))])
    assert other_key.status_code == 401 and 'DPoP realm="idp-mock", error="invalid_token"' in _challenges(other_key)
    no_creds = idp.client.get("/userinfo", base_url=ISS)
    assert no_creds.status_code == 401 and 'algs="' in _challenges(no_creds)


def test_userinfo_nonce_and_bearer(make_idp: Callable[..., Idp], k1: dict) -> None:
    idp = make_idp(dpop_nonce=True)
    first = idp.client_credentials(dpop=idp.proof(k1))
    nonce = first.headers["DPoP-Nonce"]
    token = idp.client_credentials(dpop=idp.proof(k1, nonce=nonce)).json["access_token"]
    response = idp.client.get("/userinfo", base_url=ISS, headers=[
        ("Authorization", f"DPoP {token}"), ("DPoP", idp.proof(k1, url=USERINFO, method="GET", access_token=token))])
    assert response.status_code == 401 and "use_dpop_nonce" in _challenges(response)
    fresh = response.headers["DPoP-Nonce"]
    ok = idp.client.get("/userinfo", base_url=ISS, headers=[
        ("Authorization", f"DPoP {token}"),
        ("DPoP", idp.proof(k1, url=USERINFO, method="GET", access_token=token, nonce=fresh))])
    assert ok.status_code == 200 and ok.json == {"sub": "conf1"}


def test_userinfo_with_certificate_bound_and_opaque_and_revoked_tokens(idp: Idp) -> None:
    pem = (idp.state / "demo" / "mtls1.crt").read_bytes()
    cert = [("X-SSL-Client-Cert", escaped_pem(pem))]
    token = idp.token({"grant_type": "client_credentials", "client_id": "mtls1"}, headers=cert).json["access_token"]
    ok = idp.client.get("/userinfo", base_url=ISS, headers=[("Authorization", f"Bearer {token}"), *cert])
    assert ok.status_code == 200, _challenges(ok)
    no_cert = idp.client.get("/userinfo", base_url=ISS, headers=[("Authorization", f"Bearer {token}")])
    assert no_cert.status_code == 401 and "invalid_token" in _challenges(no_cert)
    opaque = idp.client_credentials("opaque1").json["access_token"]
    assert idp.client.get("/userinfo", base_url=ISS, headers=[("Authorization", f"Bearer {opaque}")]).status_code == 200
    bearer = idp.client_credentials().json["access_token"]
    auth = [("Authorization", f"Bearer {bearer}")]
    assert idp.client.get("/userinfo", base_url=ISS, headers=auth).status_code == 200
    idp.post("/revoke", {"token": bearer}, auth=("conf1", "conf1-secret"))
    revoked = idp.client.get("/userinfo", base_url=ISS, headers=auth)
    assert revoked.status_code == 401 and "invalid_token" in _challenges(revoked)


def test_keys_persist_across_restarts(make_idp: Callable[..., Idp]) -> None:
    first = make_idp().client.get("/jwks", base_url=ISS).json
    second = make_idp().client.get("/jwks", base_url=ISS).json
    assert first == second
    assert all("d" not in key for key in first["keys"])


def test_rotation_publishes_before_signing(tmp_path: Path) -> None:
    clock = Clock()
    keys = KeyManager(tmp_path, rotation_grace=300, retain=900, clock=clock)
    old_kid = keys.signing_key()[0]
    status = keys.rotate()
    staged = [k["kid"] for k in status["keys"] if k["status"] == "next"]
    assert len(staged) == 1
    assert {k["kid"] for k in keys.public_jwks()["keys"]} == {old_kid, staged[0]}
    assert keys.signing_key()[0] == old_kid  # published, not yet signing
    clock.advance(301)
    assert keys.signing_key()[0] == staged[0]
    assert old_kid in {k["kid"] for k in keys.public_jwks()["keys"]}  # retired, still published
    clock.advance(901)
    assert {k["kid"] for k in keys.public_jwks()["keys"]} == {staged[0]}


def test_second_rotate_activates_and_other_processes_see_it(tmp_path: Path) -> None:
    a = KeyManager(tmp_path)
    b = KeyManager(tmp_path)  # another worker on the same state dir
    old = a.signing_key()[0]
    a.rotate()
    a.rotate()
    assert b.signing_key()[0] != old
    assert b.signing_key()[0] == a.signing_key()[0]


def test_admin_rotation_endpoint_and_cli(make_idp: Callable[..., Idp], tmp_path: Path) -> None:
    idp = make_idp(admin_secret="s3cret")
    before = decode_jwt(idp.client_credentials().json["access_token"])[0]["kid"]
    assert idp.post("/admin/rotate-keys").status_code == 401
    assert idp.post("/admin/rotate-keys", headers=[("Authorization", "Bearer wrong")]).status_code == 401
    staged = idp.post("/admin/rotate-keys", headers=[("Authorization", "Bearer s3cret")])
    assert staged.status_code == 200
    new_kid = next(k["kid"] for k in staged.json["keys"] if k["status"] == "next")
    assert new_kid in {k["kid"] for k in idp.client.get("/jwks", base_url=ISS).json["keys"]}
    assert decode_jwt(idp.client_credentials().json["access_token"])[0]["kid"] == before
    assert cli_main(["rotate-keys", "--state-dir", str(idp.state)]) == 0  # second rotate: activate
    assert decode_jwt(idp.client_credentials().json["access_token"])[0]["kid"] == new_kid
    assert make_idp(state_dir=str(tmp_path / "other")).post("/admin/rotate-keys").status_code == 404
