"""The three ways to hand ``explain`` a request: flags, a curl command line, a raw HTTP request.

Property tests: any text gives a request or one :class:`ClientError` (never another exception), and a
request written as curl or as HTTP/1.1 reads back as the same method, URL and header fields.
"""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenguard.cli.request_input import from_curl, from_flags, from_http
from tokenguard.client.errors import ClientError

TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
methods = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=8)
names = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20).filter(lambda n: n.lower() != "host")
values = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=40)
paths = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=1, max_size=8),
                 max_size=4).map(lambda parts: "/" + "/".join(parts))
hosts = st.sampled_from(["api.test", "127.0.0.1:8443", "[::1]:8000", "example.org"])
fields = st.lists(st.tuples(names, values), max_size=5)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_curl_text_is_a_request_or_one_clear_error(text: str) -> None:
    try:
        request = from_curl(text)
    except ClientError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert request.url.startswith(("http://", "https://"))


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_http_text_is_a_request_or_one_clear_error(text: str) -> None:
    try:
        request = from_http(text)
    except ClientError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert request.url.startswith(("http://", "https://"))


@settings(derandomize=True, max_examples=100, deadline=None)
@given(methods, st.sampled_from(["http", "https"]), hosts, paths, fields)
def test_curl_round_trip(method: str, scheme: str, host: str, path: str, headers: list[tuple[str, str]]) -> None:
    url = f"{scheme}://{host}{path}"
    words = ["curl", "-sk", "-X", method, *(w for n, v in headers for w in ("-H", f"{n}: {v}")), url]
    request = from_curl(" ".join(shlex.quote(w) for w in words))
    assert (request.method, request.url, request.headers) == (method, url, headers)
    assert request.ignored == ["-s", "-k"]


@settings(derandomize=True, max_examples=100, deadline=None)
@given(methods, hosts, paths, fields)
def test_http_round_trip(method: str, host: str, path: str, headers: list[tuple[str, str]]) -> None:
    text = f"{method} {path}?q=1 HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    request = from_http(text, scheme="http")
    assert (request.method, request.url) == (method, f"http://{host}{path}?q=1")
    assert request.headers == [("Host", host), *headers]


@pytest.mark.parametrize(("command", "method", "ignored"), [
    ("curl https://a.test/x", "GET", []),
    ("curl -d x=1 https://a.test/x", "POST", ["-d (the body: tokenguard never sees it)"]),
    ("curl -G -d x=1 https://a.test/x", "GET", ["-d (the body: tokenguard never sees it)"]),
    ("curl -I https://a.test/x", "HEAD", []),
    ("curl -T f.txt https://a.test/x", "PUT", ["-T (the body: tokenguard never sees it)"]),
    ("curl -XDELETE https://a.test/x", "DELETE", []),
    ("curl --request=PATCH --url https://a.test/x", "PATCH", []),
    ("curl -o out.json --cacert ca.pem -sSL https://a.test/x", "GET", ["-o", "--cacert", "-s", "-S", "-L"]),
    ("curl -u alice:pw https://a.test/x", "GET", ["-u (HTTP Basic credentials: not an OAuth access token)"]),
    ("curl --frobnicate https://a.test/x", "GET", ["--frobnicate"]),
])
def test_curl_method_rules(command: str, method: str, ignored: list[str]) -> None:
    request = from_curl(command)
    assert request.method == method and request.url == "https://a.test/x"
    assert [i.split(" ")[0] if i.startswith(("-o", "--cacert")) else i for i in request.ignored] == ignored


def test_curl_headers_bearer_and_continuations() -> None:
    request = from_curl("curl \\\n  -H 'DPoP: p1' \\\n  --oauth2-bearer tok 'https://a.test/x?y=1' -H 'X-Empty;' "
                        "-H 'Accept:' -H 'X-Colon: :'")
    assert request.headers == [("DPoP", "p1"), ("Authorization", "Bearer tok"), ("X-Colon", ":")]
    assert request.url == "https://a.test/x?y=1"
    assert request.ignored == ["-H 'X-Empty;' (curl's syntax for a removed or empty header)",
                               "-H 'Accept:' (curl's syntax for a removed or empty header)"]


def test_curl_without_scheme_is_http_as_curl_does() -> None:
    request = from_curl("curl api.test/x")
    assert request.url == "http://api.test/x" and "http:// assumed" in request.ignored[0]


def test_raw_http_absolute_form_body_and_folding() -> None:
    request = from_http("\r\nPUT https://a.test/x HTTP/1.1\r\nAuthorization: DPoP t\r\n\r\nbody\r\n")
    assert (request.method, request.url, request.headers) == ("PUT", "https://a.test/x", [("Authorization", "DPoP t")])
    assert request.ignored == ["the request body (tokenguard never sees it)"]
    with pytest.raises(ClientError, match="obs-fold"):
        from_http("GET / HTTP/1.1\r\nHost: a.test\r\nX-A: 1\r\n  continued\r\n\r\n")
    with pytest.raises(ClientError, match="exactly one Host"):
        from_http("GET / HTTP/1.1\r\n\r\n")


def test_flags_keep_repeated_fields_in_order() -> None:
    request = from_flags("get", "https://a.test/x", authorization=["DPoP a", "Bearer b"], dpop=["p"], cert=None,
                         headers=["X-Trace: 1"])
    assert request.method == "GET"
    assert request.headers == [("X-Trace", "1"), ("Authorization", "DPoP a"), ("Authorization", "Bearer b"),
                               ("DPoP", "p")]
