"""Spec §2.7: mTLS client authentication and certificate-bound tokens (RFC 8705 §2, §3)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ..minting import x5t_s256
from ..model import Recorder, SkipCase
from .common import case, client_refusal, expect_error, expect_token, rec_result
from .context import AsClient, AsContext


def _tls_client(ctx: AsContext, role: str) -> AsClient:
    c = ctx.client(role)
    if not ctx.cert_for(role):
        raise SkipCase(f"needs --as-tls-cert/--as-tls-key [{role}=]PEM (the certificate registered for the client)")
    return c


def _cert_thumb(path: str) -> str:
    with open(path, "rb") as fh:
        cert = x509.load_pem_x509_certificate(fh.read())
    return x5t_s256(cert.public_bytes(Encoding.DER))


@case("MTLS-AS-01", "8705 §2.1", "M", "tls_client_auth",
      sent='tls_client_auth client with its registered certificate',
      expect='200')
def mtls_as_01(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=True)
    rec_result(rec, "", "200", res, None if res.status == 200 else f"status {res.status}, error={res.error}")


@case("MTLS-AS-02", "8705 §2", "M", "no or wrong certificate",
      sent=('tls_client_auth client with (a) no certificate; (b) another subject; (c) an unregistered self-signed'
            " one; (d) another client's id"),
      expect='400/401 invalid_client each; POLICY pin: 401')
def mtls_as_02(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=False,
                    url=ctx.endpoint("token_endpoint", mtls=True))
    client_refusal(rec, "a", res)
    rec.skip("b", "needs a second certificate from a trusted CA with another subject")
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", c.client_id), proofs=[], tls_cert=ctx.own_cert())
    client_refusal(rec, "c", res)
    other = ctx.clients.get("self-signed-tls")
    if other is None:
        rec.skip("d", "needs a second tls client (self-signed-tls:ID)")
        return
    res = ctx.token(ctx.cc_form(), client=AsClient("tls", other.client_id), proofs=[], tls_cert=True)
    client_refusal(rec, "d", res)


@case("MTLS-AS-03", "8705 §2.2", "M", "self_signed_tls_client_auth",
      sent='self_signed_tls_client_auth with (a) the registered certificate; (b) an unregistered one',
      expect='(a) 200; (b) 400/401 invalid_client (pin 401)')
def mtls_as_03(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "self-signed-tls")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    rec_result(rec, "a", "200", res, None if res.status == 200 else f"status {res.status}, error={res.error}")
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=ctx.own_cert())
    client_refusal(rec, "b", res)


@case("MTLS-AS-04", "8705 §2", "M", "client_id is required with mTLS",
      sent='mTLS-authenticated request without client_id',
      expect='400 invalid_request')
def mtls_as_04(ctx: AsContext, rec: Recorder) -> None:
    _tls_client(ctx, "tls")
    res = ctx.token(ctx.cc_form(), client=None, proofs=[], tls_cert=True)
    rec_result(rec, "", "400 invalid_request", res, expect_error(res, {400}, {"invalid_request"}))


@case("MTLS-AS-05", "8705 §3, §3.1", "M", "certificate-bound access tokens",
      sent='certificate-binding client (a) with its certificate; (b) without',
      expect='(a) 200 Bearer, cnf.x5t#S256 of the cert; (b) 400 invalid_grant or invalid_client')
def mtls_as_05(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "cert-bound")
    cert = ctx.cert_for("cert-bound")
    assert cert is not None
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=True)
    rec_result(rec, "a", "200 Bearer, cnf.x5t#S256", res, expect_token(res, "Bearer", x5t=_cert_thumb(cert[0])))
    res = ctx.token(ctx.cc_form(), client=c, proofs=[], tls_cert=False,
                    url=ctx.endpoint("token_endpoint", mtls=True))
    rec_result(rec, "b", "400 invalid_grant (or invalid_client)", res,
         expect_error(res, {400, 401}, {"invalid_grant", "invalid_client"}))


@case("MTLS-AS-06", "node multiple PoP mechanisms", "P", "certificate binding plus DPoP",
      sent='certificate-binding client also sends a valid DPoP proof',
      expect='400 invalid_request (never a doubly bound token)')
def mtls_as_06(ctx: AsContext, rec: Recorder) -> None:
    c = _tls_client(ctx, "cert-bound")
    res = ctx.token(ctx.cc_form(), client=c, tls_cert=True)
    rec_result(rec, "", "400 invalid_request", res, expect_error(res, {400}, {"invalid_request"}))
