"""Spec §1.2, second half: the proof against the request — htm, htu, iat, replay (RFC 9449 §4.3(8)–(11), §11.1)."""

from __future__ import annotations

import time
import urllib.parse

from .. import expect as X
from ..minting import (
    now,
)
from ..model import Recorder
from .common import case, dproof, send_proof
from .context import RsContext


@case("DPOP-RS-19", "9449 §4.3(8)", "M", "htm mismatch",
      sent='`htm: PUT` on a GET',
      expect='401·D(invalid_dpop_proof)')
def dpop_rs_19(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, htm="PUT"), tok))


@case("DPOP-RS-20", "9449 §4.3(8); RFC 9110 §9.1", "M", "htm is case-sensitive",
      sent='`htm: get` on a GET',
      expect='401·D(invalid_dpop_proof) (methods are case-sensitive)')
def dpop_rs_20(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, htm="get"), tok))


@case("DPOP-RS-21", "9449 §4.3(8)", "M", "htm is compared with the original method",
      sent='external POST to the write route (scope write): (a) `htm: POST`; (b) `htm: GET`',
      expect='(a) 200; (b) 401·D(invalid_dpop_proof): htm is the original method')
def dpop_rs_21(ctx: RsContext, rec: Recorder) -> None:
    url = ctx.url("write", query=None)
    tok = ctx.at("jkt", scope="write")
    ctx.check(rec, "a", X.ok(), lambda: send_proof(
        ctx, ctx.proof(tok, url=url, htm="POST"), tok, url=url, method="POST"))
    tok_b = ctx.at("jkt", scope="write")
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_b, url=url, htm="GET"), tok_b, url=url, method="POST"))


@case("DPOP-RS-22", "9449 §4.3(9)", "M", "htu with query and fragment",
      sent='`htu` carries the query and a fragment',
      expect='200 (query and fragment are ignored)')
