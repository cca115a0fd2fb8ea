"""``/envoy/<path>``: Envoy ``ext_authz`` as an HTTP service (``path_prefix: /envoy``).

Envoy sends the original method and ``Host``, and the original path under the prefix.
"""

from __future__ import annotations

from tokenguard.core.request import AuthRequest
from tokenguard.web.adapters import Incoming, register_adapter
from tokenguard.web.adapters.forwarded import ForwardedRequestReader

PREFIX = "/envoy"


class EnvoyAdapter:
    def __init__(self, reader: ForwardedRequestReader) -> None:
        self.reader = reader

    def read(self, incoming: Incoming) -> AuthRequest:
        admitted = self.reader.admit(incoming)
        uri = incoming.target
        if uri.startswith(PREFIX):
            uri = uri[len(PREFIX):] or "/"
        if not uri.startswith("/"):
            uri = "/" + uri
        return AuthRequest(incoming.method, self.reader.target(incoming, admitted.trusted, uri), admitted.authorization,
                           admitted.proofs, self.reader.client_cert(incoming, admitted.trusted))


@register_adapter(PREFIX, prefix=True)
def _build(reader: ForwardedRequestReader) -> EnvoyAdapter:
    return EnvoyAdapter(reader)
