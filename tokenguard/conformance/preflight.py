"""The pre-flight: before any case runs, is the verifier set up the way the cases assume?

A hundred cases failing because the verifier does not trust the suite's issuer teaches nothing
(issue 13). So a handful of baseline requests run first, and any set-up problem stops the run with
one message naming what to configure (exit 3, see :data:`report.EXIT_SETUP`).

Black-box: a reason code in ``X-Auth-Error`` (tokenguard sends one, e.g. ``token_unknown_issuer``,
``no_route``) sharpens the advice, but every conclusion also stands on status codes, challenges
and what the suite's own issuer saw (metadata / JWKS / introspection requests), so a foreign
verifier gets the same diagnosis. Never prints a token, a proof or a secret.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from .authserver.context import AsContext
from .model import SkipCase
from .resource.context import RsContext
from .setup_config import Fixture
from .transport import Response


@dataclass
class Finding:
    """One set-up problem: what is wrong, how to fix it, and the tokenguard config that does."""

    what: str
    fix: str
    toml: str = ""
    fatal: bool = True


class PreflightFailed(Exception):
    """The verifier is not set up for the suite; ``findings`` say why (the run stops, exit 3)."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__(f"{len(findings)} set-up problem(s)")
        self.findings = findings


def _got(resp: Response) -> str:
    return resp.summary()


_ROUTE_KIND = {"resource": "read", "write-resource": "write", "nonce-resource": "nonce"}


def _route_problem(resp: Response, method: str, url: str, route: str, fx: Fixture,
                   mode: str) -> Finding | None:
    """A request without credentials must meet a protected route: 401 with challenges."""
    reason = resp.reason_code()
    kind = _ROUTE_KIND[route]
    where = f"{method} {url}"
    if resp.status == 401:
        return None
    if resp.status == 404:
        fix = ("--verifier must be the verifier's auth endpoint (tokenguard: http://HOST:PORT/auth)"
               if mode == "auth_request" else "the proxy serves nothing at that path: check the --*resource URLs")
        return Finding(f"{where} answered 404 ({_got(resp)})", fix)
    if reason == "no_route" or (resp.status == 403 and not resp.challenges):
        return Finding(f"the verifier has no route for {where} ({_got(resp)})",
                       f"add a route for it, or point --{route} at a protected URL", fx.route_toml(kind))
    if resp.status == 200:
        return Finding(f"the verifier allowed {where} without credentials",
                       "the route must require a token (tokenguard: a [[route]] for it, and policy.default = \"deny\")",
                       fx.route_toml(kind))
    if resp.status >= 500:
        return Finding(f"the verifier failed on {where} ({_got(resp)})",
                       "it cannot decide at all: read its log (keys not loaded? replay store down?)")
    return Finding(f"{where} without credentials answered {_got(resp)}, expected 401 with challenges",
                   "the suite expects an RFC 6750 / RFC 9449 401 challenge there")


def _algs_problem(resp: Response, fx: Fixture) -> Finding | None:
    """RFC 9449 §7.1: the DPoP challenge's ``algs`` must be what the suite was told (--algs)."""
    dpop = [c for c in resp.challenges if c.is_scheme("DPoP")]
    if not dpop:
        return Finding(f"the verifier offers no DPoP challenge on the read route ({_got(resp)})",
                       "the suite tests DPoP: the route must accept DPoP-bound tokens (tokenguard: binding = \"any\")",
                       fx.route_toml("read"))
    listed = (dpop[0].get("algs") or "").split()
    wanted = fx.algs.split()
    if listed and set(listed) != set(wanted):
        return Finding(f'the verifier\'s DPoP algs are "{" ".join(listed)}", '
                       f'the suite was told "{" ".join(wanted)}"',
                       "configure the verifier with the suite's algs, or run the suite with "
                       f'--algs "{" ".join(listed)}"',
                       fx.dpop_toml())
    return None


