#!/usr/bin/env python3
"""Peer row for tokenguard's end-to-end benchmark: panva/oidc-provider's DPoP-checked userinfo endpoint.

The same machine, the same nginx settings as scripts/bench_e2e.py (1 nginx worker, upstream keep-alive,
HTTP/1.1), and the same load shape: wrk -t2 with a fresh, pre-generated ES256 DPoP proof per request.

For each provider layout (1 node process with an in-process store; node:cluster with 2 workers sharing a
Redis store, because a replay check must see every worker's jtis -- as tokenguard's 2 workers share theirs)
and each connection count, it
  1. starts oidc-provider (server.mjs) behind nginx, runs a real authorization_code + PKCE flow (auto-login
     interaction) and redeems the code at /token with a DPoP proof -> a DPoP-bound (jkt) opaque access token
     with the openid scope,
  2. checks that /me accepts a good proof and rejects a replayed proof, a wrong ath, a wrong htu, a wrong
     htm, a proof by another key, a stale iat and a Bearer use of the token (refuses to go on otherwise),
  3. warms up for 2 s, sizes the proof set from the warm-up rate (x duration x margin), generates the proofs
     right before the timed run (the provider accepts iat within +-300 s), and runs wrk through nginx with
     a Lua script that sends each proof once,
  4. reports req/s, p50/p99, node / nginx / redis CPU µs per request, and refuses the row (exit 1) if any
     response was not 2xx, a socket error occurred, or the proofs ran out.

Usage: python bench_peer.py [--duration 10] [--conns 16,64] [--layouts 1:memory,2:redis] [--mode proxy]
Needs: node >= 20 + npm (installs the pinned oidc-provider into the node dir on first use), nginx, wrk,
redis-server (for the redis layouts), Python with `cryptography`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

try:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
except ImportError:  # pragma: no cover
    sys.exit("needs the `cryptography` package (pip install cryptography, or run from the project's venv)")

HERE = Path(__file__).resolve().parent
CLIENT_ID, CLIENT_SECRET = "bench-client", "bench-secret-" + secrets.token_urlsafe(8)
REDIRECT_URI = "https://client.invalid/cb"  # never fetched: the flow stops at the redirect to it
IAT_WINDOW = 300  # oidc-provider lib/helpers/challenge.js CHALLENGE_OK_WINDOW (5 x 60 s)

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
    upstream oidc {{ server 127.0.0.1:{node}; keepalive 32; keepalive_requests 1000000; }}
    upstream protected {{ server 127.0.0.1:{static}; keepalive 32; }}
    server {{ listen 127.0.0.1:{static}; location / {{ return 200 "ok"; }} }}
    server {{
        listen 127.0.0.1:{port};
        # the provider derives htu from Host + X-Forwarded-Proto (provider.proxy = true)
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host:$server_port;
        proxy_set_header X-Forwarded-Proto $scheme;
        location / {{ proxy_pass http://oidc; }}
    }}
    # --mode auth_request: the provider's userinfo as the auth_request target of a protected /me, in
    # tokenguard's topology (subrequest to the verifier, then a static 200 upstream)
    server {{
        listen 127.0.0.1:{port_ar};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host:$server_port;
        proxy_set_header X-Forwarded-Proto $scheme;
        location = /me {{
            auth_request /_auth;
            proxy_pass http://protected;
        }}
        location = /_auth {{
            internal;
            proxy_pass http://oidc/me;
            proxy_pass_request_body off;
            # proxy_set_header is inherited only by a level that sets none itself: repeat them all
            proxy_set_header Content-Length "";
            proxy_set_header Connection "";
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""

# One proof per request; proofs are dealt to the wrk threads round-robin. Counts non-2xx responses and
# requests sent after a thread's proofs ran out (those would be replays), and prints them in done().
WRK_LUA = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads - 1)
end
function init(args)
  proofs, n, bad, exhausted, first_bad = {}, 0, 0, 0, ""
  local nthreads = tonumber(args[3])
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then proofs[#proofs + 1] = line end
    i = i + 1
  end
  local f = io.open(args[2]); token = f:read("*l"); f:close()
  path, host = args[4], args[5]
end
function request()
  n = n + 1
  local proof = proofs[n]
  if proof == nil then exhausted = exhausted + 1; proof = proofs[#proofs] end
  return wrk.format("GET", path, {["Host"] = host, ["Authorization"] = "DPoP " .. token, ["DPoP"] = proof})
end
function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_bad == "" then
      first_bad = status .. " " .. (headers["WWW-Authenticate"] or headers["www-authenticate"] or "")
    end
  end
end
function done(summary, latency, requests)
  local b, e, s, fb = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad"); e = e + t:get("exhausted"); s = s + t:get("n")
    if fb == "" then fb = t:get("first_bad") end
  end
  io.write(string.format("PEER bad=%d exhausted=%d sent=%d first_bad=%s\n", b, e, s, fb))
end
"""


