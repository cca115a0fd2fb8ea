"""End-to-end benchmark: wrk through nginx ``auth_request``, every stack measured in one run.

Stacks (all behind the same nginx config, 2 app workers, upstream keep-alive):
  (1a) naive:  an empty Flask view under gunicorn sync            -- the usual auth_request target
  (1b) empty:  an empty /auth served exactly as tokenguard serves it (same gunicorn settings,
               same WSGI dispatch in front of Flask), doing no verification
  (2)  tokenguard, DPoP-bound JWT access token, a fresh proof per request, with the embedded
       replay store and with Redis
Proofs are generated before each timed run (wrk's Lua script reads them from a file). Prints req/s,
p50/p99 latency, CPU µs per request of the app and of nginx, and the ratios (2)/(1b) and (2)/(1a).

Usage: python scripts/bench_e2e.py [--duration 10] [--conns 16]   (needs nginx, wrk; redis-server optional)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts" / "bench"))
from serving import parse_wrk, tree_cpu, wait_http  # noqa: E402  (the serving-layer benchmark's helpers)

NGINX = """
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/cbt; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
    uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
    keepalive_requests 1000000;
    upstream verifier {{ server 127.0.0.1:{app}; keepalive 32; }}
    upstream protected {{ server 127.0.0.1:{static}; keepalive 32; }}
    server {{ listen 127.0.0.1:{static}; location / {{ return 200 "ok"; }} }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_request /_auth;
            proxy_pass http://protected;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_auth {{
            internal;
            proxy_pass http://verifier/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-Method $request_method;
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Forwarded-Port $server_port;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

WRK_LUA = """
local proofs, n, token = {}, 0, nil
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tid", count - 1)
end
function init(args)
  local threads = tonumber(args[3])
  local i = 0
  for line in io.lines(args[1]) do
    if i % threads == tid then table.insert(proofs, line) end
    i = i + 1
  end
  token = io.open(args[2]):read("*l")
end
function request()
  n = n + 1
  local proof = proofs[n] or proofs[#proofs]  -- past the end: replays, which show up as non-2xx
  return wrk.format("GET", "/resource?x=1", {["Authorization"] = "DPoP " .. token, ["DPoP"] = proof})
end
"""

NAIVE_APP = """
import flask
app = flask.Flask(__name__)

@app.route("/", defaults={"path": ""})
@app.route("/<path:path>")
def view(path):
    return "", 200
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stub:
    """The issuer: RFC 8414 metadata and a JWKS, served in-process."""

    def __init__(self) -> None:
        from joserfc import jwk

        self.key = jwk.generate_key("RSA", 2048, parameters={"kid": "bench-1"}, private=True)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = ({"issuer": stub.issuer, "jwks_uri": stub.issuer + "/jwks"} if "well-known" in self.path
                        else {"keys": [stub.key.as_dict(private=False)]})
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, jkt: str, audience: str) -> str:
        from joserfc import jwt

        now = int(time.time())
        return jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "bench-1"},
                          {"iss": self.issuer, "aud": audience, "sub": "bench", "client_id": "bench", "iat": now,
                           "exp": now + 3600, "jti": "bench", "scope": "read", "cnf": {"jkt": jkt}}, self.key)


def start(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})}, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def run_wrk(url: str, args: argparse.Namespace, app: subprocess.Popen[bytes], nginx_pid: int,
            script: Path | None = None, script_args: list[str] | None = None) -> dict[str, float]:
    before_app, before_nginx = tree_cpu(app.pid), tree_cpu(nginx_pid)
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{args.duration}s", "--latency"]
    if script:
        cmd += ["-s", str(script)]
    cmd += [url]
    if script_args:
        cmd += ["--", *script_args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    result = parse_wrk(out)
    requests = max(result["requests"], 1)
    result["app_cpu_us"] = (tree_cpu(app.pid) - before_app) / requests * 1e6
    result["nginx_cpu_us"] = (tree_cpu(nginx_pid) - before_nginx) / requests * 1e6
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"bench-e2e needs {tool} on PATH (apt-get install nginx wrk)", file=sys.stderr)
            return 2
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-e2e-"))
    for sub in ("cbt", "pt", "ft", "ut", "st"):
        (tmp / sub).mkdir()
    port, static, app_port = free_port(), free_port(), free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, user=user, port=port, static=static, app=app_port))
    subprocess.run(["nginx", "-c", str(tmp / "nginx.conf")], check=True)
    nginx_pid = int((tmp / "nginx.pid").read_text())
    base = f"http://127.0.0.1:{port}"
    stub = Stub()
    redis = None
    results: dict[str, dict[str, float]] = {}
    try:
        (tmp / "naive_app.py").write_text(NAIVE_APP)
        stacks: list[tuple[str, list[str], dict[str, str]]] = [
            ("(1a) naive: gunicorn sync + empty Flask view",
             [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{app_port}",
              "--chdir", str(tmp), "naive_app:app"], {}),
            ("(1b) empty /auth, tokenguard's serving layer",
             [sys.executable, str(ROOT / "scripts" / "bench" / "empty_auth.py"), "--listen", f"127.0.0.1:{app_port}"],
             {}),
        ]
        stores = [("embedded", "embedded")]
        if shutil.which("redis-server"):
            redis_port = free_port()
            redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, start_new_session=True)
            stores.append(("redis", f"redis://127.0.0.1:{redis_port}/0"))
        for name, store in stores:
            config = tmp / f"tokenguard-{name}.toml"
            config.write_text(
                f'[server]\nlisten = "127.0.0.1:{app_port}"\nstate_dir = "{tmp}/state-{name}"\nlog_decisions = false\n'
                f'[token]\naudience = "https://api.bench"\n[[issuer]]\nissuer = "{stub.issuer}"\n'
                f'[replay]\nstore = "{store}"\n[[route]]\npath = "/resource"\nbinding = "dpop"\nscopes = ["read"]\n')
            stacks.append((f"(2) tokenguard, DPoP, fresh proof, {name} store",
                           [sys.executable, "-m", "tokenguard", "serve", "--config", str(config)], {}))
        for label, cmd, env in stacks:
            app = start(cmd, tmp / "app.log", env)
            try:
                if not wait_http(f"http://127.0.0.1:{app_port}/healthz", 30) and not wait_http(
                        f"http://127.0.0.1:{app_port}/", 5):
                    print(f"{label}: did not start; log:\n{(tmp / 'app.log').read_text()[-2000:]}", file=sys.stderr)
                    return 1
                if label.startswith("(2"):
                    results[label] = bench_tokenguard(args, base, app, nginx_pid, stub, tmp)
                else:
                    run_wrk(base + "/resource", argparse.Namespace(**{**vars(args), "duration": 2}), app, nginx_pid)
                    results[label] = run_wrk(base + "/resource", args, app, nginx_pid)
            finally:
                stop(app)
        report(results)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
    finally:
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-s", "quit"], check=False)
        if redis:
            redis.terminate()
        stub.server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def bench_tokenguard(args: argparse.Namespace, base: str, app: subprocess.Popen[bytes], nginx_pid: int,
                     stub: Stub, tmp: Path) -> dict[str, float]:
    from joserfc import jwk

    from tokenguard.core.dpop import create_proof

    key = jwk.generate_key("EC", "P-256", private=True)
    private = key.as_dict(private=True)
    token = stub.token(key.thumbprint(), "https://api.bench")
    (tmp / "token.txt").write_text(token + "\n")
    (tmp / "bench.lua").write_text(WRK_LUA)
    htu = base + "/resource"

    def proofs(n: int) -> Path:
        path = tmp / "proofs.txt"
        path.write_text("\n".join(create_proof(private, htm="GET", htu=htu, access_token=token) for _ in range(n)))
        return path

    warm = proofs(2000)  # first JWKS fetch, token cache, connections
    run_wrk(base + "/resource", argparse.Namespace(**{**vars(args), "duration": 2}), app, nginx_pid,
            tmp / "bench.lua", [str(warm), str(tmp / "token.txt"), str(args.threads)])
    path = proofs(args.duration * 4000)  # more than this box can verify in the run: no replays
    result = run_wrk(base + "/resource", args, app, nginx_pid, tmp / "bench.lua",
                     [str(path), str(tmp / "token.txt"), str(args.threads)])
    if result["non2xx"]:
        print(f"warning: {result['non2xx']} non-2xx answers (proofs exhausted or expired?)", file=sys.stderr)
    return result


def report(results: dict[str, dict[str, float]]) -> None:
    print(f"\n{'stack':56} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'app µs':>7} {'nginx µs':>8} {'non2xx':>6}")
    for label, r in results.items():
        print(f"{label:56} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['app_cpu_us']:7.0f} "
              f"{r['nginx_cpu_us']:8.0f} {r['non2xx']:6.0f}")
    naive = next((r for k, r in results.items() if k.startswith("(1a)")), None)
    empty = next((r for k, r in results.items() if k.startswith("(1b)")), None)
    for label, r in results.items():
        if label.startswith("(2") and naive and empty:
            print(f"{label}: (2)/(1b) = {r['rps'] / empty['rps']:.2f}  (target >= 0.75);  "
                  f"(2)/(1a) = {r['rps'] / naive['rps']:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