def _refused_valid_token(resp: Response, fx: Fixture, ctx: RsContext, before: tuple[int, int, int, int],
                         what: str) -> Finding:
    """Why a valid token from the suite's issuer was refused: reason code first, else what the issuer saw."""
    reason = resp.reason_code() or ""
    got = _got(resp)
    if reason == "token_unknown_issuer":
        return Finding(f"the verifier does not trust the suite's issuer {fx.issuer} ({got})",
                       "add the suite's issuer to the verifier (the suite serves it while it runs)", fx.issuer_toml())
    if reason == "token_wrong_audience":
        return Finding(f"the verifier expects another audience than {fx.audience} ({got})",
                       "configure the verifier with the suite's audience, or pass --audience", fx.token_toml())
    if reason in ("jwks_unavailable", "introspection_unavailable"):
        return Finding(f"the verifier could not fetch keys from the suite's issuer {fx.issuer} ({got})",
                       "the issuer URL must be reachable from the verifier (--issuer is where the suite listens; "
                       "use --issuer-bind if it must listen on another address)", fx.issuer_toml())
    if reason in ("binding_required", "binding_not_allowed"):
        return Finding(f"the route refuses {what} ({got})",
                       "the suite's routes must accept every binding (bearer, DPoP, mTLS)", fx.routes_toml())
    if reason == "dpop_htu_mismatch":
        return Finding(f"the verifier rebuilt another external URL than {ctx.resource} ({got})",
                       "the suite's address must be a trusted proxy (tokenguard: server.trusted_proxies, default "
                       "loopback) and no public_url may override --resource")
    if reason in ("cert_missing", "cert_malformed", "cert_header", "cert_mismatch"):
        return Finding(f"the verifier did not take the certificate from {fx.cert_header} as {fx.cert_format} ({got})",
                       "make --cert-header / --cert-format match the verifier", fx.mtls_toml())
    # No reason code we know: judge by what the suite's issuer saw (any verifier must fetch keys).
    meta, jwks, _, _ = ctx.issuer.snapshot() if ctx.issuer else (0, 0, 0, 0)
    if ctx.issuer is not None and (meta, jwks) == before[:2] and before[:2] == (0, 0):
        return Finding(f"the verifier refused {what} ({got}) without ever asking the suite's issuer {fx.issuer} "
                       "for metadata or keys",
                       "it does not trust that issuer: add it (or its jwks_uri) to the verifier; if it did trust it in "
                       "an earlier run, it may still hold that run's keys: rerun after its JWKS refresh cool-down",
                       fx.issuer_toml())
    return Finding(f"the verifier refused {what} ({got})",
                   f"check the audience ({fx.audience}), the clock and leeway, that the route accepts this binding, "
                   "and the verifier's log" + (f" for reason {reason}" if reason else ""), fx.token_toml())


#: Refusals of a valid request that pass by themselves: the verifier's key fetch for the suite's issuer
#: (started a moment ago) is in its back-off, or its replay store is brand new and refuses proofs issued in
#: its first seconds (tokenguard: ``jwks_unavailable``, ``replay_store_reset``). Seconds to wait for each.
_TRANSIENT = {"jwks_unavailable": 40, "introspection_unavailable": 40, "replay_store_reset": 20}


def _await_transient(ctx: RsContext, send: Callable[[], Response], resp: Response) -> Response:
    """Retry (each request mints a fresh token and proof) while the refusal is one that passes by itself:
    an earlier run's keys still cached (until the JWKS refresh cool-down), a key fetch in back-off, a new
    replay store's first seconds."""
    reason = resp.reason_code() or ""
    waits = {"token_unknown_kid": ctx.knobs.jwks_cooldown + 5, **_TRANSIENT}
    if reason not in waits:
        return resp
    why = {"token_unknown_kid": "does not know this run's signing key yet (an earlier run's keys are cached)",
           "replay_store_reset": "has a brand-new replay store, which refuses proofs issued in its first seconds"}
    print(f"conformance: pre-flight: the verifier {why.get(reason, 'cannot fetch keys yet (' + reason + ')')}; "
          f"waiting up to {waits[reason]} s", file=sys.stderr)
    deadline = time.monotonic() + waits[reason]
    while resp.status != 200 and resp.reason_code() == reason and time.monotonic() < deadline:
        time.sleep(1)
        try:
            resp = send()
        except OSError:
            break
    return resp


