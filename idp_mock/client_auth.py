"""Client authentication methods authlib lacks, registered into its ``ClientAuthentication``:

* ``tls_client_auth`` (RFC 8705 §2.1): a certificate that chains to a configured trust anchor and whose
  subject DN (compared RDN-order-insensitively) or one SAN equals the registered value;
* ``self_signed_tls_client_auth`` (RFC 8705 §2.2): the certificate is one of the registered ``x5c``;
* ``private_key_jwt`` (RFC 7523 §2.2, OIDC Core §9): authlib's ``JWTBearerClientAssertion``.

The certificate comes from the trusted proxy (:mod:`idp_mock.proxy`) as DER on the request.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import ipaddress
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from authlib.oauth2.rfc6749.errors import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID
from joserfc.jwk import KeySet

from tokenguard.core.bindings.mtls import x5t_s256
from tokenguard.core.errors import ReplayStoreUnavailable
from tokenguard.core.replay import ReplayStore

from .clients import SAN_FIELDS, Client

QueryClient = Callable[[str], Client | None]


# -- RFC 8705 §2.1: PKI method -------------------------------------------------------------------
def _rdns(name: x509.Name) -> Counter[frozenset[tuple[str, str]]]:
    """RDNs as a multiset of attribute sets; values case-folded, whitespace collapsed (RFC 4517 §4.2.15)."""
    return Counter(frozenset((attr.oid.dotted_string, " ".join(str(attr.value).split()).casefold())
                             for attr in rdn) for rdn in name.rdns)


#: RFC 4514 §3 short names, any case (attribute types are case-insensitive), plus emailAddress.
_ATTR_NAMES = {name: oid for oid, short in {
    NameOID.COMMON_NAME: "CN", NameOID.LOCALITY_NAME: "L", NameOID.STATE_OR_PROVINCE_NAME: "ST",
    NameOID.ORGANIZATION_NAME: "O", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COUNTRY_NAME: "C",
    NameOID.STREET_ADDRESS: "STREET", NameOID.DOMAIN_COMPONENT: "DC", NameOID.USER_ID: "UID",
    NameOID.EMAIL_ADDRESS: "EMAILADDRESS", NameOID.SERIAL_NUMBER: "SERIALNUMBER"}.items()
    for name in (short, short.lower(), short.capitalize())} | {"emailAddress": NameOID.EMAIL_ADDRESS}


def dn_matches(registered: str, subject: x509.Name) -> bool:
    """Registered RFC 4514 string DN vs certificate subject, independent of RDN order and case."""
    try:
        compact = re.sub(r"(?<!\\)([,+])\s+", r"\1", registered.strip())  # "CN=a, O=b" is common
        wanted = x509.Name.from_rfc4514_string(compact, _ATTR_NAMES)
    except ValueError:
        return False
    return _rdns(wanted) == _rdns(subject)


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def san_matches(field: str, registered: str, cert: x509.Certificate) -> bool:
    sans = _sans(cert)
    if sans is None:
        return False
    if field == "tls_client_auth_san_dns":
        return registered.lower().rstrip(".") in {v.lower().rstrip(".") for v in sans.get_values_for_type(x509.DNSName)}
    if field == "tls_client_auth_san_uri":
        return registered in sans.get_values_for_type(x509.UniformResourceIdentifier)
    if field == "tls_client_auth_san_ip":
        try:
            return ipaddress.ip_address(registered) in sans.get_values_for_type(x509.IPAddress)
        except ValueError:
            return False
    if field == "tls_client_auth_san_email":
        local, _, domain = registered.rpartition("@")
        return any(v.rpartition("@")[0] == local and v.rpartition("@")[2].lower() == domain.lower()
                   for v in sans.get_values_for_type(x509.RFC822Name))
    return False


def subject_matches(client: Client, cert: x509.Certificate) -> bool:
    """RFC 8705 §2.1.2: the one registered subject value names this certificate."""
    if client.meta.tls_client_auth_subject_dn:
        return dn_matches(client.meta.tls_client_auth_subject_dn, cert.subject)
    return any(san_matches(f, getattr(client.meta, f), cert) for f in SAN_FIELDS if getattr(client.meta, f))


class TrustAnchors:
    """Certificates trusted to issue client certificates for ``tls_client_auth``.

    A leaf must be issued directly by one of them (put intermediates in the bundle), be within its
    validity period, and so must the issuer. This is not full RFC 5280 path validation: no revocation,
    no name constraints; it is the check a mock needs to refuse certificates from elsewhere.
    """

    def __init__(self, certs: Sequence[x509.Certificate], clock: Callable[[], float] = time.time) -> None:
        self.certs = [c for c in certs if _is_ca(c)]
        self.clock = clock

    @classmethod
    def from_pem(cls, pem: bytes, clock: Callable[[], float] = time.time) -> TrustAnchors:
        return cls(x509.load_pem_x509_certificates(pem) if pem.strip() else [], clock)

    def _valid_now(self, cert: x509.Certificate) -> bool:
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc

    def verify(self, leaf: x509.Certificate) -> bool:
        if not self._valid_now(leaf):
            return False
        for anchor in self.certs:
            if anchor.subject != leaf.issuer or not self._valid_now(anchor):
                continue
            try:
                leaf.verify_directly_issued_by(anchor)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _form_client(query_client: QueryClient, request: Any, method: str) -> tuple[Client, bytes] | None:
    client_id = request.form.get("client_id")
    der = getattr(request, "client_cert", None)
    if not client_id or der is None:
        return None
    client = query_client(client_id)
    if client is None or method not in client.auth_methods:
        return None
    return client, der


def tls_client_auth(anchors: TrustAnchors) -> Callable[[QueryClient, Any], Client | None]:
    def authenticate(query_client: QueryClient, request: Any) -> Client | None:
        found = _form_client(query_client, request, "tls_client_auth")
        if found is None:
            return None
        client, der = found
        cert = x509.load_der_x509_certificate(der)
        if anchors.verify(cert) and subject_matches(client, cert):
            return client
        return None

    return authenticate


# -- RFC 8705 §2.2: self-signed method -----------------------------------------------------------
def registered_x5t(client: Client) -> list[str]:
    """``x5t#S256`` of every ``x5c[0]`` in the client's JWK Set."""
    out = []
    for jwk in client.jwks().get("keys", []):
        chain = jwk.get("x5c") if isinstance(jwk, dict) else None
        if isinstance(chain, list) and chain and isinstance(chain[0], str):
            try:
                out.append(x5t_s256(base64.b64decode(chain[0], validate=True)))
            except (binascii.Error, ValueError):
                continue
    return out