def dpop_rs_22(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    htu = ctx.without_query(ctx.url()) + "?x=1#frag"
    ctx.check(rec, "", X.ok(), lambda: send_proof(ctx, ctx.proof(tok, htu=htu), tok))


@case("DPOP-RS-23", "9449 §4.3(9)", "M", "query ignored on both sides",
      sent='(a) request `?x=1&y=2`, htu without query; (b) htu `?x=2`, request `?x=1`',
      expect='200 both')
def dpop_rs_23(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    url_a = ctx.url(query="x=1&y=2")
    ctx.check(rec, "a", X.ok(), lambda: send_proof(ctx, ctx.proof(tok, url=url_a), tok, url=url_a))
    tok_b = ctx.at("jkt")
    htu_b = ctx.without_query(ctx.url()) + "?x=2"
    ctx.check(rec, "b", X.ok(), lambda: send_proof(ctx, ctx.proof(tok_b, htu=htu_b), tok_b))


def _swap(url: str, **parts: str) -> str:
    s = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(s._replace(**parts))


@case("DPOP-RS-24", "9449 §4.3(9)", "M", "htu names a different path",
      sent='`htu` = the resource URL with `ohnonotagain` appended to the path',
      expect='401·D(invalid_dpop_proof)')
def dpop_rs_24(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    htu = ctx.without_query(ctx.url()) + "ohnonotagain"
    ctx.check(rec, "", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok, htu=htu), tok))


@case("DPOP-RS-25", "9449 §4.3(9)", "M", "htu scheme, host, port or userinfo differ",
      sent='`htu` with (a) another host; (b) the other scheme; (c) another port; (d) userinfo',
      expect='401·D(invalid_dpop_proof) each')
def dpop_rs_25(ctx: RsContext, rec: Recorder) -> None:
    base = ctx.without_query(ctx.url())
    s = urllib.parse.urlsplit(base)
    host = s.hostname or ""
    other_scheme = "http" if s.scheme == "https" else "https"
    port = s.port or (443 if s.scheme == "https" else 80)
    variants = {
        "a": _swap(base, netloc="evil.test" + (f":{s.port}" if s.port else "")),
        "b": _swap(base, scheme=other_scheme),
        "c": _swap(base, netloc=f"{host}:{8443 if port != 8443 else 9443}"),
        "d": _swap(base, netloc=f"u@{s.netloc}"),
    }
    for sub, htu in variants.items():
        tok = ctx.at("jkt")
        ctx.check(rec, sub, dproof(ctx), lambda tok=tok, htu=htu: send_proof(ctx, ctx.proof(tok, htu=htu), tok))


@case("DPOP-RS-26", "9449 §4.3; RFC 3986 §6.2.2, §6.2.3", "S", "htu equal after normalisation",
      sent=('`htu` equal after RFC 3986 normalisation: (a) upper-case scheme and host; (b) explicit default port;'
            ' (c) a percent-encoded unreserved character; (d) dot-segments'),
      expect='200 each')
def dpop_rs_26(ctx: RsContext, rec: Recorder) -> None:
    base = ctx.without_query(ctx.url())
    s = urllib.parse.urlsplit(base)
    default_port = 443 if s.scheme == "https" else 80
    path = s.path or "/"
    head, _, tail = path.rpartition("/")
    first = tail[:1]
    encoded = f"{head}/%{ord(first):02x}{tail[1:]}" if first and first.isalnum() else path
    variants = {
        "a": _swap(base, scheme=s.scheme.upper(), netloc=s.netloc.upper()),
        "c": _swap(base, path=encoded),
        "d": _swap(base, path=f"{head}/a/./b/../../{tail}"),
    }
    if s.port is None:
        variants["b"] = _swap(base, netloc=f"{s.netloc}:{default_port}")
    for sub in ("a", "b", "c", "d"):
        if sub not in variants:
            rec.skip(sub, "the external URL carries an explicit port; no default-port variant")
            continue
        tok = ctx.at("jkt")
        htu = variants[sub]
        ctx.check(rec, sub, X.ok(), lambda tok=tok, htu=htu: send_proof(ctx, ctx.proof(tok, htu=htu), tok))


@case("DPOP-RS-28", "9449 §4.2", "M", "htu is not an absolute URI string",
      sent='`htu` (a) a relative path; (b) the number 123; (c) `:::*;`',
      expect='401·D(invalid_dpop_proof) each, never 500')
def dpop_rs_28(ctx: RsContext, rec: Recorder) -> None:
    for sub, htu in (("a", "/" + ctx.without_query(ctx.url()).split("/", 3)[-1]), ("b", 123), ("c", ":::*;")):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, dproof(ctx), lambda tok=tok, htu=htu: send_proof(
            ctx, ctx.proof(tok, claims={"htu": htu}), tok))


@case("DPOP-RS-29", "9449 §4.3(9) behind a proxy", "M", "htu is the external URL, not the sub-request's",
      sent="auth_request mode: `htu` = (a) the external URL; (b) the verifier's own sub-request URL",
      expect='(a) 200; (b) 401·D(invalid_dpop_proof)')
def dpop_rs_29(ctx: RsContext, rec: Recorder) -> None:
    if not ctx.only_auth_request(rec, "a", "the suite must be the proxy"):
        rec.skip("b", "needs --mode auth_request (the suite must be the proxy)")
        return
    tok = ctx.at("jkt")
    ctx.check(rec, "a", X.ok(), lambda: send_proof(ctx, ctx.proof(tok), tok))
    tok_b = ctx.at("jkt")
    internal = ctx.without_query(ctx.verifier_url)
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok_b, htu=internal), tok_b))


@case("DPOP-RS-30", "9449 §11.1; FAPI2 5.3.2.1", "S", "small clock skew accepted",
      sent='`iat` (a) 10 s in the past; (b) 8 s in the future',
      expect='200 both (FAPI2 clock skew)')
def dpop_rs_30(ctx: RsContext, rec: Recorder) -> None:
    for sub, off in (("a", -10), ("b", 8)):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, X.ok(), lambda tok=tok, off=off: send_proof(ctx, ctx.proof(tok, iat_offset=off), tok))


@case("DPOP-RS-31", "9449 §4.3(11), §11.1", "M", "iat an hour off",
      sent='`iat` (a) one hour in the past; (b) one hour in the future; no nonce',
      expect='401·D(invalid_dpop_proof), or 401·D(use_dpop_nonce)+N')
