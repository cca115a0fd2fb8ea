"""End-to-end benchmark: wrk through nginx ``auth_request``, every row measured in one run.

Rows (behind the same nginx config, 2 app workers, upstream keep-alive; each at every ``--conns``):
  (1a) naive:    an empty Flask view under gunicorn sync -- the usual auth_request target
  (1b) empty:    an empty /auth on the engine actually used, served exactly as tokenguard serves it
  ceiling:       a bare callable on the same engine that does one cached-key ES256 verify of the same
                 proofs and answers 200 -- the least a DPoP verifier on this engine can cost
  (2)            tokenguard (``tokenguard serve``, default config: decision log on), a DPoP-bound JWT
                 access token with a fresh proof per request, with the embedded replay store and Redis
  peer           panva's node-oidc-provider, DPoP-checked userinfo through the same nginx settings
                 (scripts/bench/peer_oidc_provider.py; when node and npm are installed)

All apps run at once, each behind its own (identical) nginx front, and per connection count the rows take
turns in short blocks (``--block`` seconds, the order rotating), so that the load of anything else on the
machine hits every row alike: the ratios are taken over the same moments. Proofs are sized from the
row's rate (rate x block x 1.6) and generated right before each block;
wrk's Lua script sends each proof once and counts non-2xx answers and proofs that ran out. A row with any
non-2xx answer, socket error or exhausted proof set is REFUSED: printed with wrk's output, left out of
every ratio, and the exit status is 1. Reports req/s, p50/p99, app and nginx CPU µs per request and, per
connection count, (2)/(1a), (2)/(1b), (2)/ceiling, (2)/peer and p99 (2) / p99 (1b); with ``--runs N``
the ranges over the runs.

Usage: python scripts/bench_e2e.py [--duration 10] [--conns 16,64] [--runs 1] [--engine uvicorn]
       [--no-peer] [--json FILE]      (needs nginx, wrk; redis-server and node/npm optional)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench"
sys.path.insert(0, str(BENCH))
# The peer benchmark's wrk and proof machinery: both sides are measured by the same code.
import peer_oidc_provider as peer  # noqa: E402

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
    upstream protected {{ server 127.0.0.1:{static}; keepalive 32; }}
    server {{ listen 127.0.0.1:{static}; location / {{ return 200 "ok"; }} }}
{rows}
}}
"""
#: One front per row, all alike: auth_request to that row's app, then the static upstream.
NGINX_ROW = """
    upstream verifier{n} {{ server 127.0.0.1:{app}; keepalive 32; }}
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
            proxy_pass http://verifier{n}/auth;
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
"""

NAIVE_APP = """
import flask
app = flask.Flask(__name__)

@app.route("/", defaults={"path": ""})
@app.route("/<path:path>")
def view(path):
    return "", 200
"""
PATH = "/resource"
AUDIENCE = "https://api.bench"


class Stub:
    """The issuer: RFC 8414 metadata and a JWKS, served in-process; mints the RS256 access token."""

    def __init__(self) -> None:
        from joserfc import jwk

        self.key = jwk.generate_key("RSA", 2048, parameters={"kid": "bench-1"}, private=True)
        self.port = peer.free_port()
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

    def token(self, jkt: str) -> str:
        from joserfc import jwt

        now = int(time.time())
        return jwt.encode({"typ": "at+jwt", "alg": "RS256", "kid": "bench-1"},
                          {"iss": self.issuer, "aud": AUDIENCE, "sub": "bench", "client_id": "bench", "iat": now,
                           "exp": now + 3600, "jti": "bench", "scope": "read", "cnf": {"jkt": jkt}}, self.key)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError as exc:
            if getattr(exc, "code", None):  # any HTTP answer: the server is up
                return True
            time.sleep(0.2)
    return False


