"""tokenguard: verify sender-constrained OAuth access tokens (DPoP, mTLS) for reverse-proxy auth sub-requests."""

__version__ = "0.1.0"
