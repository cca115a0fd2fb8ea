# ruff: noqa: E501 - the LAUNCHER string is JavaScript, kept as oidc-provider documents it
"""The authorization-server cases against a foreign AS: panva's node-oidc-provider (issue 13 §2).

Opt-in, because it installs oidc-provider from the npm registry and CI must not depend on it:
set ``TOKENGUARD_TEST_NODE_OIDC=1`` (npm installs ``oidc-provider@9.13.3`` into a cache
directory once), or ``TOKENGUARD_NODE_OIDC_DIR=DIR`` for a directory where ``oidc-provider`` is
already installed (``npm install oidc-provider@9.13.3``). Skipped with the reason when node or
npm is absent, or when not opted in.

The launcher below is test-fixture data (like the nginx configs the harness renders): it only
configures oidc-provider with the clients the suite's roles need, an https mTLS alias, and an
auto-consenting /auth, so the public-client cases can run. Expected: no MUST or SHOULD failure, and
exactly the POLICY pins where oidc-provider makes another choice than this project's profile
(recorded in docs/conformance.md). Run with opaque access tokens, since oidc-provider refuses to
introspect JWT access tokens (400 unsupported_token_type, which fails INT-AS-01/02/04c).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import harness  # noqa: E402

from tokenguard.conformance.model import Result  # noqa: E402
from tokenguard.conformance.runner import collect, parser  # noqa: E402

pytestmark = pytest.mark.integration

VERSION = "9.13.3"
REDIRECT = "http://127.0.0.1:8765/callback"
#: Where oidc-provider deliberately differs from this project's profile (POLICY pins, not RFC).
NODE_PROFILE_DIFFERENCES = {
    "META-AS-01b",     # no introspection_endpoint_auth_methods_supported (OPTIONAL in RFC 8414)
    "TOK-AS-03-pin",   # invalid_grant, not invalid_request, for a DPoP-required client without a proof
    "TOK-AS-06-pin",   # invalid_grant, not invalid_dpop_proof, for a replayed proof
    "INT-AS-04a-pin",  # 400 invalid_request, not 401 invalid_client, for introspection without credentials
}

LAUNCHER = r"""// node-oidc-provider as a foreign AS for tokenguard's conformance suite (docs/conformance-cases.md §2). Test fixture only.
// env: PORT (http issuer), MTLS_PORT (https mTLS alias), TLS_DIR (ca/server/mtls1/selfsigned1 .crt),
//      NONCE=1 to require DPoP nonces at the token endpoint.
import * as crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider from 'oidc-provider';

const env = process.env;
const PORT = Number(env.PORT || 9700);
const MTLS_PORT = Number(env.MTLS_PORT || 9743);
const ISSUER = `http://127.0.0.1:${PORT}`;
const MTLS = `https://localhost:${MTLS_PORT}`;
const TLS = env.TLS_DIR || './tls';
const REDIRECT = 'http://127.0.0.1:8765/callback';
const pem = (f) => fs.readFileSync(`${TLS}/${f}`, 'utf8');

const selfSigned = new crypto.X509Certificate(pem('selfsigned1.crt'));
const selfJwk = { ...selfSigned.publicKey.export({ format: 'jwk' }), x5c: [selfSigned.raw.toString('base64')] };

