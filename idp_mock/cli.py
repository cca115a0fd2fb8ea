"""``idp-mock serve`` and ``idp-mock rotate-keys``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from tokenguard import __version__

from .config import DEFAULT_HOST, DEFAULT_ISSUER, DEFAULT_PORT, ConfigError, IdpConfig, load_config


def _config(args: argparse.Namespace) -> IdpConfig:
    config = load_config(args.config, issuer=args.issuer, host=getattr(args, "host", None),
                         port=getattr(args, "port", None), state_dir=args.state_dir,
                         workers=getattr(args, "workers", None))
    if config.issuer == DEFAULT_ISSUER and (config.host, config.port) != (DEFAULT_HOST, DEFAULT_PORT):
        host = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
        config = replace(config, issuer=f"http://{host}:{config.port}")  # follow --port unless told otherwise
    return config


def _serve(args: argparse.Namespace) -> int:
    from .app import create_app

    config = _config(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.dev:
        app = create_app(config)
        print(f"idp-mock (dev server) issuer {config.issuer} on http://{config.host}:{config.port}", flush=True)
        app.run(host=config.host, port=config.port, threaded=True, use_reloader=False)
        return 0
    from gunicorn.app.base import BaseApplication

    class Gunicorn(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{config.host}:{config.port}")
            self.cfg.set("workers", config.workers)
            self.cfg.set("accesslog", "-")
            # the access log line must never carry a query-string code or token
            self.cfg.set("access_log_format", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(L)ss')
            self.cfg.set("secure_scheme_headers", {})  # the IdP reads X-Forwarded-* itself (trusted_proxies)

        def load(self) -> Any:
            return create_app(config)

    create_app(config)  # fail fast (bad config, unreadable state dir) before forking workers
    print(f"idp-mock issuer {config.issuer} on http://{config.host}:{config.port} "
          f"({config.workers} worker(s), state {config.state_path})", flush=True)
    Gunicorn().run()
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from .keys import KeyManager

    config = _config(args)
    keys = KeyManager(config.state_path, alg=config.signing_alg, rotation_grace=config.rotation_grace,
                      retain=config.access_token_lifetime + 300)
    print(json.dumps(keys.rotate(), indent=1))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idp-mock", description="A strict mock OAuth 2.0 authorization server")
    parser.add_argument("--version", action="version", version=f"idp-mock {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (("serve", "run the authorization server"),
                           ("rotate-keys", "stage a new signing key, or activate the staged one")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--config", help="TOML file (idp.toml)")
        cmd.add_argument("--issuer", help="issuer identifier, e.g. http://127.0.0.1:9000")
        cmd.add_argument("--state-dir", help="where keys and grants persist (default ~/.local/state/idp-mock)")
        if name == "serve":
            cmd.add_argument("--host", help="bind address (default 127.0.0.1)")
            cmd.add_argument("--port", type=int, help="port (default 9000)")
            cmd.add_argument("--workers", type=int, help="gunicorn workers (default 1)")
            cmd.add_argument("--dev", action="store_true", help="use the Flask development server")
    args = parser.parse_args(argv)
    try:
        return _serve(args) if args.command == "serve" else _rotate(args)
    except ConfigError as exc:
        print(f"idp-mock: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
