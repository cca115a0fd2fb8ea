"""Property-based fuzz of adapter + verifier (issue 9): never an allow for an invalid input, never an
unhandled exception, every denial a 401/403 with a challenge.

A valid DPoP request (allowed, checked for every example) is mutated once in a way that makes it invalid:
a character of the access token or the proof, the method, path, host, port or scheme, a repeated or
missing field, a token in the query, an underscore spelling of a trusted field, a proof for something
else. Separately, header blocks of arbitrary hostile values must be answered, not crash. Fixed seed
(``derandomize``), bounded example counts.
"""

from __future__ import annotations

import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwk

from tokenguard.core.dpop import create_proof
from tokenguard.web.responses import Answer
from tokenguard.web.service import AuthService

from .conftest import Issuer
from .integrity import ORIGIN, DpopHolder, incoming, make_service, nginx_fields

Fields = list[tuple[str, str]]
Change = Callable[["World", Fields], Fields]
B64URL = string.ascii_letters + string.digits + "-_"
FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class World:
    issuer: Issuer
    service: AuthService
    holder: DpopHolder
    other_key: Any


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    issuer = Issuer()
    service = make_service(issuer, tmp_path_factory.mktemp("fuzz"))
    return World(issuer, service, DpopHolder(issuer), jwk.generate_key("EC", "P-256", private=True))


def assert_answered(answer: Answer) -> None:
    """A denial is a 401/403 with a challenge and a reason code (never a 500: nothing here is a fault)."""
    assert answer.status in (200, 401, 403), (answer.status, answer.reason)
    if answer.status != 200:
        assert [v for k, v in answer.headers if k == "WWW-Authenticate"], answer.reason
        assert [v for k, v in answer.headers if k == "X-Auth-Error"] == [answer.reason]


def valid(world: World, path: str = "/dpop/item") -> Fields:
    return [*nginx_fields(path), *world.holder.fields(f"{ORIGIN}{path}")]


def replace(fields: Fields, name: str, value: str) -> Fields:
    return [(k, value if k == name else v) for k, v in fields]


# -------------------------------------------------------------------------------------- mutations


@dataclass(frozen=True)
class Mutation:
    """One change that makes the valid request invalid; ``name`` is what a failing example prints."""

    name: str
    change: Change = field(repr=False)

    def __call__(self, world: World, fields: Fields) -> Fields:
        return self.change(world, fields)


def _flip(value: str, part: int, position: int, char: str) -> str:
    """Replace one character of one JWS part by another base64url character."""
    parts = value.split(".")
    segment = parts[part % 3]
    i = position % len(segment)
    new = char if char != segment[i] else B64URL[(B64URL.index(char) + 1) % len(B64URL)]
    parts[part % 3] = segment[:i] + new + segment[i + 1:]
    return ".".join(parts)


@st.composite
def jwt_character(draw: st.DrawFn) -> Mutation:
    which = draw(st.sampled_from(["token", "proof"]))
    part, position, char = draw(st.integers(0, 2)), draw(st.integers(0, 10_000)), draw(st.sampled_from(B64URL))

    def mutate(world: World, fields: Fields) -> Fields:
        if which == "token":
            token = world.holder.token
            return replace(fields, "Authorization", f"DPoP {_flip(token, part, position, char)}")
        proof = next(v for k, v in fields if k == "DPoP")
        return replace(fields, "DPoP", _flip(proof, part, position, char))

    return Mutation(f"{which} part {part} character {position} -> {char}", mutate)


@st.composite
def truncation(draw: st.DrawFn) -> Mutation:
    name, keep = draw(st.sampled_from(["Authorization", "DPoP"])), draw(st.integers(0, 2000))

    def mutate(world: World, fields: Fields) -> Fields:
        value = next(v for k, v in fields if k == name)
        return replace(fields, name, value[: max(0, min(keep, len(value) - 1))])

    return Mutation(f"{name} cut to {keep} characters", mutate)


ORIGINAL = [
    ("X-Original-Method", st.sampled_from(["POST", "get", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])),
    ("X-Original-URI", st.sampled_from(["/dpop/other", "/dpop/item/", "/dpop/Item", "/dpop/item%2F", "/dpop//item",
                                        "/DPOP/item", "/dpop/ite", "/dpop/item.", "/x/../dpop/other"])),
    ("X-Forwarded-Host", st.sampled_from(["api.test.evil", "evil.test", "api.tes", "api-test", "127.0.0.1",
                                          "[::1]", "xn--api-test"])),
    ("X-Forwarded-Port", st.sampled_from(["8443", "80", "444", "1"])),
    ("X-Forwarded-Proto", st.sampled_from(["http"])),
]


@st.composite
def original_request(draw: st.DrawFn) -> Mutation:
    name, value = draw(st.sampled_from(ORIGINAL).flatmap(lambda nv: st.tuples(st.just(nv[0]), nv[1])))
    return Mutation(f"{name}: {value}", lambda world, fields: replace(fields, name, value))