def run(ctx: RsContext, fx: Fixture) -> list[Finding]:
    """Run the pre-flight; returns every finding (fatal ones stop the run). Raises OSError never."""
    findings: list[Finding] = []

    def ask(send: Callable[[], Response]) -> Response | None:
        try:
            return send()
        except OSError as exc:
            findings.append(Finding(f"cannot reach the verifier at {ctx.transport.target or ctx.resource}: "
                                    f"{type(exc).__name__}: {exc}",
                                    "start it (tokenguard: `tokenguard serve --config FILE`, see "
                                    "`tokenguard conformance init`) or fix --verifier / --connect"))
            return None

    # 1. Routes: each answers a request without credentials with a 401 challenge.
    probes = [("GET", ctx.url("read", query=None), "resource")]
    probes.append(("POST", ctx.url("write", query=None), "write-resource"))
    if ctx.nonce_resource:
        probes.append(("GET", ctx.url("nonce", query=None), "nonce-resource"))
    read: Response | None = None
    for method, url, route in probes:
        resp = ask(lambda method=method, url=url: ctx.send(method=method, url=url))
        if resp is None:
            return findings
        problem = _route_problem(resp, method, url, route, fx, ctx.mode)
        if problem:
            findings.append(problem)
        elif route == "resource":
            read = resp
    if findings:  # without the routes nothing else can be judged
        return findings
    # 2. Algorithms: the DPoP challenge lists what --algs says (reported with whatever follows).
    if read is not None:
        problem = _algs_problem(read, fx)
        if problem:
            findings.append(problem)
    # 3. Trust: a valid token from the suite's issuer is accepted, as bearer, DPoP and mTLS.
    before = ctx.issuer.snapshot() if ctx.issuer else (0, 0, 0, 0)
    for what, send in (("a valid bearer token from the suite's issuer", lambda: ctx.b_bearer()),
                       ("a valid DPoP-bound token with its proof", lambda: ctx.b_dpop()),
                       ("a valid certificate-bound token with its certificate", lambda: ctx.b_mtls())):
        resp = ask(send)
        if resp is not None and resp.status != 200:
            resp = _await_transient(ctx, send, resp)
        if resp is None:
            return findings
        if resp.status != 200:
            findings.append(_refused_valid_token(resp, fx, ctx, before, what))
            return findings
    # 4. Scopes and nonces on the other routes.
    write_url = ctx.url("write", query=None)
    resp = ask(lambda: ctx.send(method="POST", url=write_url, authorization=f"Bearer {ctx.at(scope='write')}"))
    if resp is not None and resp.status != 200:
        findings.append(Finding(f"POST {write_url} refused a valid token with scope write ({_got(resp)})",
                                "the write route must be POST, need scope write and accept any binding",
                                fx.route_toml("write")))
    if ctx.nonce_resource:
        nonce_url = ctx.url("nonce", query=None)
        resp = ask(lambda: ctx.b_dpop(url=nonce_url))
        if resp is not None and not (resp.status == 401 and resp.all("DPoP-Nonce")):
            findings.append(Finding(f"{nonce_url} does not ask for a DPoP nonce ({_got(resp)})",
                                    "that route must require server nonces, or leave out --nonce-resource "
                                    "(the NONCE-RS cases then skip)", fx.route_toml("nonce")))
    # 5. Introspection (a warning: only the opaque-token cases depend on it).
    if ctx.issuer is not None:
        _, _, seen, failures = ctx.issuer.snapshot()
        token = ctx.opaque(ctx.active())
        resp = ask(lambda: ctx.b_bearer(token))
        _, _, seen_after, failures_after = ctx.issuer.snapshot()
        if resp is not None and resp.status != 200:
            if seen_after == seen:
                why = "it never called the suite's introspection endpoint"
            elif failures_after > failures:
                why = "it failed to authenticate at the suite's introspection endpoint (wrong client id/secret)"
            else:
                why = f"it refused an active introspected token ({_got(resp)})"
            findings.append(Finding(f"opaque tokens: {why}; the introspection cases (BIND-RS-10, MTLS-RS-09, "
                                    "JWT-RS-13) will fail",
                                    "give the verifier the suite's introspection credentials "
                                    "(--introspection-client-id / --introspection-client-secret)",
                                    fx.issuer_toml(), fatal=False))
    return findings


def check_as_metadata(ctx: AsContext) -> list[Finding]:
    """The authorization server's metadata must be reachable JSON, or no §2 case can run."""
    try:
        ctx.metadata  # noqa: B018 - fetched and cached for the cases
    except OSError as exc:
        return [Finding(f"cannot fetch the AS metadata {ctx.metadata_url}: {type(exc).__name__}: {exc}",
                        "start the authorization server or fix --as-metadata")]
    except SkipCase as exc:
        return [Finding(f"{exc} at {ctx.metadata_url}",
                        "--as-metadata must be the RFC 8414 (or OpenID Connect discovery) URL of the AS")]
    return []


def render(findings: list[Finding]) -> str:
    """The message the run stops with (stderr): each problem, its fix, and the config that fixes it."""
    fatal = [f for f in findings if f.fatal]
    lines = ["conformance: pre-flight: the verifier under test is not set up the way the cases assume."
             if fatal else "conformance: pre-flight warnings:"]
    for f in findings:
        lines.append("")
        lines.append(f"  {'problem' if f.fatal else 'warning'}: {f.what}")
        lines.append(f"  fix: {f.fix}")
        if f.toml:
            lines.append("  tokenguard config:")
            lines += [f"      {line}" if line else "" for line in f.toml.rstrip().splitlines()]
    if fatal:
        lines.append("")
        lines.append("No case ran. `tokenguard conformance init` prints a complete tokenguard config for the suite; "
                     "--no-preflight runs the cases anyway.")
    return "\n".join(lines)