def wait_serving(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> bool:
    """``/readyz`` answers 200: keys loaded and the replay store past a new store's guard (a brand-new
    store refuses proofs issued in its first iat_future seconds, which would make the row's first block
    all non-2xx)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def start_app(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return peer.start(cmd, log, env={"PYTHONPATH": str(BENCH), **(env or {})}, cwd=ROOT)


def tokenguard_config(tmp: Path, name: str, port: int, issuer: str, store: str, engine: str) -> Path:
    """The default config but for the listen address, the issuer and one DPoP route with a scope check."""
    config = tmp / f"tokenguard-{name}.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\nengine = "{engine}"\nstate_dir = "{tmp}/state-{name}"\n'
        f'[token]\naudience = "{AUDIENCE}"\n[[issuer]]\nissuer = "{issuer}"\n'
        f'[replay]\nstore = "{store}"\n[[route]]\npath = "{PATH}"\nbinding = "dpop"\nscopes = ["read"]\n')
    return config


@dataclass
class Row:
    """One stack under test: its app (on its own port) behind its own nginx front."""

    label: str
    cmd: list[str]
    proofs: bool
    app_port: int = field(default_factory=peer.free_port)
    port: int = field(default_factory=peer.free_port)
    extra_pids: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    rate: float = 1.0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def plain_block(args: argparse.Namespace, row: Row, duration: int, conns: int,
                pids: dict[str, int]) -> dict[str, Any]:
    """wrk against an empty-answer row (no proofs)."""
    before = {k: peer.tree_cpu(p) for k, p in pids.items()}
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{conns}", f"-d{duration}s", "--latency",
                          row.base + PATH + "?x=1"], capture_output=True, text=True, timeout=duration + 120).stdout
    r = peer.parse_wrk(out)
    n = max(r["requests"], 1)
    for k, p in pids.items():
        r[f"{k}_cpu_us"] = (peer.tree_cpu(p) - before[k]) / n * 1e6
    r.update(raw=out, non2xx=r["wrk_non2xx3xx"], exhausted=0, sent=r["requests"], proofs=0)
    r["valid"] = peer.row_valid(r)
    return r


def block(args: argparse.Namespace, tmp: Path, row: Row, duration: int, conns: int, pids: dict[str, int],
          key: peer.DPoPKey, token: str) -> dict[str, Any]:
    """One timed block of a row; a proof row gets proofs sized from its last rate, generated right before."""
    if not row.proofs:
        return plain_block(args, row, duration, conns, pids)
    token_file = tmp / "token.txt"
    token_file.write_text(token + "\n")
    timing = argparse.Namespace(**{**vars(args), "duration": duration})
    r, _ = peer.timed_row(timing, tmp, key, token, token_file, row.port, PATH, row.base + PATH, conns, row.rate, pids)
    return r


def combine(blocks: list[dict[str, Any]], pids: dict[str, int]) -> dict[str, Any]:
    """A row from its blocks: totals for counts and CPU, the worst block's p99, the median block's p50."""
    requests = sum(b["requests"] for b in blocks)
    seconds = sum(b["requests"] / b["rps"] for b in blocks if b["rps"])
    r: dict[str, Any] = {"requests": requests, "rps": requests / seconds if seconds else 0.0,
                         "p50": statistics.median(b["p50"] for b in blocks), "p99": max(b["p99"] for b in blocks),
                         "valid": all(b["valid"] for b in blocks), "blocks": len(blocks),
                         "p99_blocks": [b["p99"] for b in blocks], "rps_blocks": [round(b["rps"]) for b in blocks],
                         "raw": "\n".join(b["raw"] for b in blocks if not b["valid"])}
    for k in ("non2xx", "exhausted", "sent", "proofs", "wrk_non2xx3xx"):
        r[k] = sum(b.get(k, 0) for b in blocks)
    for k in pids:
        r[f"{k}_cpu_us"] = sum(b[f"{k}_cpu_us"] * b["requests"] for b in blocks) / max(requests, 1)
    return r


def run_once(args: argparse.Namespace, tmp: Path, run: int) -> list[dict[str, Any]]:
    """Every row's app up at once, each behind its own nginx front; then, per connection count, the rows
    take turns in short blocks (the order rotating), so that the machine's changing load hits them alike."""
    static = peer.free_port()
    user = "user root root;" if os.geteuid() == 0 else ""
    stub = Stub()
    key = peer.DPoPKey()
    token = stub.token(key.jkt)
    redis = None
    engine = args.engine
    bench = [sys.executable, str(BENCH / "baseline_apps.py")]
    rows = [Row("(1a) naive: gunicorn sync + empty Flask view", [], False),
            Row(f"(1b) empty /auth, tokenguard's serving layer ({engine})", [*bench, "empty", "--engine", engine],
                False),
            Row(f"ceiling: bare ES256 verify on {engine}", [*bench, "ceiling", "--engine", engine], True)]
    rows[0].cmd = [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{rows[0].app_port}",
                   "--chdir", str(tmp), "naive_app:app"]
    for row in rows[1:]:
        row.cmd += ["--listen", f"127.0.0.1:{row.app_port}"]
    stores: list[tuple[str, str, dict[str, int]]] = [("embedded", "embedded", {})]
    results: list[dict[str, Any]] = []
    try:
        if shutil.which("redis-server") and not args.no_redis:
            redis_port = peer.free_port()
            redis = peer.start(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                "--appendonly", "no", "--dir", str(tmp)], tmp / "redis.log")
            peer.wait_port(redis_port, redis, tmp / "redis.log")
            stores.append(("redis", f"redis://127.0.0.1:{redis_port}/0", {"redis": redis.pid}))
        for name, store, extra_pids in stores:
            row = Row(f"(2) tokenguard ({engine}), DPoP, fresh proof, {name} store", [], True,
                      extra_pids=extra_pids)
            config = tokenguard_config(tmp, name, row.app_port, stub.issuer, store, engine)
            row.cmd = [sys.executable, "-m", "tokenguard", "serve", "--config", str(config)]
            rows.append(row)
            if args.quiet_row and name == "embedded":  # the same, without the decision log: what the log costs
                quiet = Row("(2q) the same, embedded store, log_decisions = false", [], True,
                            env={"TOKENGUARD_SERVER_LOG_DECISIONS": "false"})
                config = tokenguard_config(tmp, "quiet", quiet.app_port, stub.issuer, store, engine)
                quiet.cmd = [sys.executable, "-m", "tokenguard", "serve", "--config", str(config)]
                rows.append(quiet)
        (tmp / "naive_app.py").write_text(NAIVE_APP)
        fronts = "".join(NGINX_ROW.format(n=n, app=row.app_port, port=row.port) for n, row in enumerate(rows))
        (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, user=user, static=static, rows=fronts))
        subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)], check=True)
        nginx_pid = int((tmp / "nginx.pid").read_text())
        for n, row in enumerate(rows):
            row.proc = start_app(row.cmd, tmp / f"app-{n}.log", row.env)
        for n, row in enumerate(rows):
            assert row.proc is not None
            if not wait_ready(f"http://127.0.0.1:{row.app_port}/healthz", row.proc):
                raise RuntimeError(f"{row.label}: did not start; log:\n{(tmp / f'app-{n}.log').read_text()[-3000:]}")
            if "tokenguard" in row.cmd and not wait_serving(f"http://127.0.0.1:{row.app_port}/readyz", row.proc):
                raise RuntimeError(f"{row.label}: not ready; log:\n{(tmp / f'app-{n}.log').read_text()[-3000:]}")
        pids = {id(row): {"app": row.proc.pid, "nginx": nginx_pid, **row.extra_pids}
                for row in rows if row.proc is not None}
        blocks = max(1, args.duration // args.block)
        for conns in args.conns:
            for row in rows:  # warm-up: first JWKS fetch, token cache, connections; the rate sizes the proofs
                row.rate = max(block(args, tmp, row, args.warmup, conns, pids[id(row)], key, token)["rps"], 1.0)
            done: dict[int, list[dict[str, Any]]] = {id(row): [] for row in rows}
            for b in range(blocks):
                for row in rows[b % len(rows):] + rows[:b % len(rows)]:
                    r = block(args, tmp, row, args.block, conns, pids[id(row)], key, token)
                    row.rate = max(row.rate, r["rps"])
                    done[id(row)].append(r)
            for row in rows:
                r = combine(done[id(row)], pids[id(row)])
                r.update(label=row.label, conns=conns, run=run)
                results.append(r)
                print(line(r), flush=True)
                if not r["valid"]:
                    print(r["raw"], file=sys.stderr)
    finally:
        for row in rows:
            peer.stop(row.proc)
        if (tmp / "nginx.pid").exists():
            subprocess.run(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp), "-s", "quit"], check=False)
        peer.stop(redis)
        stub.server.shutdown()
    if args.peer:
        results += peer_rows(args, tmp, run)
    return results


