"""Real-process test harness: redis-server, nginx, Caddy, tokenguard and a header-echoing upstream.

Everything listens on free loopback ports and lives in a per-test temporary directory. Processes are
started in their own session so that stopping one kills its whole process group (nginx workers,
gunicorn workers) and nothing outlives the test run. The proxy configurations are rendered from the
files shipped in ``deploy/`` -- the shipped files are the source of truth, the harness only swaps
ports and paths and fails loudly if an expected line is missing.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from support import free_port, port_open, settle_replay_store  # noqa: F401 - re-exported for the integration tests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
NGINX_DIR = DEPLOY / "nginx"
CADDYFILE = DEPLOY / "caddy" / "Caddyfile"

#: Generous: CI machines are small and noisy; readiness is polled, never slept for.
READY_TIMEOUT = 60.0

Headers = Sequence[tuple[str, str]]


# ---------------------------------------------------------------------------------------------- ports


# ------------------------------------------------------------------------------------------ processes


class ProcessFailed(RuntimeError):
    """A managed process exited or never became ready; the message carries its log tail."""


@dataclass
class ManagedProcess:
    """A child process in its own process group, with its combined output in a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    def log_tail(self, limit: int = 6000) -> str:
        """The last `limit` characters the process wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "<no log>"
        return text[-limit:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left; safe to call twice."""
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # Kill stragglers in the group even if the leader already exited (orphaned workers).
        _signal_group(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)

    def fail(self, why: str) -> ProcessFailed:
        return ProcessFailed(
            f"{self.name}: {why} (exit={self.popen.poll()})\n--- {self.log_path} ---\n{self.log_tail()}"
        )