# ----------------------------------------------------------------------------- small helpers

def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CLK = os.sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (utime+stime, all threads) of root and all its live descendants."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                rest = s[s.rindex(")") + 2:].split()
            except (OSError, ValueError):
                continue
            children.setdefault(int(rest[1]), []).append(int(d))
            cpu[int(d)] = int(rest[11]) + int(rest[12])
    tot, todo = 0, [root]
    while todo:
        p = todo.pop()
        tot += cpu.get(p, 0)
        todo.extend(children.get(p, []))
    return tot / CLK


def tree_threads(root: int) -> dict[str, float]:
    """CPU seconds per (pid, thread name) of root's process tree (for -v diagnostics)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    s = f.read()
                children.setdefault(int(s[s.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError):
                continue
    out: dict[str, float] = {}
    todo = [root]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/stat") as f:
                    s = f.read()
                name = s[s.index("(") + 1:s.rindex(")")]
                rest = s[s.rindex(")") + 2:].split()
                k = f"{p}/{name}"
                out[k] = out.get(k, 0.0) + (int(rest[11]) + int(rest[12])) / CLK
        except OSError:
            continue
    return out


UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(out: str) -> dict:
    r: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    r["requests"] = int(m.group(1)) if m else 0
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        r[f"p{p}"] = float(m.group(1)) * UNIT[m.group(2)] if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["wrk_non2xx3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    r["sockerr"] = m.group(1).strip() if m else ""
    m = re.search(r"PEER bad=(\d+) exhausted=(\d+) sent=(\d+) first_bad=(.*)", out)
    if m:
        r.update(non2xx=int(m.group(1)), exhausted=int(m.group(2)), sent=int(m.group(3)),
                 first_bad=m.group(4).strip())
    else:
        r.update(non2xx=-1, exhausted=-1, sent=-1, first_bad="wrk Lua summary missing")
    return r


# ----------------------------------------------------------------------------- DPoP

class DPoPKey:
    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        nums = self.key.public_key().public_numbers()
        self.jwk = {"kty": "EC", "crv": "P-256", "x": b64u(nums.x.to_bytes(32, "big")),
                    "y": b64u(nums.y.to_bytes(32, "big"))}
        canon = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        self.jkt = b64u(hashlib.sha256(canon.encode()).digest())
        self.header = b64u(json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk},
                                      separators=(",", ":")).encode())
        self.algo = ec.ECDSA(hashes.SHA256())

    def proof(self, htm: str, htu: str, token: str | None = None, iat: int | None = None, **extra) -> str:
        claims = {"jti": secrets.token_urlsafe(16), "htm": htm, "htu": htu,
                  "iat": int(time.time()) if iat is None else iat}
        if token is not None:
            claims["ath"] = b64u(hashlib.sha256(token.encode()).digest())
        claims.update(extra)
        signing_input = self.header + "." + b64u(json.dumps(claims, separators=(",", ":")).encode())
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), self.algo))
        return signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def write_proofs(key: DPoPKey, path: Path, n: int, htu: str, token: str) -> float:
    """n fresh proofs (unique jti, htm GET, htu, ath, iat now), one per line; returns the oldest iat."""
    ath = b64u(hashlib.sha256(token.encode()).digest())
    iat = int(time.time())
    prefix = key.header + "."
    body_pre = '{"htm":"GET","htu":' + json.dumps(htu) + ',"ath":"' + ath + '","iat":' + str(iat) + ',"jti":"'
    sign, algo = key.key.sign, key.algo
    lines = []
    for _ in range(n):
        signing_input = prefix + b64u((body_pre + secrets.token_urlsafe(16) + '"}').encode())
        r, s = decode_dss_signature(sign(signing_input.encode(), algo))
        lines.append(signing_input + "." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
    path.write_text("\n".join(lines) + "\n")
    return iat


# ----------------------------------------------------------------------------- HTTP (to nginx only)

class Client:
    """Minimal HTTP client bound to the local nginx front; keeps a flat cookie jar."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, headers: dict | None = None, body: str | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        hdrs = dict(headers or {})
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                k, _, v = value.split(";", 1)[0].partition("=")
                if v:
                    self.cookies[k.strip()] = v
                else:
                    self.cookies.pop(k.strip(), None)
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def obtain_token(cl: Client, key: DPoPKey) -> dict:
    """authorization_code + PKCE through nginx (auto-login/consent interaction), then /token with DPoP."""
    verifier = secrets.token_urlsafe(48)
    challenge = b64u(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(8)
    q = urllib.parse.urlencode({"client_id": CLIENT_ID, "response_type": "code", "scope": "openid",
                                "redirect_uri": REDIRECT_URI, "code_challenge": challenge,
                                "code_challenge_method": "S256", "state": state, "dpop_jkt": key.jkt})
    url = f"{cl.base}/auth?{q}"
    code = None
    for _ in range(12):
        u = urllib.parse.urlsplit(url)
        if url.startswith(REDIRECT_URI):
            params = dict(urllib.parse.parse_qsl(u.query))
            if "error" in params:
                raise RuntimeError(f"authorization error: {params}")
            assert params.get("state") == state, params
            code = params["code"]
            break
        if (u.hostname, u.port) != ("127.0.0.1", cl.port):
            raise RuntimeError(f"refusing to follow a redirect off the local front: {url}")
        status, hdrs, body = cl.request("GET", u.path + ("?" + u.query if u.query else ""))
        if status not in (302, 303) or "location" not in hdrs:
            text = re.sub(r"\s+", " ", re.sub(r"(?s)<style.*?</style>|<[^>]+>", " ", body.decode(errors="replace")))
            raise RuntimeError(f"authorization flow stuck at {u.path}: {status} {text.strip()[:400]}")
        url = urllib.parse.urljoin(url, hdrs["location"])
    if not code:
        raise RuntimeError("no authorization code")
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    status, _, body = cl.request(
        "POST", "/token",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {basic}",
                 "DPoP": key.proof("POST", f"{cl.base}/token")},
        body=urllib.parse.urlencode({"grant_type": "authorization_code", "code": code,
                                     "redirect_uri": REDIRECT_URI, "code_verifier": verifier}))
    tok = json.loads(body)
    if status != 200 or tok.get("token_type") != "DPoP":
        raise RuntimeError(f"token endpoint: {status} {tok}")
    return tok


