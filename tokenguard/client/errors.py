"""The client's errors: one line each, fit for a terminal, never a token, proof or secret."""

from __future__ import annotations


class ClientError(Exception):
    """An expected failure, with a one-line message fit for a terminal (no secrets in it)."""

    exit_code = 2  # could not do it: bad input, unreadable file, network


class RequestRefused(ClientError):
    """The server answered, and the answer was no (e.g. a token endpoint error)."""

    exit_code = 1
