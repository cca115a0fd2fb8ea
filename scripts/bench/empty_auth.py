"""Baseline (1b) of ``make bench-e2e``: an empty ``/auth`` served exactly as ``tokenguard serve`` serves it.

Same gunicorn settings (``tokenguard.serving.gunicorn_settings``), same Flask app with the same WSGI
dispatch in front; only the auth endpoint answers 200 without verifying anything.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from gunicorn.app.base import BaseApplication

from tokenguard.serving.gunicorn import gunicorn_settings
from tokenguard.settings import parse_config
from tokenguard.settings.wiring import build_service
from tokenguard.web.app import create_app


def empty_auth(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Length", "0"), ("Content-Type", "text/plain")])
    return [b""]


class EmptyAuthApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, listen: str, workers: int, threads: int) -> None:
        self.settings = gunicorn_settings(listen, workers, threads)
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.settings.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        state = tempfile.mkdtemp(prefix="tg-empty-")
        app = create_app(build_service(parse_config({"server": {"state_dir": state}, "replay": {"store": "memory"}},
                                                    env={})))
        flask_app = app.wsgi_app.flask_app  # type: ignore[attr-defined]

        def dispatch(environ: dict[str, Any], start_response: Any) -> Any:  # tokenguard's dispatch, nothing decided
            if environ.get("PATH_INFO") == "/auth":
                return empty_auth(environ, start_response)
            return flask_app(environ, start_response)

        app.wsgi_app = dispatch  # type: ignore[method-assign]
        return app


def main() -> None:
    from tokenguard.settings import load_config

    server = load_config(None).server  # defaults and TOKENGUARD_SERVER_* overrides, as `serve` reads them
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8080")
    parser.add_argument("--workers", type=int, default=server.workers)
    parser.add_argument("--threads", type=int, default=server.threads)
    args = parser.parse_args()
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    EmptyAuthApplication(args.listen, args.workers, args.threads).run()


if __name__ == "__main__":
    main()