def peer_rows(args: argparse.Namespace, tmp: Path, run: int) -> list[dict[str, Any]]:
    """node-oidc-provider's rows, measured now (the same time window as tokenguard's)."""
    out = tmp / f"peer-{run}.json"
    cmd = [sys.executable, str(BENCH / "peer_oidc_provider.py"), "--duration", str(args.duration),
           "--conns", ",".join(map(str, args.conns)), "--layouts", args.peer_layouts, "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if not out.exists():
        print(f"peer benchmark failed (exit {done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}",
              file=sys.stderr)
        return []
    rows = []
    for r in json.loads(out.read_text())["rows"]:
        r.update(label=f"peer: {r['label']}", run=run, app_cpu_us=r["node_cpu_us"] + r.get("redis_cpu_us", 0.0))
        rows.append(r)
        print(line(r), flush=True)
    return rows


HEAD = (f"{'row':58} {'-c':>3} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'app µs':>7} {'nginx µs':>8} "
        f"{'non2xx':>6} {'proofs used':>15} {'valid':>5}")


def line(r: dict[str, Any]) -> str:
    proofs = f"{r['sent']}/{r['proofs']}" if r.get("proofs") else "-"
    return (f"{r['label']:58} {r['conns']:3d} {r['rps']:7.0f} {r['p50']:7.2f} {r['p99']:7.2f} {r['app_cpu_us']:7.0f} "
            f"{r['nginx_cpu_us']:8.0f} {r['non2xx']:6d} {proofs:>15} {'yes' if r['valid'] else 'NO':>5}")


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run, connection count and (2) row: the issue's ratios, from valid rows only."""
    out = []
    for r in rows:
        if not r["label"].startswith("(2)"):
            continue
        same = [o for o in rows if o["run"] == r["run"] and o["conns"] == r["conns"] and o["valid"]]

        def find(prefix: str, same: list[dict[str, Any]] = same) -> dict[str, Any] | None:
            found = [o for o in same if o["label"].startswith(prefix)]
            return max(found, key=lambda o: o["rps"]) if found else None

        naive, empty, ceiling, best_peer = find("(1a)"), find("(1b)"), find("ceiling"), find("peer")
        entry: dict[str, Any] = {"row": r["label"], "conns": r["conns"], "run": r["run"], "valid": r["valid"]}
        if r["valid"]:
            for name, base, target in (("(2)/(1a)", naive, 1.5), ("(2)/(1b)", empty, None),
                                       ("(2)/ceiling", ceiling, 0.6), ("(2)/peer", best_peer, 4.0)):
                entry[name] = (r["rps"] / base["rps"], target) if base else None
            entry["p99 (2)/(1b)"] = (r["p99"] / empty["p99"], -1.5) if empty else None
        out.append(entry)
    return out


def report(rows: list[dict[str, Any]], runs: int) -> None:
    print("\n" + HEAD)
    for r in rows:
        print(line(r) + (f"   run {r['run']}" if runs > 1 else ""))
    table = ratios(rows)
    names = ["(2)/(1a)", "(2)/(1b)", "(2)/ceiling", "(2)/peer", "p99 (2)/(1b)"]
    print(f"\n{'ratio (target)':58} {'-c':>3} " + " ".join(f"{n:>13}" for n in names))
    for e in table:
        cells = []
        for n in names:
            v = e.get(n)
            if not e["valid"]:
                cells.append(f"{'refused':>13}")
            elif v is None:
                cells.append(f"{'-':>13}")
            else:
                value, target = v
                met = "" if target is None else (" ok" if (value >= target if target > 0 else value <= -target)
                                                  else " NO")
                cells.append(f"{value:10.2f}{met:3}")
        print(f"{e['row']:58} {e['conns']:3d} " + " ".join(cells) + (f"   run {e['run']}" if runs > 1 else ""))
    print("targets: (2)/(1a) >= 1.5 (embedded store), (2)/ceiling >= 0.6, (2)/peer >= 4 (fastest peer layout), "
          "p99 (2) <= 1.5 x p99 (1b)")
    if runs > 1:
        print(f"\nranges over {runs} runs (min-max):")
        keys = sorted({(e["row"], e["conns"]) for e in table})
        for row, conns in keys:
            cells = []
            for n in names:
                values = [e[n][0] for e in table if (e["row"], e["conns"]) == (row, conns) and e.get(n)]
                cells.append(f"{min(values):6.2f}-{max(values):<6.2f}" if values else f"{'-':>13}")
            print(f"{row:58} {conns:3d} " + " ".join(cells))
        for label in sorted({r["label"] for r in rows}):
            for conns in sorted({r["conns"] for r in rows}):
                sel = [r for r in rows if r["label"] == label and r["conns"] == conns and r["valid"]]
                if sel:
                    spans = {k: (min(r[k] for r in sel), max(r[k] for r in sel))
                             for k in ("rps", "app_cpu_us", "nginx_cpu_us", "p99")}
                    print(f"{label:58} {conns:3d} req/s {spans['rps'][0]:6.0f}-{spans['rps'][1]:<6.0f}"
                          f" app µs {spans['app_cpu_us'][0]:4.0f}-{spans['app_cpu_us'][1]:<4.0f}"
                          f" nginx µs {spans['nginx_cpu_us'][0]:4.0f}-{spans['nginx_cpu_us'][1]:<4.0f}"
                          f" p99 ms {spans['p99'][0]:6.2f}-{spans['p99'][1]:.2f}")


def main() -> int:
    from tokenguard.settings.schema import ServerSettings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per row and connection count")
    parser.add_argument("--block", type=int, default=2, help="the rows take turns in blocks of this many seconds")
    parser.add_argument("--conns", default="16,64", help="wrk -c values, comma separated")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set; ranges are reported")
    parser.add_argument("--engine", default=ServerSettings.engine, help="server.engine for (1b), ceiling and (2)")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--quiet-row", action="store_true",
                        help="also (2q): the embedded row with server.log_decisions = false (what the log costs)")
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip node-oidc-provider's rows")
    parser.add_argument("--peer-layouts", default="1:memory", help="the peer's --layouts (1:memory is its fastest)")
    parser.add_argument("--json", help="also write every row here")
    args = parser.parse_args()
    args.conns = [int(c) for c in args.conns.split(",")]
    # what the peer machinery expects of its arguments
    args.warmup, args.margin, args.min_proofs, args.mode, args.verbose = 2, 1.6, 4000, "auth_request", False
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"bench-e2e needs {tool} on PATH (apt-get install nginx wrk)", file=sys.stderr)
            return 2
    if args.peer and not (shutil.which("node") and shutil.which("npm")):
        print("node/npm not found: no peer rows (install node >= 20.18 with npm for them)", file=sys.stderr)
        args.peer = False
    print(f"{os.cpu_count()} cpus; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; engine {args.engine};"
          f" wrk -t{args.threads} -d{args.duration}s -c{args.conns}; {args.runs} run(s)\n" + HEAD, flush=True)
    rows: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        tmp = Path(tempfile.mkdtemp(prefix="tg-bench-e2e-"))
        for sub in ("cbt", "pt", "ft", "ut", "st"):
            (tmp / sub).mkdir()
        (tmp / "peer.lua").write_text(peer.WRK_LUA)
        try:
            rows += run_once(args, tmp, run)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    report(rows, args.runs)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        Path(args.json).write_text(json.dumps([{k: v for k, v in r.items() if k != "raw"} for r in rows], indent=2))
    refused = [r for r in rows if not r["valid"]]
    if refused:
        print(f"\nREFUSED: {len(refused)} row(s) had non-2xx answers, socket errors or ran out of proofs: "
              + ", ".join(f"{r['label']} -c{r['conns']}" for r in refused), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
