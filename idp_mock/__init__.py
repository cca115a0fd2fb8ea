"""idp-mock: a strict OAuth 2.0 authorization server for trying and testing tokenguard."""

from .app import create_app
from .config import IdpConfig, load_config

__all__ = ["IdpConfig", "create_app", "load_config"]