@st.composite
def framing(draw: st.DrawFn) -> Mutation:
    kind = draw(st.sampled_from(["dup-dpop", "dup-auth", "no-dpop", "bearer-word", "query-token", "underscore",
                                 "dup-forwarded", "both-uri-conventions"]))
    twin = draw(st.sampled_from(["X_Original_URI", "x_forwarded_host", "X-Forwarded_Proto", "X_SSL_Client_Cert"]))

    def mutate(world: World, fields: Fields) -> Fields:
        proof = next(v for k, v in fields if k == "DPoP")
        if kind == "dup-dpop":
            return [*fields, ("DPoP", proof)]
        if kind == "dup-auth":
            return [*fields, ("Authorization", f"DPoP {world.holder.token}")]
        if kind == "no-dpop":
            return [(k, v) for k, v in fields if k != "DPoP"]
        if kind == "bearer-word":
            return replace(fields, "Authorization", f"Bearer {world.holder.token}")
        if kind == "query-token":
            return replace(fields, "X-Original-URI", f"/dpop/item?access_token={world.issuer.token()}")
        if kind == "underscore":
            return [*fields, (twin, "/dpop/item")]
        if kind == "dup-forwarded":
            return [*fields, ("X-Forwarded-Host", "api.test")]
        return [*fields, ("X-Forwarded-Uri", "/dpop/item")]

    return Mutation(f"framing {kind}" + (f" {twin}" if kind == "underscore" else ""), mutate)


@st.composite
def other_proof(draw: st.DrawFn) -> Mutation:
    kind = draw(st.sampled_from(["other-key", "other-url", "other-method", "no-ath", "old", "future", "other-token"]))

    def mutate(world: World, fields: Fields) -> Fields:
        key, htm, htu = world.holder.key.as_dict(private=True), "GET", f"{ORIGIN}/dpop/item"
        token: str | None = world.holder.token
        iat = None
        if kind == "other-key":
            key = world.other_key.as_dict(private=True)
        elif kind == "other-url":
            htu = f"{ORIGIN}/dpop/other"
        elif kind == "other-method":
            htm = "POST"
        elif kind == "no-ath":
            token = None
        elif kind == "old":
            iat = time.time() - 3600
        elif kind == "future":
            iat = time.time() + 3600
        else:
            token = world.issuer.token(cnf={"jkt": world.holder.key.thumbprint()})
        return replace(fields, "DPoP", create_proof(key, htm=htm, htu=htu, access_token=token, iat=iat))

    return Mutation(f"proof {kind}", mutate)


MUTATIONS = st.one_of(jwt_character(), truncation(), original_request(), framing(), other_proof())


@settings(FUZZ, max_examples=300)
@given(mutation=MUTATIONS)
def test_no_invalid_request_is_ever_allowed(world: World, mutation: Mutation) -> None:
    baseline = world.service.handle(incoming(valid(world)))
    assert baseline.allow, baseline.reason  # the unmutated request is good: the mutation made the difference
    answer = world.service.handle(incoming(mutation(world, valid(world))))
    assert_answered(answer)
    assert not answer.allow, answer.decision


# ------------------------------------------------------------------------------------------ garbage

NAMES = ["Authorization", "DPoP", "Host", "X-Original-URI", "X-Original-Method", "X-Forwarded-Uri",
         "X-Forwarded-Method", "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Proto", "X-SSL-Client-Cert",
         "X_Original_URI", "x-forwarded-host", "Cookie", "Content-Length", "Forwarded"]
HOSTILE = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(codec="latin-1"), max_size=300),
    st.sampled_from(["", " ", ",", "DPoP", "Bearer ", "DPoP a.b.c", "Bearer a,b", "/../../", "/%2e%2e/admin",
                     "//admin", "http://evil/", "api.test?", "api.test#", "[::1", "0", "65536", "https, http",
                     "eyJhbGciOiJub25lIn0.e30.", "a" * 9000, "\x00", "\r\n x", "%00", "/a?access_token=x"]),
    st.builds(lambda a, b: f"{a}.{b}.{a}", st.text(alphabet=B64URL, max_size=80), st.text(alphabet=B64URL,
                                                                                           max_size=80)),
)


@settings(FUZZ, max_examples=300)
@given(fields=st.lists(st.tuples(st.sampled_from(NAMES), HOSTILE), max_size=12),
       peer=st.sampled_from(["127.0.0.1", "203.0.113.7", "", None, "::1", "not-an-ip"]),
       path=st.sampled_from(["/auth", "/envoy/x", "/envoy", "/envoy/%2e%2e/admin"]))
def test_hostile_header_blocks_are_answered_never_allowed(world: World, fields: Fields, peer: str | None,
                                                          path: str) -> None:
    answer = world.service.handle(incoming(fields, peer=peer, path=path))
    assert_answered(answer)
    assert not answer.allow  # nothing here carries a token the issuer signed