def live_group_members(pgid: int) -> list[int]:
    """PIDs in process group `pgid` that are still running (zombies excluded; some container inits
    never reap orphans, and a zombie holds no port or file)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def start_process(
    cmd: Sequence[str],
    *,
    name: str,
    log_dir: Path,
    ready_url: str | None = None,
    ready_port: int | None = None,
    ready_check: Callable[[], bool] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = READY_TIMEOUT,
) -> ManagedProcess:
    """Start `cmd` in a new session and wait until it is ready.

    Ready means: `ready_url` answers 200 (plain http, or https without verification), or
    `ready_port` accepts connections, and `ready_check()` (if given) returns true. If the process
    exits or the timeout passes first, it is stopped and ProcessFailed carries its output.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(  # noqa: S603 - fixed argv from the tests
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    proc = ManagedProcess(name=name, popen=popen, log_path=log_path, port=ready_port)
    try:
        _wait_ready(proc, ready_url=ready_url, ready_port=ready_port, ready_check=ready_check, timeout=timeout)
    except BaseException:
        proc.stop()
        raise
    return proc


def _url_ok(url: str) -> bool:
    ctx = ssl._create_unverified_context()  # readiness only; the tests verify TLS properly
    try:
        with urllib.request.urlopen(url, timeout=2, context=ctx) as resp:  # noqa: S310
            return resp.status == 200
    except (urllib.error.URLError, OSError, http.client.HTTPException):
        return False


def _wait_ready(
    proc: ManagedProcess,
    *,
    ready_url: str | None,
    ready_port: int | None,
    ready_check: Callable[[], bool] | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if not proc.alive():
            raise proc.fail("exited before becoming ready")
        ok = True
        if ready_port is not None:
            ok = port_open(ready_port)
        if ok and ready_url is not None:
            ok = _url_ok(ready_url)
        if ok and ready_check is not None:
            ok = ready_check()
        if ok:
            return
        if time.monotonic() > deadline:
            raise proc.fail(f"not ready after {timeout:.0f}s (url={ready_url}, port={ready_port})")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


def require_binary(name: str) -> str | None:
    """Path of an executable on PATH (also /usr/sbin, where Debian puts nginx), or None."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


# ---------------------------------------------------------------------------------------------- redis


def start_redis(tmp: Path, port: int | None = None) -> ManagedProcess:
    """redis-server on loopback with persistence off (no RDB, no AOF): a throw-away replay store."""
    binary = require_binary("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server not installed")
    port = port or free_port()
    data = tmp / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", str(data), "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
    ]  # fmt: skip
    return start_process(
        cmd, name=f"redis-{port}", log_dir=tmp / "logs", ready_port=port, ready_check=lambda: _redis_ping(port)
    )


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class ClientCert:
    """A self-signed client certificate (RFC 8705 self_signed_tls_client_auth style) on disk."""

    name: str
    cert_path: Path
    key_path: Path
    pem: str
    der: bytes

    @property
    def x5t_s256(self) -> str:
        """RFC 8705 §3.1 confirmation value: base64url(SHA-256(DER)), no padding."""
        return base64.urlsafe_b64encode(hashlib.sha256(self.der).digest()).rstrip(b"=").decode()

    @property
    def escaped_pem(self) -> str:
        """What nginx's $ssl_client_escaped_cert produces (URL-encoded PEM)."""
        return quote(self.pem, safe="")

    @property
    def base64_der(self) -> str:
        """What Caddy's {http.request.tls.client.certificate_der_base64} produces."""
        return base64.b64encode(self.der).decode()


@dataclass(frozen=True)
class TLSMaterial:
    """A test CA, a server certificate for localhost/127.0.0.1 and three client certificates.

    cert1 and cert1b share a key (a re-issued certificate: different x5t#S256, RFC 8705 §6.3);
    cert2 is unrelated.
    """

    ca_path: Path
    server_cert: Path
    server_key: Path
    cert1: ClientCert
    cert1b: ClientCert
    cert2: ClientCert


def make_tls_material(directory: Path) -> TLSMaterial:
    """Create all TLS files under `directory` (trustme for the server side, cryptography for clients)."""
    import trustme
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server_cert = directory / "server.crt"
    server_key = directory / "server.key"
    server.private_key_pem.write_to_path(str(server_key))
    # Leaf first, then the chain, as nginx and Caddy expect.
    server_cert.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    key1 = ec.generate_private_key(ec.SECP256R1())
    key2 = ec.generate_private_key(ec.SECP256R1())
    return TLSMaterial(
        ca_path=ca_path,
        server_cert=server_cert,
        server_key=server_key,
        cert1=_self_signed(directory, "cert1", key1, serial=1),
        cert1b=_self_signed(directory, "cert1b", key1, serial=2),
        cert2=_self_signed(directory, "cert2", key2, serial=3),
    )


def _self_signed(directory: Path, name: str, key: object, serial: int) -> ClientCert:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"tokenguard-test-{name}")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    cert_path = directory / f"{name}.crt"
    key_path = directory / f"{name}.key"
    cert_path.write_text(pem)
    key_path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ClientCert(name, cert_path, key_path, pem, cert.public_bytes(serialization.Encoding.DER))


# ------------------------------------------------------------------------------------- HTTPS client


@dataclass
class Response:
    """A response with every header line kept (http.client folds nothing), so tests can count them."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def one(self, name: str) -> str | None:
        values = self.all(name)
        if len(values) > 1:
            raise AssertionError(f"{name} appears {len(values)} times: {values}")
        return values[0] if values else None

    def json(self) -> object:
        return json.loads(self.body)


def request(
    method: str,
    url: str,
    *,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes | None = None,
    ca: Path | None = None,
    client_cert: ClientCert | None = None,
    timeout: float = 30.0,
) -> Response:
    """One HTTP(S) request; headers are a list so a test can send the same header twice."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if client_cert is not None:
            ctx.load_cert_chain(str(client_cert.cert_path), str(client_cert.key_path))
        conn = http.client.HTTPSConnection(parts.hostname or "", port, context=ctx, timeout=timeout)
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        conn.putrequest(method, target)
        sent = {k.lower() for k, _ in headers}
        for key, value in headers:
            conn.putheader(key, value)
        if body is not None and "content-length" not in sent:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return Response(resp.status, list(resp.getheaders()), resp.read())
    finally:
        conn.close()


# -------------------------------------------------------------------------- in-process HTTP servers

#: The echo upstream stands for an app with no header-count limit of its own (the stdlib stops at 100),
#: so that what it records is what the proxy forwarded, also for requests with many fields.
http.client._MAXHEADERS = 100_000  # type: ignore[attr-defined]


class EchoHandler(BaseHTTPRequestHandler):
    """The tiny upstream: answers any method with JSON describing the request it received.

    `headers` keeps every line in order, so tests can assert that an identity header arrived exactly
    once and that a client-sent copy was replaced.
    """

    protocol_version = "HTTP/1.1"
    server_version = "echo-upstream"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(self._record(body))  # type: ignore[attr-defined]
        payload = json.dumps(self._record(body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _record(self, body: bytes) -> dict[str, object]:
        return {
            "method": self.command,
            "path": self.path,
            "target": self.requestline.split(" ")[1],  # as sent (http.server rewrites a leading // in .path)
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body.decode("latin-1"),
        }

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@dataclass
class ThreadedServer:
    """A ThreadingHTTPServer on a free loopback port, running in a daemon thread."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    requests: list[dict[str, object]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


class _QuietServer(ThreadingHTTPServer):
    """Proxies drop idle keep-alive connections; that is not an error worth a traceback."""

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


def serve_in_thread(handler: type[BaseHTTPRequestHandler], port: int = 0) -> ThreadedServer:
    """Start `handler` on 127.0.0.1:`port` (0 = free port); `.requests` collects what handlers append."""
    server = _QuietServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    requests: list[dict[str, object]] = []
    server.requests = requests  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name=f"{handler.__name__}-{port}", daemon=True)
    thread.start()
    return ThreadedServer(server, thread, requests)


def header_values(record: Mapping[str, object], name: str) -> list[str]:
    """All values of `name` in an EchoHandler-style record (case-insensitive)."""
    pairs = record["headers"]
    assert isinstance(pairs, list)
    return [v for k, v in pairs if k.lower() == name.lower()]


# ---------------------------------------------------------------------------------------------- nginx


def _replace_once(text: str, old: str, new: str, *, source: Path, count: int = 1) -> str:
    found = text.count(old)
    if found != count:
        raise AssertionError(
            f"{source}: expected {count} occurrence(s) of {old!r}, found {found} -- the shipped config "
            "changed; update tests/integration/harness.py so the tests keep using it"
        )
    return text.replace(old, new)


@dataclass(frozen=True)
class NginxPorts:
    """Ports substituted into the shipped nginx configuration (``verifier`` may be ``"unix:/path"``)."""

    listen: int
    verifier: int | str
    upstream: int
    idp_listen: int
    idp: int


def render_nginx(prefix: Path, ports: NginxPorts, tls: TLSMaterial) -> Path:
    """Render deploy/nginx/{nginx.conf,tokenguard.conf,idp-mtls.conf} into `prefix`/conf.

    Only listen/upstream ports change; the certificate paths in the shipped files are relative
    (tls/server.crt), so the server certificate is copied next to the rendered config.
    """
    conf = prefix / "conf"
    for sub in ("conf/tls", "logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tls.server_cert, conf / "tls" / "server.crt")
    shutil.copyfile(tls.server_key, conf / "tls" / "server.key")

    main = NGINX_DIR / "nginx.conf"
    shutil.copyfile(main, conf / "nginx.conf")

    src = NGINX_DIR / "tokenguard.conf"
    text = src.read_text()
    text = _replace_once(text, "listen 127.0.0.1:8000 ssl;", f"listen 127.0.0.1:{ports.listen} ssl;", source=src)
    verifier = ports.verifier if isinstance(ports.verifier, str) else f"127.0.0.1:{ports.verifier}"
    text = _replace_once(text, "server 127.0.0.1:8080;", f"server {verifier};", source=src)
    text = _replace_once(text, "server 127.0.0.1:8001;", f"server 127.0.0.1:{ports.upstream};", source=src)
    (conf / "tokenguard.conf").write_text(text)

    src = NGINX_DIR / "idp-mtls.conf"
    text = src.read_text()
    text = _replace_once(text, "listen 127.0.0.1:9443 ssl;", f"listen 127.0.0.1:{ports.idp_listen} ssl;", source=src)
    text = _replace_once(text, "server 127.0.0.1:9000;", f"server 127.0.0.1:{ports.idp};", source=src)
    (conf / "idp-mtls.conf").write_text(text)
    return conf / "nginx.conf"


def nginx_version(binary: str) -> tuple[int, ...]:
    """nginx's version as a tuple, e.g. (1, 22, 1); behaviour around WWW-Authenticate changed in 1.23."""
    out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=30)  # noqa: S603
    text = (out.stderr or out.stdout).strip()
    return tuple(int(part) for part in text.rsplit("/", 1)[-1].split()[0].split("."))


def nginx_command(binary: str, prefix: Path, conf_file: Path, *, test: bool = False) -> list[str]:
    """The nginx argv for a rendered prefix: foreground, logs to the prefix and to stderr."""
    directives = "daemon off; error_log stderr notice;"
    if os.geteuid() == 0:
        # As root, workers would run as `nobody`, which cannot enter pytest's 0700 temp dirs.
        directives += " user root root;"
    argv = [binary, "-p", f"{prefix}/", "-c", str(conf_file), "-g", directives]
    return [*argv, "-t"] if test else argv


def start_nginx(prefix: Path, ports: NginxPorts, tls: TLSMaterial) -> ManagedProcess:
    """Render the shipped nginx config and run it; `nginx -t` first for a precise error message."""
    binary = require_binary("nginx")
    if binary is None:
        raise FileNotFoundError("nginx not installed")
    conf_file = render_nginx(prefix, ports, tls)
    check = subprocess.run(  # noqa: S603
        nginx_command(binary, prefix, conf_file, test=True), capture_output=True, text=True, timeout=60
    )
    if check.returncode != 0:
        raise ProcessFailed(f"nginx -t failed for {conf_file}:\n{check.stderr}")
    return start_process(
        nginx_command(binary, prefix, conf_file),
        name=f"nginx-{ports.listen}",
        log_dir=prefix / "logs",
        ready_check=lambda: port_open(ports.listen) and port_open(ports.idp_listen),
    )


# ---------------------------------------------------------------------------------------------- Caddy


@dataclass(frozen=True)
class CaddyPorts:
    """Ports handed to the shipped Caddyfile through its {$ENV} placeholders."""

    listen: int
    verifier: int
    upstream: int
    admin: int


def caddy_env(home: Path, ports: CaddyPorts, tls: TLSMaterial) -> dict[str, str]:
    """Environment for the shipped Caddyfile: it is used unmodified, every knob is a {$VAR:default}."""
    for sub in ("data", "config"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    return {
        "TOKENGUARD_SITE": f"https://localhost:{ports.listen}",
        "TOKENGUARD_VERIFIER": f"127.0.0.1:{ports.verifier}",
        "TOKENGUARD_UPSTREAM": f"127.0.0.1:{ports.upstream}",
        "TOKENGUARD_TLS_CERT": str(tls.server_cert),
        "TOKENGUARD_TLS_KEY": str(tls.server_key),
        "TOKENGUARD_CADDY_ADMIN": f"127.0.0.1:{ports.admin}",
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }


def start_caddy(home: Path, ports: CaddyPorts, tls: TLSMaterial) -> ManagedProcess:
    """Run the shipped Caddyfile (validated first) with ports and certificate paths from the env."""
    binary = require_binary("caddy")
    if binary is None:
        raise FileNotFoundError("caddy not installed")
    env = {**os.environ, **caddy_env(home, ports, tls)}
    check = subprocess.run(  # noqa: S603
        [binary, "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    if check.returncode != 0:
        raise ProcessFailed(f"caddy validate failed for {CADDYFILE}:\n{check.stdout}\n{check.stderr}")
    return start_process(
        [binary, "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        name=f"caddy-{ports.listen}",
        log_dir=home / "logs",
        env=env,
        ready_port=ports.listen,
    )


# ----------------------------------------------------------------------------------------- tokenguard


def tokenguard_command(config: Path, workers: int = 2) -> list[str]:
    """`tokenguard serve` exactly as production runs it (its default serving layer)."""
    return [sys.executable, "-m", "tokenguard", "serve", "--config", str(config), "--workers", str(workers)]


def start_tokenguard(
    config: Path,
    port: int,
    log_dir: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    timeout: float = READY_TIMEOUT,
    settle: bool = True,
) -> ManagedProcess:
    """Start the verifier service; `port` must be the one the config's [server] listen names.

    With `settle` its replay store is given an old epoch first (`support.settle_replay_store`), so DPoP
    proofs are accepted at once rather than after a new store's reset guard."""
    if settle:
        settle_replay_store(config=config, env=env)
    return start_process(
        tokenguard_command(config, workers),
        name=f"tokenguard-{port}",
        log_dir=log_dir,
        ready_url=f"http://127.0.0.1:{port}/healthz",
        env=env,
        cwd=REPO,
        timeout=timeout,
    )


# ------------------------------------------------------------------------------ stub authorization server

AUDIENCE = "https://api.test"


class _StubIssuerHandler(BaseHTTPRequestHandler):
    """RFC 8414 metadata, /jwks and /introspect of a :class:`StubIssuer` (whose state it reads)."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.stub.connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.stub.connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def _reply(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        trickle = self.path.split("?", 1)[0] in self.server.stub.trickle_paths  # type: ignore[attr-defined]
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not trickle:
                self.wfile.write(body)
                return
            for byte in body:  # a byte at a time, each well within any per-read timeout
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.server.stub.delay)  # type: ignore[attr-defined]
        except OSError:
            pass  # the client gave up (timeout test): nothing to do

    def _serve(self) -> None:
        stub: StubIssuer = self.server.stub  # type: ignore[attr-defined]
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        stub.hits.append(path)
        if path in stub.slow_paths:
            time.sleep(stub.delay)
        if stub.failing:
            self._reply(503, {"error": "temporarily_unavailable"})
        elif path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
            self._reply(200, {"issuer": stub.issuer, "jwks_uri": stub.issuer + "/jwks",
                              "introspection_endpoint": stub.issuer + "/introspect"})
        elif path == "/jwks":
            self._reply(200, {"keys": [stub.public_jwk]})
        elif path == "/introspect" and self.command == "POST":
            from urllib.parse import parse_qs

            token = parse_qs(body.decode()).get("token", [""])[0]
            self._reply(200, stub.opaque.get(token, {"active": False}))
        else:
            self._reply(404, {"error": "not_found"})

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


class StubIssuer:
    """A tiny authorization server for the verifier: metadata + JWKS (+ introspection), in a thread.

    Faults are switched on the live object: `failing` (HTTP 503 everywhere), `slow_paths` (those
    paths sleep `delay` seconds before answering), `trickle_paths` (those answer at once but send
    their body one byte every `delay` seconds) and `close()` (the IdP is gone: open keep-alive
    connections are cut and new ones refused).
    Tokens are RFC 9068 JWTs (typ at+jwt, RS256, kid) minted with joserfc.
    """

    def __init__(self, port: int = 0) -> None:
        from joserfc import jwk

        self.key = jwk.RSAKey.generate_key(2048, parameters={"kid": "stub-1", "use": "sig", "alg": "RS256"})
        self.public_jwk = self.key.as_dict(private=False)
        self.failing = False
        self.slow_paths: set[str] = set()
        self.trickle_paths: set[str] = set()
        self.delay = 5.0
        self.hits: list[str] = []
        self.opaque: dict[str, dict[str, object]] = {}
        self.connections: set[socket.socket] = set()
        self._server = serve_in_thread(_StubIssuerHandler, port)
        self._server.server.stub = self  # type: ignore[attr-defined]
        self.port = self._server.port
        self.issuer = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening and cut every open connection (idempotent)."""
        self._server.server.shutdown()
        self._server.server.server_close()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.thread.join(timeout=10)

    def token(self, *, sub: str = "alice", scope: str = "read", cnf: Mapping[str, str] | None = None,
              **claims: object) -> str:
        from joserfc import jwt

        now = int(time.time())
        body: dict[str, object] = {
            "iss": self.issuer, "aud": AUDIENCE, "sub": sub, "client_id": "client-1", "iat": now,
            "exp": now + 600, "jti": f"at-{time.time_ns()}", "scope": scope,
        }  # fmt: skip
        if cnf is not None:
            body["cnf"] = dict(cnf)
        body.update(claims)
        return jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "stub-1"}, body, self.key)


def dpop_key() -> dict[str, object]:
    """A fresh private ES256 JWK (dict) for DPoP proofs, and its RFC 7638 thumbprint under 'jkt'."""
    from joserfc import jwk

    from tokenguard.core.jwk import thumbprint

    private = jwk.ECKey.generate_key("P-256").as_dict(private=True)
    private.pop("kid", None)
    return {"jwk": private, "jkt": thumbprint({k: v for k, v in private.items() if k != "d"})}


def tokenguard_config(
    path: Path,
    *,
    port: int,
    state_dir: Path,
    issuer: str,
    store: str = "embedded",
    token: Mapping[str, object] | None = None,
    issuer_extra: str = "",
    extra: str = "",
    routes: str = "",
) -> Path:
    """Write a tokenguard TOML config listening on `port` with one issuer; returns `path`.

    `issuer_extra` is TOML added to the [[issuer]] table, `extra` more tables, `routes` [[route]]s.
    """
    token_table = {"audience": AUDIENCE, "jwks_refresh_cooldown": 1, **(token or {})}
    lines = [
        "[server]", f'listen = "127.0.0.1:{port}"', f"state_dir = {json.dumps(str(state_dir))}",
        "[token]", *(f"{key} = {json.dumps(value)}" for key, value in token_table.items()),
        "[[issuer]]", f"issuer = {json.dumps(issuer)}", issuer_extra,
        "[replay]", f"store = {json.dumps(store)}",
        extra, routes,
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------------- per-worker metrics


def worker_counters(state_dir: Path, master_pid: int) -> dict[int, dict[tuple[str, tuple[str, ...]], float]]:
    """Counter values per worker pid, read from the per-worker metric files `tokenguard serve` writes.

    `serve` points every worker at `<state_dir>/metrics-<master pid>` (tokenguard.web.metrics), where each
    worker keeps its own slots; this is how a test learns which worker answered what without adding
    anything to the product. Keys: (metric name, label values in label-name order).
    """
    from tokenguard.web.metrics import COUNTERS, per_worker

    result: dict[int, dict[tuple[str, tuple[str, ...]], float]] = {}
    for pid, series in per_worker(state_dir / f"metrics-{master_pid}").items():
        values: dict[tuple[str, tuple[str, ...]], float] = {}
        for (name, labels), value in series.items():
            if name in COUNTERS:
                by_name = dict(zip(COUNTERS[name][1], labels, strict=True))
                values[(name, tuple(by_name[k] for k in sorted(by_name)))] = float(value)
        result[pid] = values
    return result


def auth_subrequest(port: int, method: str, url: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Ask tokenguard's /auth directly, as nginx's auth_request would for `method` `url`."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    original = [
        ("X-Original-Method", method), ("X-Original-URI", target), ("X-Forwarded-Proto", parts.scheme),
        ("X-Forwarded-Host", parts.hostname or ""),
        ("X-Forwarded-Port", str(parts.port or (443 if parts.scheme == "https" else 80))),
    ]  # fmt: skip
    return request("GET", f"http://127.0.0.1:{port}/auth", headers=[*original, *headers])


# ------------------------------------------------------------------------------- raw requests, decisions


def raw_request(port: int, data: bytes, *, tls: TLSMaterial | None = None, cert: ClientCert | None = None,
                host: str = "127.0.0.1", unix_socket: Path | None = None, timeout: float = 30.0) -> Response:
    """Send `data` exactly as given (any framing a test can write) and read one response.

    With `tls`, the connection is HTTPS to `localhost` (SNI and certificate name) verified by the test CA.
    """
    sock: socket.socket
    if unix_socket is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(unix_socket))
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    if tls is not None:
        ctx = ssl.create_default_context(cafile=str(tls.ca_path))
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert_path), str(cert.key_path))
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    try:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return Response(resp.status, list(resp.getheaders()), resp.read())
    finally:
        sock.close()


class DecisionLog:
    """The decision lines tokenguard writes to its log, read incrementally (one JSON object per line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self, expect: bool = False, timeout: float = 5.0) -> list[dict[str, object]]:
        """Decision lines written since the last call; with ``expect``, wait for at least one (tokenguard
        writes its lines in batches, at most 50 ms after the decision)."""
        deadline = time.monotonic() + timeout
        found = self._read()
        while expect and not found and time.monotonic() < deadline:
            time.sleep(0.01)
            found = self._read()
        return found

    def _read(self) -> list[dict[str, object]]:
        with self.path.open("rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1  # a line still being written stays for the next call
        self.offset += end
        found = []
        for line in data[:end].splitlines():
            if line.startswith(b"{") and b'"event":"decision"' in line:
                found.append(json.loads(line))
        return found


def worker_pids(master: int) -> set[int]:
    """The live worker processes of a server's master: its children, without multiprocessing's resource
    tracker (uvicorn's spawned workers start one) and without zombies."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[1]) == master and b"resource_tracker" not in cmdline:
            found.add(int(entry.name))
    return found


class Hammer:
    """Calls ``call`` over and over from ``threads`` threads while the ``with`` block runs (a reload, a
    failover), keeping every answer and every exception: the block's effect on requests in flight."""

    def __init__(self, call: Callable[[], int], threads: int = 1) -> None:
        self.call = call
        self.answered: list[int] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.answered.append(self.call())
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


#: Routes of the hostile-framing tests: each framing must be decided on the route the upstream receives.
INTEGRITY_ROUTES = """
[[route]]
name = "admin"
path = "/admin/*"
scopes = ["admin"]
[[route]]
name = "mtls"
path = "/mtls/*"
binding = "mtls"
[[route]]
name = "dpop"
path = "/dpop/*"
binding = "dpop"
[[route]]
name = "catch-all"
path = "*"
binding = "any"
"""
