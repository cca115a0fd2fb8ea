"""The request ``tokenguard explain`` judges: from flags, from a ``curl`` command line, or a raw HTTP request.

Each form becomes one :class:`ClientRequest`: the method and absolute URL the client called, the header
fields it sent (``Authorization``, ``DPoP``, …), the client certificate, and what was read but does not
bear on the decision (listed, so the user knows it was seen and ignored).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509

from tokenguard.client.certs import load_certificate
from tokenguard.client.errors import ClientError

Headers = list[tuple[str, str]]
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1 field-name = token
_METHOD = _FIELD_NAME


@dataclass
class ClientRequest:
    """What a client sent: method, absolute URL, header fields in order, and the TLS client certificate."""

    method: str
    url: str
    headers: Headers = field(default_factory=list)
    cert: x509.Certificate | None = None
    source: str = "flags"  # flags | curl | stdin
    ignored: list[str] = field(default_factory=list)

    def values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


def _check_method(method: str) -> str:
    if not _METHOD.fullmatch(method):
        raise ClientError(f"{method!r} is not an HTTP method (RFC 9110 §9.1)")
    return method


def _check_url(url: str, source: str) -> str:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ClientError(f"{source}: {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ClientError(f"{source}: {url!r} is not an absolute http(s) URL")
    return url


def header_field(text: str, source: str) -> tuple[str, str]:
    """``Name: value`` as one header field; the name must be an RFC 9110 token."""
    name, sep, value = text.partition(":")
    if not sep or not _FIELD_NAME.fullmatch(name):
        raise ClientError(f"{source}: {text[:60]!r} is not a header field (write it as 'Name: value')")
    return name, value.strip(" \t")


def from_flags(method: str, url: str, *, authorization: list[str], dpop: list[str], cert: str | None,
               headers: list[str]) -> ClientRequest:
    """``--method --url --authorization --dpop --cert --header`` (each header option may repeat)."""
    fields: Headers = [header_field(item, "--header") for item in headers]
    fields += [("Authorization", value) for value in authorization]
    fields += [("DPoP", value) for value in dpop]
    return ClientRequest(_check_method(method.upper()), _check_url(url, "--url"), fields,
                         load_certificate(cert) if cert else None)


# -- curl --------------------------------------------------------------------------------------------

#: curl options that take an argument and matter here.
_CURL_METHOD = ("-X", "--request")
_CURL_HEADER = ("-H", "--header")
_CURL_CERT = ("-E", "--cert")
_CURL_DATA = ("-d", "--data", "--data-raw", "--data-binary", "--data-ascii", "--data-urlencode", "--json",
              "-F", "--form", "--form-string")
#: curl options that take an argument that does not bear on the decision (skipped with it).
_CURL_SKIPPED_WITH_ARG = frozenset((
    "-o", "--output", "--cacert", "--capath", "--key", "--key-type", "--cert-type", "--pass", "-A", "--user-agent",
    "-e", "--referer", "-b", "--cookie", "-c", "--cookie-jar", "-m", "--max-time", "--connect-timeout", "-w",
    "--write-out", "--resolve", "--connect-to", "-x", "--proxy", "-r", "--range", "--retry", "--retry-delay",
    "--retry-max-time", "-D", "--dump-header", "--trace", "--trace-ascii", "--limit-rate", "--interface",
    "--max-redirs", "-U", "--proxy-user", "--ciphers", "--tls-max", "--pinnedpubkey", "-K", "--config"))
#: Short options that take their argument attached (``-XPOST``) or as the next word.
_CURL_SHORT_WITH_ARG = frozenset(o for o in (*_CURL_METHOD, *_CURL_HEADER, *_CURL_CERT, *_CURL_DATA, "-T", "-u",
                                             *_CURL_SKIPPED_WITH_ARG) if len(o) == 2)


def _curl_words(command: str) -> list[str]:
    try:
        words = shlex.split(command.replace("\\\r\n", " ").replace("\\\n", " "))
    except ValueError as exc:
        raise ClientError(f"--curl: cannot split the command line like a shell would ({exc})") from None
    if words and Path(words[0]).name == "curl":
        words = words[1:]
    return words


def _curl_options(words: list[str]) -> list[tuple[str, str | None]]:
    """(option, argument) pairs and ("", url) for positional words, short options split (``-sSk``)."""
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word == "--":
            out += [("", rest) for rest in words[i:]]
            break
        if word.startswith("--"):
            name, eq, attached = word.partition("=")
            takes = name in (*_CURL_METHOD, *_CURL_HEADER, *_CURL_CERT, *_CURL_DATA, "--url", "--oauth2-bearer",
                             "--user", "--upload-file") or name in _CURL_SKIPPED_WITH_ARG
            if takes and not eq:
                if i >= len(words):
                    raise ClientError(f"--curl: {name} needs an argument")
                attached, i = words[i], i + 1
            out.append((name, attached if takes else None))
        elif word.startswith("-") and len(word) > 1:
            for j in range(1, len(word)):
                short = "-" + word[j]
                if short in _CURL_SHORT_WITH_ARG:
                    attached = word[j + 1:]
                    if not attached:
                        if i >= len(words):
                            raise ClientError(f"--curl: {short} needs an argument")
                        attached, i = words[i], i + 1
                    out.append((short, attached))
                    break
                out.append((short, None))
        else:
            out.append(("", word))
    return out


def _curl_cert(value: str) -> str:
    """``--cert FILE[:PASSWORD]``: the file (a password, never needed for the certificate, is dropped)."""
    if Path(value).exists() or ":" not in value:
        return value
    return value.rsplit(":", 1)[0]


def from_curl(command: str) -> ClientRequest:
    """A ``curl`` command line: ``-X``, ``-H``, the URL, ``--cert`` and what implies the method (``-d``,
    ``-I``, ``-G``, ``-T``); other options are listed as ignored."""
    method: str | None = None
    url: str | None = None
    fields: Headers = []
    cert: str | None = None
    data = head = get = upload = False
    ignored: list[str] = []
    for option, value in _curl_options(_curl_words(command)):
        if option in ("", "--url"):
            if url is not None:
                ignored.append(f"another URL {value}")
                continue
            url = value
        elif option in _CURL_METHOD:
            method = value
        elif option in _CURL_HEADER:
            assert value is not None
            name, sep, rest = value.partition(":")
            if (sep and not rest.strip()) or (not sep and value.rstrip().endswith(";")):
                ignored.append(f"-H {value!r} (curl's syntax for a removed or empty header)")
                continue
            fields.append(header_field(value, "--curl -H"))
        elif option in _CURL_CERT:
            cert = _curl_cert(value or "")
        elif option == "--oauth2-bearer":
            fields.append(("Authorization", f"Bearer {value}"))
        elif option in ("-u", "--user"):
            ignored.append(f"{option} (HTTP Basic credentials: not an OAuth access token)")
        elif option in _CURL_DATA:
            data = True
            ignored.append(f"{option} (the body: tokenguard never sees it)")
        elif option in ("-I", "--head"):
            head = True
        elif option in ("-G", "--get"):
            get = True
        elif option in ("-T", "--upload-file"):
            upload = True
            ignored.append(f"{option} (the body: tokenguard never sees it)")
        else:
            ignored.append(option)
    if url is None:
        raise ClientError("--curl: the command line has no URL")
    if "://" not in url:
        ignored.append(f"no scheme in {url}: http:// assumed, as curl does")
        url = "http://" + url
    implied = "HEAD" if head else "GET" if get else "PUT" if upload else "POST" if data else "GET"
    return ClientRequest(_check_method(method or implied), _check_url(url, "--curl"), fields,
                         load_certificate(cert) if cert else None, source="curl", ignored=ignored)


# -- a raw HTTP request ------------------------------------------------------------------------------


def from_http(text: str, *, scheme: str = "https", cert: str | None = None) -> ClientRequest:
    """An HTTP/1.1 request as text (RFC 9112 §2.1): request line, header fields, a blank line; a body is
    ignored. An origin-form target is completed from ``Host`` and ``scheme``."""
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise ClientError("stdin: no HTTP request (expected e.g. 'GET /path HTTP/1.1', header lines, a blank line)")
    parts = lines[0].split()
    if len(parts) not in (2, 3) or (len(parts) == 3 and not parts[2].startswith("HTTP/")):
        raise ClientError(f"stdin: {lines[0][:80]!r} is not an HTTP request line (METHOD TARGET HTTP/1.1)")
    method, target = _check_method(parts[0]), parts[1]
    fields: Headers = []
    ignored: list[str] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            if any(rest.strip() for rest in lines[number:]):
                ignored.append("the request body (tokenguard never sees it)")
            break
        if line[0] in " \t":
            raise ClientError(f"stdin line {number}: a folded header line (obs-fold) is not allowed (RFC 9112 §5.2)")
        fields.append(header_field(line, f"stdin line {number}"))
    if target.startswith(("http://", "https://")):
        url = target
    elif target.startswith("/"):
        hosts = [value for name, value in fields if name.lower() == "host"]
        if len(hosts) != 1:
            raise ClientError("stdin: an origin-form request target needs exactly one Host header (RFC 9112 §3.2)")
        url = f"{scheme}://{hosts[0]}{target}"
    else:
        raise ClientError(f"stdin: {target[:80]!r} is not an origin-form or absolute-form request target")
    return ClientRequest(method, _check_url(url, "stdin"), fields, load_certificate(cert) if cert else None,
                         source="stdin", ignored=ignored)