const clients = [
  { client_id: 'conf1', client_secret: 'conf1-secret', grant_types: ['client_credentials', 'authorization_code', 'refresh_token'],
    response_types: ['code'], redirect_uris: [REDIRECT], token_endpoint_auth_method: 'client_secret_basic' },
  { client_id: 'dpop1', client_secret: 'dpop1-secret', grant_types: ['client_credentials'], response_types: [],
    redirect_uris: [], dpop_bound_access_tokens: true },
  { client_id: 'pub1', token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'], redirect_uris: [REDIRECT] },
  { client_id: 'rs1', client_secret: 'rs1-secret', grant_types: [], response_types: [], redirect_uris: [] },
  { client_id: 'mtls1', token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_subject_dn: 'CN=mtls1',
    tls_client_certificate_bound_access_tokens: true, grant_types: ['client_credentials'], response_types: [],
    redirect_uris: [] },
  { client_id: 'selfsigned1', token_endpoint_auth_method: 'self_signed_tls_client_auth', jwks: { keys: [selfJwk] },
    grant_types: ['client_credentials'], response_types: [], redirect_uris: [] },
];

const peer = (ctx) => (ctx.req.socket.getPeerX509Certificate ? ctx.req.socket.getPeerX509Certificate() : undefined);
const signing = [
  { ...crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' }), kid: 'es', alg: 'ES256', use: 'sig' },
  { ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'rs', alg: 'RS256', use: 'sig' },
];

const provider = new Provider(ISSUER, {
  clients,
  jwks: { keys: signing },
  clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'private_key_jwt', 'none', 'tls_client_auth', 'self_signed_tls_client_auth'],
  scopes: ['openid', 'offline_access', 'read', 'write'],
  findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
  issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
  discovery: { mtls_endpoint_aliases: { token_endpoint: `${MTLS}/token`, introspection_endpoint: `${MTLS}/token/introspection` } },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    dPoP: { enabled: true, nonceSecret: crypto.randomBytes(32), requireNonce: () => env.NONCE === '1' },
    mTLS: {
      enabled: true, certificateBoundAccessTokens: true, tlsClientAuth: true, selfSignedTlsClientAuth: true,
      getCertificate: (ctx) => peer(ctx)?.toString(),
      certificateAuthorized: (ctx) => ctx.req.socket.authorized === true,
      certificateSubjectMatches: (ctx, property, expected) => property === 'tls_client_auth_subject_dn' && peer(ctx)?.subject === expected,
    },
    resourceIndicators: {
      enabled: true, defaultResource: () => 'https://api.test', useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope: 'read write', audience: 'https://api.test', accessTokenFormat: env.FORMAT === 'opaque' ? 'opaque' : 'jwt', jwt: { sign: { alg: 'ES256' } } }),
    },
  },
});

