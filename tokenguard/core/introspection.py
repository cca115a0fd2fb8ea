"""Opaque access tokens through RFC 7662 introspection, client-authenticated, with a bounded cache.

A result is cached no longer than the token's ``exp`` and the configured TTL (an inactive answer
for the TTL: a dead token never comes back). Any failure to get an answer fails closed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

PostForm = Callable[[str, Mapping[str, str], tuple[str, str]], Mapping[str, Any]]
DEFAULT_CACHE_TTL = 60  # seconds an answer is reused (never past the token's exp)


class Introspector:
    def __init__(self, endpoint: str, client_id: str, client_secret: str, *, post: PostForm,
                 cache_ttl: float = DEFAULT_CACHE_TTL, cache_size: int = 10000,
                 clock: Callable[[], float] = time.time) -> None:
        self.endpoint = endpoint
        self._auth = (client_id, client_secret)
        self._post = post
        self.cache_ttl = cache_ttl
        self._cache: OrderedDict[bytes, tuple[float, Mapping[str, Any]]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock
        self._lock = threading.Lock()

    def introspect(self, token: str) -> Mapping[str, Any]:
        """The introspection response; ``{"active": False}`` for any token the AS does not vouch for."""
        digest = hashlib.sha256(token.encode()).digest()
        now = self._clock()
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None and hit[0] > now:
                return hit[1]
        body = self._post(self.endpoint, {"token": token, "token_type_hint": "access_token"}, self._auth)
        result: Mapping[str, Any] = body if body.get("active") is True else {"active": False}
        until = now + self.cache_ttl
        exp = result.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            until = min(until, float(exp))
        with self._lock:
            self._cache[digest] = (until, result)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return result
