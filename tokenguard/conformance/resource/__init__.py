"""Spec §1: the resource-server (verifier) cases, one module per spec section.

Importing the package registers every case in :data:`RS` in spec order (the modules below are
imported for that side effect); :meth:`Registry.ordered` sorts them into spec order.
"""

from __future__ import annotations

from . import binding, dpop_proof, dpop_request, hdr, jwt, mtls, nonce, scope  # noqa: F401 - they register
from .common import RS
from .context import Knobs, RsContext

__all__ = ["RS", "Knobs", "RsContext"]