def dpop_rs_31(ctx: RsContext, rec: Recorder) -> None:
    e = X.any_of(dproof(ctx), X.with_nonce(X.dpop_error(ctx.profile, "use_dpop_nonce")))
    for sub, off in (("a", -3600), ("b", 3600)):
        tok = ctx.at("jkt")
        ctx.check(rec, sub, e, lambda tok=tok, off=off: send_proof(ctx, ctx.proof(tok, iat_offset=off), tok))


@case("DPOP-RS-32", "9449 §11.1 (window iat -PAST..+FUTURE)", "P", "iat window edges and types",
      sent='`iat` just outside and just inside --iat-window; (c) `iat` as a string; (d) `iat` in milliseconds',
      expect='rejects are 401·D(invalid_dpop_proof), the inside value 200')
def dpop_rs_32(ctx: RsContext, rec: Recorder) -> None:
    k = ctx.knobs
    cases = [("a1", -(k.iat_past + 5), dproof(ctx)), ("a2", -max(k.iat_past - 5, 0), X.ok()),
             ("b", k.iat_future + 5, dproof(ctx))]
    for sub, off, e in cases:
        tok = ctx.at("jkt")
        ctx.check(rec, sub, e, lambda tok=tok, off=off: send_proof(ctx, ctx.proof(tok, iat_offset=off), tok))
    tok_c = ctx.at("jkt")
    ctx.check(rec, "c", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok_c, claims={"iat": str(now())}), tok_c))
    tok_d = ctx.at("jkt")
    ctx.check(rec, "d", dproof(ctx), lambda: send_proof(ctx, ctx.proof(tok_d, claims={"iat": now() * 1000}), tok_d))


@case("DPOP-RS-33", "RFC 7519 §4.1.4/§4.1.5 on proofs", "S", "proof nbf/exp",
      sent='(a) proof with `nbf`=now, `exp`=now+300; (b) proof with `exp` 120 s ago',
      expect='(a) 200; (b) 401·D(invalid_dpop_proof) ((b) is POLICY)')
def dpop_rs_33(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    t0 = now()
    ctx.check(rec, "a", X.ok(), lambda: send_proof(ctx, ctx.proof(tok, claims={"nbf": t0, "exp": t0 + 300}), tok))
    tok_b = ctx.at("jkt")
    ctx.check(rec, "b", dproof(ctx), lambda: send_proof(
        ctx, ctx.proof(tok_b, claims={"exp": now() - 120}), tok_b), level="P")


@case("DPOP-RS-34", "9449 §11.1, §4.3(11)", "S", "replayed proof",
      sent='B-DPOP, then the identical request again with the same proof',
      expect='first 200, second 401·D(invalid_dpop_proof)')
def dpop_rs_34(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    proof = ctx.proof(tok)
    first = send_proof(ctx, proof, tok)
    if first.status != 200:
        rec.record("", "first 200, then 401·D(invalid_dpop_proof)", first.summary(),
                   f"first use was not accepted ({first.status})")
        return
    ctx.check(rec, "", dproof(ctx).plus(suffix=" on the 2nd use"), lambda: send_proof(ctx, proof, tok))


@case("DPOP-RS-35", "9449 §11.1", "S", "fresh proof reusing a jti",
      sent="a second, validly signed proof reusing the first proof's `jti`",
      expect='first 200, second 401·D(invalid_dpop_proof)')
def dpop_rs_35(ctx: RsContext, rec: Recorder) -> None:
    tok = ctx.at("jkt")
    jti = "replay-" + str(time.time_ns())
    first = send_proof(ctx, ctx.proof(tok, claims={"jti": jti}), tok)
    if first.status != 200:
        rec.record("", "first 200, then 401·D(invalid_dpop_proof)", first.summary(),
                   f"first use was not accepted ({first.status})")
        return
    ctx.check(rec, "", dproof(ctx).plus(suffix=" on the 2nd use"), lambda: send_proof(
        ctx, ctx.proof(tok, claims={"jti": jti}), tok))