// Auto-consent: /auth is driven server-side through login and consent, and the final redirect handed back.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  let result;
  if (details.prompt.name === 'login') {
    result = { login: { accountId: 'u1' } };
  } else {
    const grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    const d = details.prompt.details;
    if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
    for (const [indicator, scopes] of Object.entries(d.missingResourceScopes || {})) grant.addResourceScope(indicator, scopes.join(' '));
    result = { consent: { grantId: await grant.save() } };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function autoAuthorize(req, res) {
  let url = `${ISSUER}${req.url}`;
  const jar = new Map();
  for (let hop = 0; hop < 10; hop += 1) {
    const r = await fetch(url, { redirect: 'manual', headers: { 'x-internal': '1', cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') } });
    for (const c of r.headers.getSetCookie()) { const [kv] = c.split(';'); const i = kv.indexOf('='); jar.set(kv.slice(0, i).trim(), kv.slice(i + 1)); }
    const loc = r.headers.get('location');
    if (!loc || ![302, 303].includes(r.status)) { res.writeHead(r.status, { 'content-type': r.headers.get('content-type') || 'text/plain' }); res.end(await r.text()); return; }
    const next = new URL(loc, url);
    if (next.origin !== ISSUER) { res.writeHead(303, { location: next.href }); res.end(); return; }
    url = next.href;
  }
  res.writeHead(500); res.end('too many redirects');
}

const app = provider.callback();
const handler = (req, res) => {
  const path = req.url.split('?')[0];
  if (path.startsWith('/interaction/')) { interaction(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); }); return; }
  if (path === '/auth' && !req.headers['x-internal']) { autoAuthorize(req, res).catch((e) => { res.writeHead(500); res.end(String(e)); }); return; }
  app(req, res);
};
http.createServer(handler).listen(PORT, '127.0.0.1');
https.createServer({ key: pem('server.key'), cert: pem('server.crt'), ca: pem('ca.crt'), requestCert: true, rejectUnauthorized: false }, handler)
  .listen(MTLS_PORT, '127.0.0.1');
console.log(`oidc-provider ${ISSUER} (mTLS alias ${MTLS})`);
"""


def _node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are needed for the node-oidc-provider run (apt-get install nodejs npm)")
    given = os.environ.get("TOKENGUARD_NODE_OIDC_DIR")
    if given:
        if not (Path(given) / "node_modules" / "oidc-provider").is_dir():
            pytest.fail(f"TOKENGUARD_NODE_OIDC_DIR={given} has no node_modules/oidc-provider")
        return Path(given)
    if os.environ.get("TOKENGUARD_TEST_NODE_OIDC") != "1":
        pytest.skip("opt-in (installs oidc-provider from the npm registry): set TOKENGUARD_TEST_NODE_OIDC=1 or "
                    "TOKENGUARD_NODE_OIDC_DIR=DIR with oidc-provider installed")
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenguard-test-node-oidc"
    if not (base / "node_modules" / "oidc-provider").is_dir():
        base.mkdir(parents=True, exist_ok=True)
        (base / "package.json").write_text('{"private": true, "type": "module"}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", f"oidc-provider@{VERSION}"],  # noqa: S603,S607
                       cwd=base, check=True, capture_output=True, timeout=600)
    return base


def _tls(directory: Path) -> None:
    """CA, server certificate for localhost, mtls1 (CA-issued, CN=mtls1), selfsigned1."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def build(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
              signer: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
             .not_valid_after(now + dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(signer, hashes.SHA256())

    def save(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (directory / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (directory / f"{stem}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build(name("test CA"), name("test CA"), ca_key, ca_key, ca=True)
    save("ca", ca, ca_key)
    for stem, cn, server in (("server", "localhost", True), ("mtls1", "mtls1", False)):
        key = ec.generate_private_key(ec.SECP256R1())
        save(stem, build(name(cn), ca.subject, key, ca_key, server=server), key)
    key = ec.generate_private_key(ec.SECP256R1())
    save("selfsigned1", build(name("selfsigned1"), name("selfsigned1"), key, key), key)


@pytest.mark.parametrize("nonce", [False, True], ids=["nonce-off", "nonce-on"])
def test_as_cases_against_node_oidc_provider(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                             nonce: bool) -> None:
    node_dir = _node_dir(tmp_path_factory)
    tls = tmp_path / "tls"
    _tls(tls)
    launcher = node_dir / "tokenguard-conformance-launcher.mjs"
    launcher.write_text(LAUNCHER)
    port, mtls_port = harness.free_port(), harness.free_port()
    proc = harness.start_process(
        ["node", str(launcher)], name=f"oidc-provider-{port}", log_dir=tmp_path / "logs", cwd=node_dir,
        ready_url=f"http://127.0.0.1:{port}/jwks",
        env={"PORT": str(port), "MTLS_PORT": str(mtls_port), "TLS_DIR": str(tls), "FORMAT": "opaque",
             "NONCE": "1" if nonce else "0"})
    try:
        argv = [
            "--as-metadata", f"http://127.0.0.1:{port}/.well-known/oauth-authorization-server",
            "--as-client", "confidential:conf1:conf1-secret", "--as-client", "dpop-required:dpop1:dpop1-secret",
            "--as-client", "public:pub1", "--as-client", "introspect:rs1:rs1-secret",
            "--as-client", "tls:mtls1", "--as-client", "cert-bound:mtls1", "--as-client", "self-signed-tls:selfsigned1",
            "--as-tls-cert", f"tls={tls / 'mtls1.crt'}", "--as-tls-key", f"tls={tls / 'mtls1.key'}",
            "--as-tls-cert", f"cert-bound={tls / 'mtls1.crt'}", "--as-tls-key", f"cert-bound={tls / 'mtls1.key'}",
            "--as-tls-cert", f"self-signed-tls={tls / 'selfsigned1.crt'}",
            "--as-tls-key", f"self-signed-tls={tls / 'selfsigned1.key'}",
            "--as-redirect-uri", REDIRECT, "--as-scope", "read offline_access", "--ca", str(tls / "ca.crt"),
            "--timeout", "30", *(["--as-nonce"] if nonce else []),
        ]
        results: list[Result] = collect(parser().parse_args(argv))
    finally:
        proc.stop()
    failed = {r.id for r in results if r.outcome == "fail"}
    hard = [f"{r.id} [{r.level}] {r.got}: {r.reason}" for r in results if r.outcome == "fail" and r.level != "P"]
    assert not hard, "oidc-provider fails RFC-level cases:\n" + "\n".join(hard)
    assert failed == NODE_PROFILE_DIFFERENCES
    passed = {r.id for r in results if r.outcome == "pass"}
    assert {"TOK-AS-01a", "TOK-AS-08b", "JKT-AS-02", "RT-AS-02", "INT-AS-01", "MTLS-AS-05a", "MTLS-AS-06"} <= passed
    if nonce:
        assert {"NONCE-AS-01", "NONCE-AS-02", "NONCE-AS-03"} <= passed