def sanity(cl: Client, key: DPoPKey, token: str, path: str) -> list[tuple[str, bool, str]]:
    """Each DPoP check the provider must make on the benchmarked path, as (name, passed, detail)."""
    htu = cl.base + path

    def call(proof: str | None, scheme: str = "DPoP", method: str = "GET"):
        hdrs = {"Authorization": f"{scheme} {token}"}
        if proof is not None:
            hdrs["DPoP"] = proof
        status, h, body = cl.request(method, path, headers=hdrs)
        return status, (h.get("www-authenticate") or body[:120].decode(errors="replace"))

    other = DPoPKey()
    good = key.proof("GET", htu, token)
    out = []
    st, d = call(good)
    out.append(("fresh proof accepted", st == 200, f"{st} {d}"))
    for _ in range(3):  # repeat: in the 2-worker layout the replay may reach the other worker
        st, d = call(good)
        out.append(("replayed proof rejected", st == 401, f"{st} {d}"))
    cases = [
        ("wrong ath rejected", key.proof("GET", htu, token + "x")),
        ("missing ath rejected", key.proof("GET", htu)),
        ("wrong htu rejected", key.proof("GET", cl.base + "/other", token)),
        ("wrong htm rejected", key.proof("POST", htu, token)),
        ("stale iat rejected", key.proof("GET", htu, token, iat=int(time.time()) - IAT_WINDOW - 60)),
        ("other key (jkt mismatch) rejected", other.proof("GET", htu, token)),
        ("bad signature rejected", key.proof("GET", htu, token)[:-4] + "AAAA"),
    ]
    for name, proof in cases:
        st, d = call(proof)
        out.append((name, st == 401, f"{st} {d}"))
    st, d = call(None, scheme="Bearer")
    out.append(("Bearer use of the DPoP token rejected", st == 401, f"{st} {d}"))
    st, d = call(None)
    # 400 invalid_request; nginx turns a 400 from an auth_request subrequest into 500
    out.append(("DPoP scheme without proof rejected", not 200 <= st < 300, f"{st} {d}"))
    return out


