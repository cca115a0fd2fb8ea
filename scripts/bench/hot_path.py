"""Where a verified DPoP request's time goes inside one worker, stage by stage (CPU µs, medians).

Builds the service exactly as a worker does (``settings.wiring.build_service`` from a config with a
DPoP route, the embedded replay store, the decision log on and written to a file) and feeds it what
nginx sends for ``/auth``: an ASGI scope with a fresh proof each time. Stages, each timed separately on
the same requests: the ASGI scope -> Incoming, the adapter, ``Verifier.decide``, the responder, the
metrics and the decision log, and the whole ASGI call (answer encoding and the two ``send`` calls to a
no-op). Compare with a live worker's CPU per request in ``make bench-e2e`` (the rest is the engine's I/O).

Usage: python scripts/bench/hot_path.py [-n 3000] [--store embedded|memory|redis://...]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_oidc_provider as peer  # noqa: E402  (the fast proof generator)

from tokenguard.core.decision import Decision  # noqa: E402
from tokenguard.settings import parse_config  # noqa: E402
from tokenguard.settings.wiring import build_service  # noqa: E402
from tokenguard.web.asgi import AsgiApp, incoming_from_scope  # noqa: E402
from tokenguard.web.logs import configure_logging  # noqa: E402

ISSUER, AUDIENCE, HOST = "https://as.bench", "https://api.bench", "api.bench"


def scope_for(token: str, proof: str) -> dict[str, Any]:
    """What nginx's auth_request sends to /auth (deploy/nginx/tokenguard.conf), as uvicorn hands it over."""
    headers = [(b"x-original-method", b"GET"), (b"x-original-uri", b"/resource?x=1"),
               (b"x-forwarded-proto", b"https"), (b"x-forwarded-host", HOST.encode()),
               (b"x-forwarded-port", b"443"), (b"host", b"verifier"), (b"connection", b""),
               (b"user-agent", b"wrk"), (b"authorization", b"DPoP " + token.encode()), (b"dpop", proof.encode())]
    return {"type": "http", "method": "GET", "path": "/auth", "raw_path": b"/auth", "query_string": b"",
            "scheme": "http", "client": ("127.0.0.1", 40000), "headers": headers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--store", default="embedded")
    parser.add_argument("--no-log", action="store_true", help="server.log_decisions = false")
    parser.add_argument("--profile", metavar="FILE", help="also write a cProfile of n whole ASGI calls to FILE")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tg-hot-path-"))
    from joserfc import jwk, jwt

    as_key = jwk.generate_key("RSA", 2048, parameters={"kid": "k1"}, private=True)
    public = {"keys": [as_key.as_dict(private=False)]}
    config = parse_config({"server": {"state_dir": str(tmp), "log_decisions": not args.no_log},
                           "token": {"audience": AUDIENCE},
                           "issuer": [{"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}],
                           "replay": {"store": args.store},
                           "route": [{"path": "/resource", "binding": "dpop", "scopes": ["read"]}]}, env={})
    service = build_service(config, fetch=lambda _url: public)
    configure_logging("info")
    logging.getLogger("tokenguard").handlers[0].stream = open(tmp / "decisions.log", "w")  # noqa: SIM115
    # A brand-new replay store refuses proofs issued in its first iat_future seconds (replay_store_reset):
    # wait it out, as a deployed worker's store is past it, so that every timed call is an allow.
    while not service.verifier.readiness()[0]:
        time.sleep(0.25)
    key = peer.DPoPKey()
    now = int(time.time())
    token = jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "k1"},
                       {"iss": ISSUER, "aud": AUDIENCE, "sub": "u1", "client_id": "c1", "iat": now, "exp": now + 3600,
                        "jti": "j", "scope": "read", "cnf": {"jkt": key.jkt}}, as_key)
    peer.write_proofs(key, tmp / "proofs.txt", args.n * 10 + 200, f"https://{HOST}/resource", token)
    proofs = (tmp / "proofs.txt").read_text().split()
    app = AsgiApp(service)

    def call(scope: dict[str, Any]) -> None:
        """One ASGI call, stepped as the event loop steps a task: nothing in it waits, so one step ends it."""
        coroutine = app(scope, receive, nothing)
        try:
            coroutine.send(None)
        except StopIteration:
            return
        raise AssertionError("the ASGI call suspended")

    async def nothing(_message: dict[str, Any]) -> None:
        return None

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    scopes = [scope_for(token, p) for p in proofs]
    for scope in scopes[:100]:  # warm-up: JWKS, token cache, store connection
        call(scope)
    probe = service.handle(incoming_from_scope(scopes[100]))
    if probe.status != 200:  # measuring denials would say nothing about the verified path
        raise SystemExit(f"the bench request is refused: {probe.status} {probe.decision.reason}")
    scopes = scopes[:100] + scopes[101:]
    todo = iter(scopes[100:])

    def timed(stage: Callable[[dict[str, Any]], Any]) -> float:
        samples = []
        for _ in range(args.n):
            scope = next(todo)
            t = time.thread_time_ns()
            stage(scope)
            samples.append(time.thread_time_ns() - t)
        return statistics.median(samples) / 1000

    adapter = service.adapters.for_path("/auth")
    assert adapter is not None
    fixed = incoming_from_scope(scopes[0])
    request = adapter.read(fixed)
    stages: dict[str, float] = {}
    stages["asgi call (everything)"] = timed(call)
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(lambda: [call(next(todo)) for _ in range(args.n)])
        profiler.dump_stats(args.profile)
    stages["  scope -> Incoming"] = timed(incoming_from_scope)
    stages["  adapter.read"] = timed(lambda s: adapter.read(incoming_from_scope(s))) - stages["  scope -> Incoming"]

    def decide(scope: dict[str, Any]) -> Decision:
        return service.verifier.decide(adapter.read(incoming_from_scope(scope)))

    full_decide = timed(decide)
    stages["  Verifier.decide"] = full_decide - stages["  adapter.read"] - stages["  scope -> Incoming"]
    decision = service.verifier.decide(request)
    stages["  Responder.render"] = timed(lambda _s: service.responder.render(decision))
    answer = service.responder.render(decision)
    stages["  metrics + decision log"] = timed(lambda _s: service._record(answer, 0.0003, "bench-request-id"))  # noqa: SLF001
    from baseline_apps import verify_once

    stages["(one raw ES256 verify)"] = timed(lambda s: verify_once(s["headers"][-1][1].decode()))
    print(json.dumps({"store": args.store, "log_decisions": not args.no_log, "n": args.n}))
    for name, value in stages.items():
        print(f"{name:32} {value:8.1f} µs")
    rest = stages["asgi call (everything)"] - sum(v for k, v in stages.items() if k.startswith("  "))
    print(f"{'  the rest (encode, send, loop)':32} {rest:8.1f} µs")
    logging.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
