"""DPoP proofs (RFC 9449): the checks of §4.3, in the RFC's order, plus creation for clients.

One implementation serves the resource server (``tokenguard``), the mock authorization server
(``idp_mock``) and the CLI. Each failure raises :class:`~tokenguard.core.errors.InvalidDpopProof` with a
stable reason code, or :class:`~tokenguard.core.errors.UseDpopNonce` carrying a fresh nonce.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import Any

from tokenguard.core.b64 import b64url_encode, sha256_b64url
from tokenguard.core.cache import BoundedCache
from tokenguard.core.errors import InvalidDpopProof, UseDpopNonce
from tokenguard.core.jwk import (
    ASYMMETRIC_ALGS,
    PRIVATE_MEMBERS,
    JWKError,
    PublicKey,
    PublicKeyCache,
    default_alg,
    key_fits_alg,
    thumbprint,
)
from tokenguard.core.jws import JWSError, parse_compact, verify_signature
from tokenguard.core.nonce import NonceIssuer
from tokenguard.core.replay import ReplayStore
from tokenguard.core.trace import ABSENT, Trace
from tokenguard.core.uri import URIError, normalize_target

log = logging.getLogger("tokenguard.replay")

#: RFC 9864 §2.2: the fully-specified ``Ed25519`` / ``Ed448`` beside the polymorphic ``EdDSA`` they replace
#: (panva's ``dpop`` signs Ed25519 proofs with ``alg: "Ed25519"``).
DEFAULT_ALGS = ("ES256", "ES384", "PS256", "RS256", "EdDSA", "Ed25519", "Ed448")
S43 = "RFC 9449 §4.3"
DEFAULT_IAT_PAST = 60  # seconds a proof may be old
DEFAULT_IAT_FUTURE = 15  # seconds of clock skew the other way
DEFAULT_MAX_PROOF_BYTES = 8192
DEFAULT_MAX_JTI_LENGTH = 256
#: Bytes the checked-header cache may hold (a typical EC proof header is ~200 characters).
HEADER_CACHE_BYTES = 4 << 20
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_\-.]+")


@dataclass(slots=True)
class DpopProof:
    """A verified proof: the key's RFC 7638 thumbprint and the claims that were checked."""

    jkt: str
    jti: str
    iat: float
    htm: str
    htu: str
    nonce: str | None
    claims: Mapping[str, Any] = field(repr=False)
    header: Mapping[str, Any] = field(repr=False)


