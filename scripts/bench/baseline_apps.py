"""The two reference rows of ``make bench-e2e``, served by an engine exactly as ``tokenguard serve`` runs it.

* ``empty``: tokenguard's own front (the ASGI app on uvicorn, the WSGI dispatch in front of Flask on
  gunicorn) with the same server options, whose ``/auth`` answers 200 without deciding anything (1b).
* ``ceiling``: a bare callable on the same engine and options that does one ES256 verify of the request's
  DPoP proof with a cached public key and answers 200 (401 if the signature is bad): the least any DPoP
  verifier on this engine must do per request.

Usage: python scripts/bench/baseline_apps.py {empty|ceiling} --engine uvicorn|gunicorn --listen HOST:PORT
"""

from __future__ import annotations

import argparse
import atexit
import base64
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

_ES256 = ec.ECDSA(hashes.SHA256())
_KEYS: dict[str, ec.EllipticCurvePublicKey] = {}


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def verify_once(proof: str) -> bool:
    """One ES256 signature check of a compact JWS; the key is imported once per distinct header."""
    signing_input, _, signature = proof.rpartition(".")
    header = signing_input.partition(".")[0]
    key = _KEYS.get(header)
    if key is None:
        jwk = json.loads(_b64(header))["jwk"]
        numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(_b64(jwk["x"]), "big"),
                                                int.from_bytes(_b64(jwk["y"]), "big"), ec.SECP256R1())
        key = _KEYS[header] = numbers.public_key()
    raw = _b64(signature)
    try:
        key.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                   signing_input.encode(), _ES256)
    except Exception:
        return False
    return True


# ------------------------------------------------------------------------------------------- ASGI (uvicorn)

async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def ceiling_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return await _lifespan(receive, send)
    proof = next((v for k, v in scope["headers"] if k == b"dpop"), b"")
    status = 200 if proof and verify_once(proof.decode("latin-1")) else 401
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def _service() -> Any:
    from tokenguard.settings import parse_config
    from tokenguard.settings.wiring import build_service

    state = tempfile.mkdtemp(prefix="tg-baseline-")
    atexit.register(shutil.rmtree, state, ignore_errors=True)
    return build_service(parse_config({"server": {"state_dir": state}, "replay": {"store": "memory"}}, env={}))


def empty_asgi() -> Any:
    """tokenguard's ASGI app, whose auth endpoint answers 200 with the same framing and decides nothing."""
    from tokenguard.web.asgi import _AUTH_TRAILER, _EMPTY_BODY, AsgiApp

    class EmptyAuth(AsgiApp):
        async def _auth(self, scope: dict[str, Any], send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": _AUTH_TRAILER})
            await send(_EMPTY_BODY)

    return EmptyAuth(_service())


def ceiling_factory() -> Any:
    return ceiling_asgi


# ------------------------------------------------------------------------------------------ WSGI (gunicorn)

def ceiling_wsgi(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    ok = verify_once(environ.get("HTTP_DPOP", ""))
    start_response("200 OK" if ok else "401 Unauthorized", [("Content-Length", "0")])
    return [b""]


def empty_wsgi() -> Any:
    from tokenguard.web.app import create_app

    app = create_app(_service())
    flask_app = app.wsgi_app.flask_app  # type: ignore[attr-defined]

    def dispatch(environ: dict[str, Any], start_response: Any) -> Any:  # tokenguard's dispatch, nothing decided
        if environ.get("PATH_INFO") == "/auth":
            start_response("200 OK", [("Content-Length", "0"), ("Content-Type", "text/plain")])
            return [b""]
        return flask_app(environ, start_response)

    app.wsgi_app = dispatch  # type: ignore[method-assign]
    return app


def serve_gunicorn(app: Any, listen: str, workers: int) -> None:
    from gunicorn.app.base import BaseApplication

    from tokenguard.serving.gunicorn import gunicorn_settings

    class Baseline(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in gunicorn_settings(listen, workers, 1).items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app()

    Baseline().run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", choices=("empty", "ceiling"))
    parser.add_argument("--engine", choices=("uvicorn", "gunicorn"), default="uvicorn")
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    os.environ.pop("TOKENGUARD_METRICS_DIR", None)
    if args.engine == "gunicorn":
        serve_gunicorn(empty_wsgi if args.app == "empty" else (lambda: ceiling_wsgi), args.listen, args.workers)
        return
    import uvicorn

    from tokenguard.serving.uvicorn import uvicorn_options

    factory = "baseline_apps:empty_asgi" if args.app == "empty" else "baseline_apps:ceiling_factory"
    uvicorn.run(factory, factory=True, **uvicorn_options(args.listen, args.workers))


if __name__ == "__main__":
    main()
