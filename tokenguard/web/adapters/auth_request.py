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
        trusted = self.reader.trust.trusts(incoming.peer)
        method, uri = incoming.method, incoming.target
        if trusted:
            method = incoming.first(self.reader.method_header) or incoming.first("X-Forwarded-Method") or method
            forwarded = incoming.headers.values(self.reader.uri_header) or incoming.headers.values("X-Forwarded-Uri")
            if forwarded:
                uri = forwarded[0]
        authorization, proofs = self.reader.credentials(incoming)
        return AuthRequest(method, self.reader.target(incoming, trusted, uri), authorization, proofs,
                           self.reader.client_cert(incoming, trusted))


@register_adapter("/auth")
def _build(reader: ForwardedRequestReader) -> AuthRequestAdapter:
    return AuthRequestAdapter(reader)