# ----------------------------------------------------------------------------- processes

def start(cmd: list[str], log: Path, env: dict | None = None, cwd: Path | None = None) -> subprocess.Popen:
    with open(log, "ab") as handle:
        return subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **(env or {})}, cwd=cwd)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not up after {timeout}s:\n{log.read_text()[-2000:]}")


def ensure_tools(tools: dict[str, str], no_install: bool) -> bool:
    """apt-get install the missing tools (as root, waiting out a dpkg lock held by another job)."""
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
    if not missing:
        return True
    if no_install or os.geteuid() != 0 or not shutil.which("apt-get"):
        print(f"needs {', '.join(missing)} (apt-get install -y {' '.join(missing)})", file=sys.stderr)
        return False
    print(f"apt-get install -y {' '.join(missing)}", file=sys.stderr)
    for _attempt in range(30):
        ok = subprocess.run(["apt-get", "update"], stdout=sys.stderr).returncode == 0 and subprocess.run(
            ["apt-get", "install", "-y", *missing], stdout=sys.stderr,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}).returncode == 0
        if ok:
            break
        print("apt-get failed (dpkg lock held by another job?); retrying in 10 s", file=sys.stderr)
        time.sleep(10)
    # the Debian nginx package starts a system nginx on :80; this benchmark runs its own instance
    return all(shutil.which(tool) for tool in tools)


