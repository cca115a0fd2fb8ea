"""``/auth``: nginx ``auth_request`` (``X-Original-*``), Caddy ``forward_auth`` and Traefik ForwardAuth
(``X-Forwarded-Method`` / ``X-Forwarded-Uri``)."""

from __future__ import annotations

from tokenguard.core.request import AuthRequest
from tokenguard.web.adapters import Incoming, register_adapter
from tokenguard.web.adapters.forwarded import ForwardedRequestReader


class AuthRequestAdapter:
    def __init__(self, reader: ForwardedRequestReader) -> None:
        self.reader = reader

    def read(self, incoming: Incoming) -> AuthRequest:
        reader = self.reader
        admitted = reader.admit(incoming)
        trusted = admitted.trusted
        method, uri = incoming.method, incoming.target
        if trusted:
            method = reader.original(incoming, reader.method_header, "X-Forwarded-Method",
                                     "bad_forwarded_method") or method
            uri = reader.original(incoming, reader.uri_header, "X-Forwarded-Uri", "bad_request_uri") or uri
        return AuthRequest(method, reader.target(incoming, trusted, uri), admitted.authorization, admitted.proofs,
                           reader.client_cert(incoming, trusted))


@register_adapter("/auth")
def _build(reader: ForwardedRequestReader) -> AuthRequestAdapter:
    return AuthRequestAdapter(reader)
