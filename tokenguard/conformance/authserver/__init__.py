"""Spec §2: the authorization-server cases, one module per spec section.

Importing the package registers every case in :data:`AS`; :meth:`Registry.ordered` sorts them
into spec order. Run with ``--as-metadata`` and the clients the AS has registered (``--as-client``).
"""

from __future__ import annotations

from . import (  # noqa: F401 - they register their cases
    code_binding,
    introspection,
    metadata,
    mtls,
    nonce,
    refresh,
    token,
    token_format,
)
from .common import AS
from .context import AsClient, AsContext, parse_as_client

__all__ = ["AS", "AsClient", "AsContext", "parse_as_client"]