def ensure_node_modules(node_dir: Path) -> None:
    if (node_dir / "node_modules" / "oidc-provider" / "package.json").exists():
        return
    cmd = ["npm", "ci" if (node_dir / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
    print(f"installing the peer's node packages: {' '.join(cmd)} (in {node_dir})", file=sys.stderr)
    subprocess.run(cmd, cwd=node_dir, check=True, stdout=sys.stderr)


def versions(node_dir: Path) -> dict:
    v = {"node": subprocess.run(["node", "-v"], capture_output=True, text=True).stdout.strip()}
    for pkg in ("oidc-provider", "ioredis"):
        try:
            v[pkg] = json.loads((node_dir / "node_modules" / pkg / "package.json").read_text())["version"]
        except OSError:
            v[pkg] = "?"
    v["nginx"] = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    m = re.search(r"wrk (\S+)", subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout)
    v["wrk"] = m.group(1) if m else "?"
    if shutil.which("redis-server"):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        m = re.search(r"v=(\S+)", out)
        v["redis"] = m.group(1) if m else "?"
    return v


# ----------------------------------------------------------------------------- one layout

def run_wrk(args, tmp: Path, port: int, path: str, duration: int, conns: int, proofs: Path, token_file: Path,
            pids: dict[str, int]) -> dict:
    before = {k: tree_cpu(p) for k, p in pids.items()}
    threads0 = tree_threads(pids["node"]) if args.verbose else {}
    cmd = ["wrk", f"-t{args.threads}", f"-c{conns}", f"-d{duration}s", "--latency", "-s", str(tmp / "peer.lua"),
           f"http://127.0.0.1:{port}{path}", "--", str(proofs), str(token_file), str(args.threads), path,
           f"127.0.0.1:{port}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120).stdout
    r = parse_wrk(out)
    n = max(r["requests"], 1)
    for k, p in pids.items():
        r[f"{k}_cpu_us"] = (tree_cpu(p) - before[k]) / n * 1e6
    if args.verbose:
        t1 = tree_threads(pids["node"])
        per = sorted(((v - threads0.get(k, 0.0)) / n * 1e6, k) for k, v in t1.items())[::-1]
        out += "node threads, CPU µs/request: " + ", ".join(f"{k} {v:.0f}" for v, k in per if v >= 1) + "\n"
    r["raw"] = out
    return r


def timed_row(args, tmp: Path, key: DPoPKey, token: str, token_file: Path, port: int, path: str, htu: str,
              conns: int, rate: float, pids: dict[str, int]) -> tuple[dict, float]:
    """One timed wrk run with a proof set sized from `rate`; regenerates a bigger set if it ran out."""
    for _attempt in range(3):
        n = max(args.min_proofs, math.ceil(rate * args.duration * args.margin) + 2000)
        t0 = time.time()
        iat = write_proofs(key, tmp / "proofs.txt", n, htu, token)
        gen = time.time() - t0
        if gen + args.duration + 15 > IAT_WINDOW:
            raise RuntimeError(f"proof generation took {gen:.0f}s: the proofs would outlive the "
                               f"{IAT_WINDOW}s iat window; shorten --duration")
        r = run_wrk(args, tmp, port, path, args.duration, conns, tmp / "proofs.txt", token_file, pids)
        r.update(conns=conns, proofs=n, proof_gen_s=round(gen, 2), proof_age_end_s=round(time.time() - iat, 1),
                 mode=args.mode)
        if r["exhausted"] <= 0:
            break
        print(f"   c{conns}: proofs ran out ({r['exhausted']} requests past the end of {n}); regenerating more")
        rate = max(rate, r["rps"]) * 1.5
    r["valid"] = row_valid(r)
    return r, rate


def row_valid(r: dict) -> bool:
    """A row counts only if every answer was 2xx, no socket error occurred and no proof was sent twice."""
    return (r["non2xx"] == 0 and r["exhausted"] == 0 and r["wrk_non2xx3xx"] == 0
            and not r["sockerr"] and r["requests"] > 0)



def bench_layout(args, tmp: Path, node_dir: Path, workers: int, adapter: str, redis_url: str | None,
                 redis_pid: int | None, nginx_pid: int, port: int, bench_port: int, node_port: int) -> list[dict]:
    log = tmp / f"node-{workers}-{adapter}.log"
    env = {"PORT": str(node_port), "ISSUER": f"http://127.0.0.1:{port}", "WORKERS": str(workers),
           "ADAPTER": adapter, "CLIENT_SECRET": CLIENT_SECRET, "NODE_ENV": "production"}
    if redis_url:
        env["REDIS_URL"] = redis_url
        u = urllib.parse.urlsplit(redis_url)
        with socket.create_connection((u.hostname, u.port), timeout=5) as sock:  # fresh store per layout
            sock.sendall(b"FLUSHALL\r\n")
            assert sock.recv(64).startswith(b"+OK"), "redis FLUSHALL failed"
    node_args = os.environ.get("PEER_NODE_ARGS", "").split()  # e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"
    node = start(["node", *node_args, "server.mjs"], log, env=env, cwd=node_dir)
    rows = []
    try:
        wait_port(node_port, node, log)
        time.sleep(0.5 if workers == 1 else 1.5)  # let every cluster worker listen
        cl = Client(port)
        key = DPoPKey()
        tok = obtain_token(cl, key)
        token = tok["access_token"]
        path = "/me"
        port = bench_port  # proxy mode: the same front as the flow; auth_request mode: the auth_request front
        cl = Client(port)
        checks = sanity(cl, key, token, path)
        failed = [c for c in checks if not c[1]]
        label = f"oidc-provider x{workers} ({'in-process store' if adapter == 'memory' else 'shared Redis store'})"
        print(f"\n== {label}: token_type={tok['token_type']} scope={tok.get('scope')} "
              f"expires_in={tok.get('expires_in')}; {len(checks) - len(failed)}/{len(checks)} DPoP checks ok")
        for name, ok, detail in checks:
            if not ok or args.verbose:
                print(f"   {'ok ' if ok else 'FAIL'} {name}: {detail}")
        if failed:
            raise RuntimeError(f"{label}: DPoP sanity checks failed; refusing to benchmark")
        token_file = tmp / "token.txt"
        token_file.write_text(token + "\n")
        pids = {"node": node.pid, "nginx": nginx_pid}
        if redis_pid:
            pids["redis"] = redis_pid
        htu = cl.base + path
        for conns in args.conns:
            # warm-up (also the rate estimate that sizes the proof set)
            wu = max(2, args.warmup)
            est_n = max(args.min_proofs // 4, 4000 * wu)
            write_proofs(key, tmp / "proofs.txt", est_n, htu, token)
            w = run_wrk(args, tmp, port, path, wu, conns, tmp / "proofs.txt", token_file, pids)
            rate = max(w["rps"], 1.0)
            if w["non2xx"] != 0 or w["exhausted"] != 0:
                print(f"   warm-up c{conns}: rps={w['rps']:.0f} non2xx={w['non2xx']} exhausted={w['exhausted']} "
                      f"(warm-up only; first non-2xx: {w['first_bad']})")
            for run in range(args.runs):
                r, rate = timed_row(args, tmp, key, token, token_file, port, path, htu, conns, rate, pids)
                r.update(label=label, workers=workers, adapter=adapter, run=run + 1)
                if args.verbose or not r["valid"]:
                    print(r["raw"])
                print(f"   c{conns} run {run + 1}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, node "
                      f"{r['node_cpu_us']:.0f} µs/req, non2xx {r['non2xx']}, proofs {r['sent']}/{r['proofs']}")
                rows.append(r)
    finally:
        stop(node)
    return rows


# ----------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="wrk -d seconds per row")
    ap.add_argument("--conns", default="16,64", help="wrk -c values, comma separated")
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--layouts", default="1:memory,2:redis",
                    help="WORKERS:STORE list; STORE memory (1 process only) or redis, e.g. 1:memory,1:redis,2:redis")
    ap.add_argument("--mode", choices=("proxy", "auth_request"), default="proxy",
                    help="proxy: wrk -> nginx proxy_pass -> /me; auth_request: nginx auth_request to /me, "
                         "then a static 200 upstream (tokenguard's topology)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--margin", type=float, default=1.6, help="proofs = warm-up rate x duration x margin")
    ap.add_argument("--min-proofs", type=int, default=60000)
    ap.add_argument("--runs", type=int, default=1, help="timed runs per row (the summary keeps the fastest)")
    ap.add_argument("--node-dir", type=Path, default=None,
                    help="directory with package.json + server.mjs (default: next to this script)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, nginx.conf)")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install missing nginx/wrk/redis")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    args.conns = [int(c) for c in args.conns.split(",")]
    layouts = []
    for item in args.layouts.split(","):
        w, _, store = item.partition(":")
        layouts.append((int(w), store or "memory"))
    node_dir = args.node_dir
    if node_dir is None:
        sibling = HERE / Path(__file__).stem
        node_dir = sibling if (sibling / "server.mjs").exists() else HERE
    tools = {"nginx": "nginx", "wrk": "wrk"}
    if any(s == "redis" for _, s in layouts):
        tools["redis-server"] = "redis-server"
    if not ensure_tools(tools, args.no_install):
        return 2
    for tool in ("node", "npm"):
        if not shutil.which(tool):
            print(f"needs {tool} on PATH (node >= 20 with npm)", file=sys.stderr)
            return 2
    ensure_node_modules(node_dir)
    ver = versions(node_dir)

    tmp = Path(tempfile.mkdtemp(prefix="peer-oidc-provider-"))
    for sub in ("cbt", "pt", "ft", "ut", "st"):
        (tmp / sub).mkdir()
    (tmp / "peer.lua").write_text(WRK_LUA)
    port, port_ar, static, node_port = free_port(), free_port(), free_port(), free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, user=user, port=port, port_ar=port_ar, static=static,
                                                     node=node_port))
    redis = None
    rows: list[dict] = []
    nginx_pid = None
    try:
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], check=True)
        nginx_pid = int((tmp / "nginx.pid").read_text())
        redis_url = redis_pid = None
        if any(s == "redis" for _, s in layouts):
            rport = free_port()
            redis = start(["redis-server", "--bind", "127.0.0.1", "--port", str(rport), "--save", "",
                           "--appendonly", "no", "--dir", str(tmp)], tmp / "redis.log")
            wait_port(rport, redis, tmp / "redis.log")
            redis_url, redis_pid = f"redis://127.0.0.1:{rport}", redis.pid
        load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"versions: {json.dumps(ver)}; {os.cpu_count()} cpus; load average {load0}; mode {args.mode}; "
              f"wrk -t{args.threads} -d{args.duration}s -c{args.conns}")
        for workers, store in layouts:
            if store not in ("memory", "redis"):
                raise SystemExit(f"unknown store {store!r}")
            if workers > 1 and store == "memory":
                raise SystemExit("a multi-process layout needs the shared store (redis)")
            rows += bench_layout(args, tmp, node_dir, workers, store, redis_url if store == "redis" else None,
                                 redis_pid if store == "redis" else None, nginx_pid, port,
                                 port if args.mode == "proxy" else port_ar, node_port)
    finally:
        stop(redis)
        if nginx_pid:
            subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-s", "quit"], check=False)
            for _ in range(50):
                if not Path(f"/proc/{nginx_pid}").exists():
                    break
                time.sleep(0.1)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}", file=sys.stderr)

    def table(title: str, rs: list[dict]) -> None:
        print(f"\n{title:52} {'conns':>5} {'run':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'node µs':>8} "
              f"{'nginx µs':>8} {'redis µs':>8} {'non2xx':>6} {'proofs used':>15} {'valid':>5}")
        for r in rs:
            redis_us = f"{r['redis_cpu_us']:8.0f}" if "redis_cpu_us" in r else f"{'-':>8}"
            print(f"{r['label']:52} {r['conns']:5d} {r['run']:3d} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
                  f"{r['node_cpu_us']:8.0f} {r['nginx_cpu_us']:8.0f} {redis_us} {r['non2xx']:6d} "
                  f"{str(r['sent']) + '/' + str(r['proofs']):>15} {'yes' if r['valid'] else 'NO':>5}")

    table(f"peer: DPoP-checked userinfo via nginx ({args.mode})", rows)
    if args.runs > 1:
        best: dict = {}
        for r in rows:
            k = (r["label"], r["conns"])
            if r["valid"] and (k not in best or r["rps"] > best[k]["rps"]):
                best[k] = r
        table("fastest valid run of each row", list(best.values()))
    print(f"load average before/after: {load0} / {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"(other processes on the 2 cores make req/s noisy; CPU µs/request is steadier)")
    if args.json:
        clean = [{k: v for k, v in r.items() if k != "raw"} for r in rows]
        args.json.write_text(json.dumps({"versions": ver, "load_before": load0, "rows": clean}, indent=2))
    invalid = [r for r in rows if not r["valid"]]
    if invalid:
        print(f"\nREFUSED: {len(invalid)} row(s) had non-2xx responses, socket errors or ran out of proofs "
              f"(first non-2xx: {invalid[0]['first_bad']})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