def _iso(seconds: float) -> str:
    """UTC, to the millisecond: for log lines and error descriptions."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ath_for(access_token: str) -> str:
    """RFC 9449 §4.2 ``ath``: base64url(SHA-256(ASCII access token))."""
    return sha256_b64url(access_token.encode("ascii"))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class DpopVerifier:
    """Verifies proofs against a request; the replay store and nonce issuer are injected."""

    def __init__(self, *, algs: Collection[str] = DEFAULT_ALGS, replay: ReplayStore | None = None,
                 nonces: NonceIssuer | None = None, iat_past: int = DEFAULT_IAT_PAST,
                 iat_future: int = DEFAULT_IAT_FUTURE, max_proof_bytes: int = DEFAULT_MAX_PROOF_BYTES,
                 max_jti_length: int = DEFAULT_MAX_JTI_LENGTH,
                 clock: Callable[[], float] = time.time, header_cache_size: int = 4096,
                 server_name: str = "Resource server") -> None:
        unsupported = set(algs) - ASYMMETRIC_ALGS
        if unsupported:
            raise ValueError(f"DPoP algs must be asymmetric JWS algs, not {sorted(unsupported)}")
        self.algs = tuple(algs)
        self.server_name = server_name  # who asks for the nonce, in error descriptions
        self._allowed = frozenset(algs)
        self.replay = replay
        self.nonces = nonces
        self.iat_past = iat_past
        self.iat_future = iat_future
        self.max_proof_bytes = max_proof_bytes
        self.max_jti_length = max_jti_length
        self.clock = clock
        self._keys = PublicKeyCache()
        #: Header segment -> (alg, key, jkt, header) of proofs whose signature verified (§4.3 (4)-(7)).
        self._headers: BoundedCache[str, tuple[str, PublicKey, str, dict[str, Any]]] = BoundedCache(
            header_cache_size, HEADER_CACHE_BYTES)
        self._logged_epoch = 0.0

    @property
    def replay_ttl(self) -> int:
        """How long a ``jti`` must be remembered: the widest window in which its proof is accepted."""
        window = self.iat_past + self.iat_future
        if self.nonces is not None:
            window = max(window, self.nonces.lifetime + self.iat_future)
        return window + 1

    def reset_guard(self, epoch: float) -> float:
        """Proofs issued before this were acceptable before a store reset at ``epoch``: a proof used at
        ``t < epoch`` had ``iat <= t + iat_future`` (§4.3 (11)), so it may be in the memory that was lost."""
        return epoch + self.iat_future

    def _predates(self, iat: float, nonce_since: float | None, epoch: float) -> bool:
        """Could this proof have been accepted before ``epoch``? Only if ``iat <= t + iat_future`` for some
        ``t < epoch`` and, when a server nonce vouched for it, only after that nonce was first handed out
        (RFC 9449 §4.3 (10)-(11))."""
        return iat < self.reset_guard(epoch) and (nonce_since is None or nonce_since < epoch)

    def _check_epoch(self, iat: float, nonce_since: float | None, epoch: float) -> None:
        """The store's memory began at ``epoch`` (it started empty, was damaged, flushed or failed over):
        refuse a proof that may have been used before, whose first use the store can no longer see."""
        if not self._predates(iat, nonce_since, epoch):
            return
        guard = self.reset_guard(epoch)
        if epoch > self._logged_epoch:
            old, self._logged_epoch = self._logged_epoch, epoch
            log.warning("replay store reset: epoch %s (was %s); refusing DPoP proofs issued before %s, which "
                        "may have been used before the reset (replay_store_reset)", _iso(epoch),
                        _iso(old) if old else "none", _iso(guard))
        raise InvalidDpopProof("replay_store_reset", f"DPoP proof was issued before the replay store's reset at "
                                                     f"{_iso(epoch)}; send a new proof after {_iso(guard)}")

    def _use_nonce(self, reason: str, description: str) -> UseDpopNonce:
        assert self.nonces is not None
        return UseDpopNonce(reason, description, self.nonces.issue())

    def _check_header(self, header: Mapping[str, Any], trace: Trace | None) -> tuple[str, PublicKey, str]:
        """§4.3 (4)-(7) for the JOSE header: typ, alg, and the key it carries (imported and thumbprinted)."""
        typ = header.get("typ")
        media = typ.lower() if isinstance(typ, str) else ""
        if media.startswith("application/"):
            media = media[len("application/"):]
        ok = media == "dpop+jwt"  # (4); RFC 7515 §4.1.9 allows the prefix and any case
        if trace is not None:
            trace.add("typ", f"{S43} (4)", ok, "dpop+jwt", header.get("typ", ABSENT))
        if not ok:
            if not isinstance(typ, str):
                raise InvalidDpopProof("dpop_bad_typ", "DPoP proof has no typ header")
            raise InvalidDpopProof("dpop_bad_typ", "DPoP proof typ is not dpop+jwt")
        alg = header.get("alg")
        ok = isinstance(alg, str) and alg in self._allowed
        if trace is not None:
            trace.add("alg", f"{S43} (5)", ok, f"one of {', '.join(self.algs)}", header.get("alg", ABSENT))
        if not ok or not isinstance(alg, str):  # (5)
            raise InvalidDpopProof("dpop_bad_alg", "DPoP proof alg is missing or not allowed")
        ok = "crit" not in header
        if trace is not None:
            trace.add("crit", "RFC 7515 §4.1.11", ok, ABSENT, header.get("crit", ABSENT))
        if not ok:
            raise InvalidDpopProof("dpop_crit", "DPoP proof has critical header parameters")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            if trace is not None:
                trace.add("jwk", f"{S43} (6)", False, "a JWK object in the header", type(jwk).__name__
                          if jwk is not None else ABSENT)
            raise InvalidDpopProof("dpop_bad_jwk", "DPoP proof has no jwk header")
        private = sorted(PRIVATE_MEMBERS.intersection(jwk))
        if trace is not None:
            trace.add("jwk is public", f"{S43} (7)", not private, "no private members",
                      f"private members {' '.join(private)}" if private else "public members only")
        if private:  # (7)
            raise InvalidDpopProof("dpop_private_jwk", "DPoP proof jwk contains private key material")
        ok = key_fits_alg(jwk, alg)
        if trace is not None:
            trace.add("jwk fits alg", f"{S43} (5)-(6)", ok, f"a key for {alg}",
                      f"kty {jwk.get('kty', ABSENT)}" + (f", crv {jwk['crv']}" if "crv" in jwk else ""))
        if not ok:  # (5)-(6): never take the algorithm from the header alone
            raise InvalidDpopProof("dpop_alg_key_mismatch", "DPoP proof alg does not match its jwk")
        try:
            key = self._keys.get(jwk)
            jkt = thumbprint(jwk)
        except JWKError as exc:
            if trace is not None:
                trace.add("jwk", f"{S43} (6)", False, "a valid public key", str(exc))
            raise InvalidDpopProof("dpop_bad_jwk", f"DPoP proof jwk is invalid: {exc}") from exc
        if trace is not None:
            trace.add("jwk", f"{S43} (6)", True, "a valid public key", f"jkt {jkt} (RFC 7638 thumbprint)")
        return alg, key, jkt

    def verify(self, proofs: Sequence[str], *, htm: str, htu: str, access_token: str | None = None,
               ath: str | None = None, require_nonce: bool = False, consume: bool = True,
               trace: Trace | None = None) -> DpopProof:
        """Check the request's DPoP header value(s) for a request to ``htm htu``.

        ``htu`` is the external target URI (already known to be absolute). With ``access_token`` the
        proof must carry its ``ath`` (§4.3 (12), §7); ``ath`` is that value already computed (a validated
        token carries it), and takes its place. With ``require_nonce`` a valid server nonce is
        mandatory (§8, §9, §11.3). ``consume`` records the ``jti`` in the replay store (§11.1); a
        read-only ``trace`` (``explain``) only asks the store whether it was seen.
        """
        # (1) exactly one DPoP header field, and a single token68 value (R-12: WSGI folds duplicates)
        if trace is not None:
            trace.add("one DPoP header", f"{S43} (1)", len(proofs) == 1, "exactly one DPoP field", len(proofs))
        if len(proofs) != 1:
            raise InvalidDpopProof("dpop_multiple_proofs", "Exactly one DPoP header is required")
        proof = proofs[0].strip()
        syntax = ("empty" if not proof else "too large" if len(proof) > self.max_proof_bytes
                  else None if _COMPACT_JWS.fullmatch(proof) else "more than one value" if "," in proof or " " in proof
                  else "not a compact JWS")
        if trace is not None:
            trace.add("proof syntax", f"{S43} (1)-(2)", syntax is None,
                      f"one compact JWS of at most {self.max_proof_bytes} bytes",
                      f"{syntax}, {len(proof)} bytes" if syntax else f"{len(proof)} bytes")
        if syntax is not None:
            if syntax == "empty":
                raise InvalidDpopProof("dpop_malformed", "DPoP header is empty")
            if syntax == "too large":
                raise InvalidDpopProof("dpop_too_large", "DPoP proof is too large")
            if syntax == "more than one value":
                raise InvalidDpopProof("dpop_multiple_proofs", "DPoP header holds more than one value")
            raise InvalidDpopProof("dpop_malformed", "DPoP proof is not a compact JWS")
        # (2) a well-formed compact JWS / JWT; a header seen on a verified proof needs no second decode
        seen = self._headers.get(proof.partition(".")[0])
        try:
            jws = parse_compact(proof, seen[3] if seen is not None else None)
        except JWSError as exc:
            if trace is not None:
                trace.add("well-formed JWT", f"{S43} (2)", False, "header.payload.signature, JSON objects", str(exc))
            raise InvalidDpopProof("dpop_malformed", f"DPoP proof is not a well-formed JWT: {exc}") from exc
        claims = jws.payload
        # (3) required claims
        if ath is None and access_token is not None:
            ath = ath_for(access_token)
        required = ("jti", "htm", "htu", "iat", "ath") if ath is not None else ("jti", "htm", "htu", "iat")
        missing = [name for name in required if name not in claims]
        if trace is not None:
            trace.add("well-formed JWT", f"{S43} (2)", True, "header.payload.signature, JSON objects", "ok")
            trace.add("required claims", f"{S43} (3)", not missing, " ".join(required),
                      f"missing {' '.join(missing)}" if missing else "all present")
        if missing:
            raise InvalidDpopProof("dpop_missing_claim", f"DPoP proof lacks the {missing[0]} claim")
        # (4)-(7) typ, alg, key; then the signature
        if seen is None:
            alg, key, jkt = self._check_header(jws.header, trace)
        else:
            alg, key, jkt = seen[:3]
            if trace is not None:
                trace.add("typ, alg, jwk", f"{S43} (4)-(7)", True,
                          "dpop+jwt, an allowed alg, a public jwk that fits it",
                          f"{alg}, jkt {jkt} (this exact header's proof verified before)")
        ok = verify_signature(alg, key, jws.signing_input, jws.signature)
        if trace is not None:
            trace.add("signature", f"{S43} (6)", ok, f"a valid {alg} signature by the header's jwk",
                      "verifies" if ok else "does not verify")
        if not ok:
            raise InvalidDpopProof("dpop_bad_signature", "DPoP proof signature does not verify")
        if seen is None:  # only a header whose signature verified is remembered, within a byte budget
            size = 3 * len(jws.header_segment) + PublicKeyCache.KEY_OVERHEAD
            self._headers.put(jws.header_segment, (alg, key, jkt, jws.header), size)
        jti = claims["jti"]
        problem = ("must be a non-empty string" if not isinstance(jti, str) or not jti
                   else "is too long" if len(jti) > self.max_jti_length else None)
        if trace is not None:
            trace.add("jti", f"{S43} (3), §4.2", problem is None,
                      f"a non-empty string of at most {self.max_jti_length} characters",
                      f"{type(jti).__name__} of {len(jti) if isinstance(jti, str) else '?'} characters"
                      if problem else f"{len(jti)} characters")
        if problem is not None:
            raise InvalidDpopProof("dpop_bad_jti", f"DPoP proof jti {problem}")
        # (8) htm: exact, case-sensitive (RFC 9110 §9.1)
        ok = claims["htm"] == htm
        if trace is not None:
            trace.add("htm", f"{S43} (8)", ok, htm, claims["htm"])
        if not ok:
            raise InvalidDpopProof("dpop_htm_mismatch", f"DPoP proof htm does not match the {htm} request")
        # (9) htu, both sides normalised, query and fragment ignored
        try:
            proof_htu = normalize_target(claims["htu"])
        except URIError as exc:
            if trace is not None:
                trace.add("htu", f"{S43} (9)", False, htu, f"{claims['htu']} (not an absolute http(s) URI)")
            raise InvalidDpopProof("dpop_bad_htu", "DPoP proof htu is not an absolute http(s) URI") from exc
        ok = hmac.compare_digest(proof_htu, htu)
        if trace is not None:
            trace.add("htu", f"{S43} (9)", ok, htu, proof_htu if proof_htu == claims["htu"]
                      else f"{proof_htu} (normalised from {claims['htu']})")
        if not ok:
            raise InvalidDpopProof("dpop_htu_mismatch",
                                   f"DPoP proof htu {proof_htu} does not match the request URL {htu}")
        # (10) nonce, when this server asks for one
        nonce = claims.get("nonce")
        nonce_since: float | None = None  # when the server began handing out this proof's nonce
        if require_nonce:
            if self.nonces is None:
                raise ValueError("nonces required but no nonce issuer configured")
            nonce_since = self.nonces.issued_since(nonce)
            if trace is not None:
                valid = nonce_since is not None
                trace.add("nonce", f"{S43} (10), §9", valid,
                          f"a nonce this server issued in the last {self.nonces.lifetime} s",
                          ABSENT if nonce is None else f"{nonce} ({'valid' if valid else 'invalid or expired'})")
            if nonce is None:
                raise self._use_nonce("dpop_nonce_missing", f"{self.server_name} requires nonce in DPoP proof")
            if nonce_since is None:
                raise self._use_nonce("dpop_nonce_invalid", "DPoP proof nonce is invalid or expired")
        nonce_ok = nonce_since is not None
        # (11) creation time: iat window; a valid server nonce vouches for freshness on the past side
        iat = claims["iat"]
        now = self.clock()
        if not _number(iat):
            if trace is not None:
                trace.add("iat", f"{S43} (11)", False, "a number (NumericDate)", iat)
            raise InvalidDpopProof("dpop_bad_iat", "DPoP proof iat is not a number")
        future, old = iat > now + self.iat_future, iat < now - self.iat_past and not nonce_ok
        if trace is not None:
            window = f"{now - self.iat_past:.0f} .. {now + self.iat_future:.0f}"
            trace.add("iat", f"{S43} (11)", not (future or old),
                      f"{window} (now - {self.iat_past} s .. now + {self.iat_future} s)"
                      + (", or older with a valid nonce" if nonce_ok else ""),
                      f"{iat} ({_age(iat, now)})")
        if future:
            raise InvalidDpopProof("dpop_iat_future", "DPoP proof iat is in the future")
        if old:
            raise InvalidDpopProof("dpop_iat_too_old", "DPoP proof iat is too old")
        for name in ("exp", "nbf"):
            if name in claims and not _number(claims[name]):
                if trace is not None:
                    trace.add(name, "RFC 7519 §2 NumericDate", False, "a number", claims[name])
                raise InvalidDpopProof("dpop_bad_claim", f"DPoP proof {name} is not a number")
        if "exp" in claims:
            expired = claims["exp"] <= now - self.iat_future
            if trace is not None:
                trace.add("exp", "RFC 7519 §4.1.4", not expired, f"> {now - self.iat_future:.0f}",
                          f"{claims['exp']} ({_age(claims['exp'], now)})")
            if expired:
                raise InvalidDpopProof("dpop_expired", "DPoP proof has expired")
        if "nbf" in claims:
            early = claims["nbf"] > now + self.iat_future
            if trace is not None:
                trace.add("nbf", "RFC 7519 §4.1.5", not early, f"<= {now + self.iat_future:.0f}",
                          f"{claims['nbf']} ({_age(claims['nbf'], now)})")
            if early:
                raise InvalidDpopProof("dpop_not_yet_valid", "DPoP proof is not yet valid")
        # (12) ath binds the proof to the access token (§4.2, §7); cnf.jkt is the caller's check
        if ath is not None:
            got_ath = claims["ath"]
            ok = isinstance(got_ath, str) and got_ath.isascii() and hmac.compare_digest(got_ath, ath)
            if trace is not None:
                trace.add("ath", f"{S43} (12), §4.2", ok, f"{ath} (SHA-256 of the access token)", got_ath)
            if not ok:
                raise InvalidDpopProof("dpop_ath_mismatch", "DPoP proof ath does not match the access token")
        # §11.1 replay: the jti, scoped to the key, may be used once within the window
        if consume and self.replay is not None:
            replay_key = b64url_encode(sha256(f"{jkt}\x00{jti}".encode()).digest())
            if trace is not None and trace.read_only:
                fresh = not self.replay.seen(replay_key)  # explain: ask, never record
            else:
                fresh = self.replay.first_use(replay_key, self.replay_ttl)
            if trace is not None:
                trace.add("jti not replayed", "RFC 9449 §11.1", fresh,
                          f"a jti not seen with this key in the last {self.replay_ttl} s",
                          "not seen before" if fresh else "already used")
            if not fresh:
                raise InvalidDpopProof("dpop_replay", "DPoP proof has already been used")
            epoch = self.replay.epoch_for(replay_key)
            if trace is not None and self._predates(iat, nonce_since, epoch):  # shown only when it decides
                trace.add("issued after the replay store's reset", "RFC 9449 §11.1", False,
                          f"iat from {_iso(self.reset_guard(epoch))} (the store's memory began {_iso(epoch)})"
                          + (", or a nonce handed out since" if nonce_since is not None else ""), iat)
            self._check_epoch(iat, nonce_since, epoch)
        elif trace is not None:
            trace.add("jti not replayed", "RFC 9449 §11.1", True, "recorded by tokenguard",
                      "not checked: route replay = \"off\" (the upstream checks it)" if not consume
                      else "not checked: no replay store")
        return DpopProof(jkt=jkt, jti=jti, iat=iat, htm=htm, htu=proof_htu,
                         nonce=nonce if isinstance(nonce, str) else None, claims=claims, header=jws.header)


def _age(moment: float, now: float) -> str:
    delta = int(now - moment)
    return f"{delta} s old" if delta >= 0 else f"{-delta} s in the future"


def create_proof(private_jwk: Mapping[str, Any], *, htm: str, htu: str, access_token: str | None = None,
                 nonce: str | None = None, iat: float | None = None, jti: str | None = None,
                 alg: str | None = None, extra_claims: Mapping[str, Any] | None = None) -> str:
    """Sign an RFC 9449 §4.2 proof (``htu`` without query and fragment, raw R‖S for ECDSA)."""
    from joserfc import jwk as jose_jwk
    from joserfc import jws as jose_jws

    from tokenguard.core.jwk import public_jwk

    alg = alg or private_jwk.get("alg") or default_alg(private_jwk)
    jwk = public_jwk(private_jwk)
    jwk.pop("alg", None)
    jwk.pop("kid", None)
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": jwk}
    claims: dict[str, Any] = {"jti": jti or str(uuid.uuid4()), "htm": htm, "htu": htu.split("#")[0].split("?")[0],
                              "iat": int(time.time() if iat is None else iat)}
    if access_token is not None:
        claims["ath"] = ath_for(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    if extra_claims:
        claims.update(extra_claims)
    key = jose_jwk.import_key(dict(private_jwk))
    payload = json.dumps(claims, separators=(",", ":")).encode()
    return jose_jws.serialize_compact(header, payload, key, algorithms=[alg])