def self_signed_tls_client_auth(query_client: QueryClient, request: Any) -> Client | None:
    found = _form_client(query_client, request, "self_signed_tls_client_auth")
    if found is None:
        return None
    client, der = found
    presented = x5t_s256(der)
    if any(hmac.compare_digest(presented, registered) for registered in registered_x5t(client)):
        return client
    return None


# -- RFC 7523 §2.2: private_key_jwt ----------------------------------------------------------------
class PrivateKeyJwt(JWTBearerClientAssertion):
    """authlib's client assertion with ``jti`` replay via tokenguard's store and safe error texts."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: Callable[[], list[str]], replay: ReplayStore, leeway: int = 60,
                 max_lifetime: int = 600, clock: Callable[[], float] = time.time) -> None:
        super().__init__(validate_jti=True, leeway=leeway)
        self._audiences = audiences
        self._replay = replay
        self._max_lifetime = max_lifetime
        self._clock = clock

    def __call__(self, query_client: QueryClient, request: Any) -> Client | None:
        data = request.form
        if data.get("client_assertion_type") != self.CLIENT_ASSERTION_TYPE or not data.get("client_assertion"):
            return None
        try:
            client = super().__call__(query_client, request)
        except InvalidClientError:
            raise
        except (ValueError, TypeError, KeyError) as exc:  # authlib refuses unsafe error texts with ValueError
            raise InvalidClientError(description="Invalid client assertion") from exc
        form_id = data.get("client_id")
        if client is not None and form_id is not None and form_id != client.client_id:
            raise InvalidClientError(description="client_id does not match the client assertion")
        return client

    def get_audiences(self) -> list[str]:
        return self._audiences()

    def verify_claims(self, claims: Any) -> None:
        super().verify_claims(claims)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp > self._clock() + self._max_lifetime:
            raise InvalidClientError(description="Client assertion lifetime is too long")

    def validate_jti(self, claims: Any, jti: Any) -> bool:
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            return False
        key = "pkjwt:" + hashlib.sha256(f"{claims['sub']}\x00{jti}".encode()).hexdigest()
        ttl = max(float(claims.get("exp", 0)) - self._clock(), 0.0) + self.leeway + 1
        try:
            return self._replay.first_use(key, ttl)
        except ReplayStoreUnavailable:
            return False

    def resolve_client_public_key(self, client: Client) -> KeySet:
        return KeySet.import_key_set(client.jwks())  # type: ignore[arg-type]
