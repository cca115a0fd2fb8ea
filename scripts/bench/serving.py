#!/usr/bin/env python3
"""Benchmark WSGI serving layers behind nginx, for tokenguard's auth_request use.

One run = for every (server, app) combination below, start the app server on a free port,
then for every nginx mode run ``wrk -t2 -c16 -d<dur>s --latency`` and record req/s, p50, p99,
plus CPU time per request of the app-server process tree and of nginx (from /proc/<pid>/stat
utime+stime, summed over the process tree, before/after the wrk run).

Servers x apps:
  gunicorn sync (2 workers), gunicorn gthread (2 workers x 4 threads), granian --interface wsgi
  (2 workers), each serving (a) a Flask app whose view returns an empty 200 and (b) a raw WSGI
  callable returning an empty 200; bonus: gunicorn's built-in ``-k asgi`` worker with a raw ASGI
  callable (gunicorn >= 24 ships it; no extra dependency).

nginx modes (one nginx, one server block per mode, generated into a temp dir):
  direct        wrk -> app server (no nginx), reference only
  proxy-ka      nginx proxy_pass -> app, upstream keepalive 32 + HTTP/1.1 + Connection ""
  proxy-noka    nginx proxy_pass -> app, nginx default (HTTP/1.0, one connection per request)
  auth-ka       nginx auth_request /_auth -> app (keepalive upstream), then proxy_pass to a
                static `return 200` server block (keepalive upstream)
  auth-noka     the same with no upstream keepalive to the app
And once per run, ``nginx-static``: wrk -> nginx `return 200` (the ceiling of this box).

The machine has 2 cores shared by wrk, nginx and the app server, so every figure is a
"whole-stack on 2 cores" figure; each combination is run --runs times (default 2),
round-robin, so noise is visible.

Usage:  python scripts/bench/serving.py [--duration 10] [--runs 2] [--only gunicorn-sync] [--json out.json]
Needs:  nginx, wrk on PATH; gunicorn, granian, flask in the running interpreter's environment.
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
import time
import urllib.request

APP_MODULE = '''
import flask

flask_app = flask.Flask(__name__)


@flask_app.route("/", defaults={"path": ""})
@flask_app.route("/<path:path>")
def view(path):
    return "", 200


def raw_app(environ, start_response):
    start_response("200 OK", [("Content-Length", "0")])
    return [b""]


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
'''

NGINX_CONF = """
worker_processes {nginx_workers};
{user_line}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/cbt;
    proxy_temp_path {tmp}/pt;
    fastcgi_temp_path {tmp}/ft;
    uwsgi_temp_path {tmp}/ut;
    scgi_temp_path {tmp}/st;
    keepalive_requests 1000000;

    upstream app_ka   {{ server 127.0.0.1:{app}; keepalive 32; }}
    upstream app_noka {{ server 127.0.0.1:{app}; }}
    upstream static   {{ server 127.0.0.1:{static}; keepalive 32; }}

    server {{ # the tiny protected upstream / nginx ceiling
        listen 127.0.0.1:{static};
        location / {{ return 200; }}
    }}
    server {{ # proxy-ka
        listen 127.0.0.1:{proxy_ka};
        location / {{
            proxy_pass http://app_ka;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{ # proxy-noka
        listen 127.0.0.1:{proxy_noka};
        location / {{ proxy_pass http://app_noka; }}
    }}
    server {{ # auth-ka
        listen 127.0.0.1:{auth_ka};
        location / {{
            auth_request /_auth;
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_auth {{
            internal;
            proxy_pass http://app_ka/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{ # auth-noka
        listen 127.0.0.1:{auth_noka};
        location / {{
            auth_request /_auth;
            proxy_pass http://static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location = /_auth {{
            internal;
            proxy_pass http://app_noka/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
        }}
    }}
}}
"""

MODES = ["direct", "proxy-ka", "proxy-noka", "auth-ka", "auth-noka"]


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def bin_path(name):
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.path.exists(cand) else shutil.which(name)


def servers(app_port, workers):
    gun = [bin_path("gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{app_port}", "--log-level", "warning",
           "--backlog", "2048"]
    gra = [bin_path("granian"), "--interface", "wsgi", "--workers", str(workers), "--host", "127.0.0.1",
           "--port", str(app_port), "--log-level", "warning", "--no-access-log"]
    out = []
    for app in ("flask_app", "raw_app"):
        short = "flask" if app == "flask_app" else "raw"
        out.append((f"gunicorn-sync/{short}", gun + ["-k", "sync", f"tgbench_app:{app}"]))
        out.append((f"gunicorn-gthread/{short}", gun + ["-k", "gthread", "--threads", "4", f"tgbench_app:{app}"]))
        out.append((f"granian-wsgi/{short}", gra + [f"tgbench_app:{app}"]))
    out.append(("gunicorn-asgi/raw-asgi", gun + ["-k", "asgi", "tgbench_app:asgi_app"]))
    return out


# ----------------------------------------------------------------------------- /proc helpers

CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    rest = s[s.rindex(")") + 2:].split()
    # fields after ")" start at field 3 (state); ppid=4, utime=14, stime=15
    return int(rest[1]), int(rest[11]) + int(rest[12])


def tree_cpu(root):
    """CPU seconds (utime+stime, all threads) of root and all its descendants that are alive now."""
    children = {}
    cpu = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid, t = _stat(int(d))
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
            cpu[int(d)] = t
    tot, todo = 0, [root]
    while todo:
        p = todo.pop()
        tot += cpu.get(p, 0)
        todo.extend(children.get(p, []))
    return tot / CLK


# ----------------------------------------------------------------------------- wrk


def parse_wrk(out: str) -> dict:
    """wrk's summary, parsed by the peer benchmark's parser (one parser for every benchmark)."""
    from peer_oidc_provider import parse_wrk as parse

    r = parse(out)
    r["non2xx"] = r["wrk_non2xx3xx"]
    return r


def run_wrk(url, args, server_pid, nginx_pid):
    a_cpu = tree_cpu(server_pid)
    n_cpu = tree_cpu(nginx_pid) if nginx_pid else 0.0
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{args.duration}s", "--latency", url],
        capture_output=True, text=True, timeout=args.duration + 60,
    ).stdout
    r = parse_wrk(out)
    n = max(r["requests"], 1)
    r["app_cpu_us"] = (tree_cpu(server_pid) - a_cpu) / n * 1e6 if server_pid else float("nan")
    r["nginx_cpu_us"] = (tree_cpu(nginx_pid) - n_cpu) / n * 1e6 if nginx_pid else float("nan")
    return r, out


def wait_http(url, timeout=20.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except Exception:
            time.sleep(0.1)
    return False


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ----------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="wrk -t")
    ap.add_argument("--conns", type=int, default=16, help="wrk -c")
    ap.add_argument("--workers", type=int, default=2, help="app server worker processes")
    ap.add_argument("--nginx-workers", default="1")
    ap.add_argument("--only", default="", help="comma list of server-name prefixes")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", default="", help="write raw results here")
    ap.add_argument("--keep-raw", action="store_true", help="print raw wrk output")
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="do not measure: merge earlier --json outputs into a best-of/median table")
    args = ap.parse_args()
    if args.merge:
        rows = []
        for fn in args.merge:
            with open(fn) as f:
                rows.extend(json.load(f))
        merged(rows)
        return
    modes = args.modes.split(",")

    tmp = tempfile.mkdtemp(prefix="servingbench-")
    with open(os.path.join(tmp, "tgbench_app.py"), "w") as f:
        f.write(APP_MODULE)
    app_p, static_p, pka, pnoka, aka, anoka = free_ports(6)
    ports = {"proxy-ka": pka, "proxy-noka": pnoka, "auth-ka": aka, "auth-noka": anoka}
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(
            tmp=tmp, app=app_p, static=static_p, proxy_ka=pka, proxy_noka=pnoka, auth_ka=aka, auth_noka=anoka,
            nginx_workers=args.nginx_workers, user_line="user root;" if os.geteuid() == 0 else "",
        ))
    env = dict(os.environ, PYTHONPATH=tmp, PYTHONDONTWRITEBYTECODE="1")
    nginx = subprocess.Popen(["nginx", "-p", tmp, "-c", conf, "-g", "daemon off;"], start_new_session=True)
    results = []
    try:
        if not wait_http(f"http://127.0.0.1:{static_p}/"):
            with open(os.path.join(tmp, "nginx-error.log")) as log:
                sys.exit("nginx did not come up: " + log.read())
        cfgs = servers(app_p, args.workers)
        if args.only:
            cfgs = [c for c in cfgs if c[0].startswith(tuple(args.only.split(",")))]
        print(f"# {len(cfgs)} server configs x {len(modes)} modes x {args.runs} runs, wrk -t{args.threads} "
              f"-c{args.conns} -d{args.duration}s, nginx workers={args.nginx_workers}, cpus={os.cpu_count()}",
              flush=True)
        hdr = (f"{'server/app':26} {'mode':11} {'run':>3} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
               f"{'app µs/req':>10} {'ngx µs/req':>10} {'errors':>8}")
        print(hdr)
        print("-" * len(hdr), flush=True)

        def show(name, mode, run, r):
            err = r["non2xx"] or (r["sockerr"] and "sock") or ""
            print(f"{name:26} {mode:11} {run:>3} {r['rps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
                  f"{r['app_cpu_us']:10.0f} {r['nginx_cpu_us']:10.0f} {str(err):>8}", flush=True)
            results.append(dict(server=name, mode=mode, run=run, **r))

        for run in range(1, args.runs + 1):
            r, _ = run_wrk(f"http://127.0.0.1:{static_p}/", args, None, nginx.pid)
            show("nginx-static", "return-200", run, r)
            for name, cmd in cfgs:
                with open(os.path.join(tmp, "server.log"), "a") as server_log:
                    proc = subprocess.Popen(cmd, cwd=tmp, env=env, start_new_session=True,
                                            stdout=subprocess.DEVNULL, stderr=server_log)
                try:
                    if not wait_http(f"http://127.0.0.1:{app_p}/warmup"):
                        print(f"{name}: did not start (see {tmp}/server.log)", flush=True)
                        continue
                    # warm up every worker / thread and nginx upstream connections
                    subprocess.run(["wrk", "-t2", "-c16", "-d1s", f"http://127.0.0.1:{pka}/"], capture_output=True)
                    for mode in modes:
                        url = f"http://127.0.0.1:{app_p}/" if mode == "direct" else f"http://127.0.0.1:{ports[mode]}/"
                        r, raw = run_wrk(url, args, proc.pid, None if mode == "direct" else nginx.pid)
                        if args.keep_raw:
                            print(raw)
                        show(name, mode, run, r)
                finally:
                    stop(proc)
                    time.sleep(0.5)
    finally:
        stop(nginx)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
        shutil.rmtree(tmp, ignore_errors=True)
    summarize(results, modes)


def summarize(results, modes):
    """req/s per (server, mode): run values side by side."""
    print("\n# req/s per run (run1 / run2 ...), p99 ms in brackets")
    names = []
    for r in results:
        if r["server"] not in names and r["server"] != "nginx-static":
            names.append(r["server"])
    print(f"{'server/app':26} " + " ".join(f"{m:>24}" for m in modes))
    for n in names:
        cells = []
        for m in modes:
            rs = [r for r in results if r["server"] == n and r["mode"] == m]
            cells.append(" / ".join(f"{r['rps']:.0f}[{r['p99']:.1f}]" for r in rs))
        print(f"{n:26} " + " ".join(f"{c:>24}" for c in cells))
    st = [r for r in results if r["server"] == "nginx-static"]
    print("nginx-static return 200: " + " / ".join(f"{r['rps']:.0f}" for r in st))


def merged(results):
    """Noise on a shared 2-core box is one-sided (other load only slows us down), so report the
    best run (max req/s, min CPU/request) next to the median of all runs."""
    import statistics as st

    keys = []
    for r in results:
        if (r["server"], r["mode"]) not in keys:
            keys.append((r["server"], r["mode"]))
    print(f"{'server/app':26} {'mode':11} {'n':>2} {'best req/s':>10} {'median':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'app µs/req':>10} {'ngx µs/req':>10}")
    print("#" + " " * 54 + "(p50/p99 of the best run; CPU = min over runs)")
    for key in sorted(keys, key=lambda k: (k[1], k[0])):
        rs = [r for r in results if (r["server"], r["mode"]) == key]
        best = max(rs, key=lambda r: r["rps"])
        app = min((r["app_cpu_us"] for r in rs), default=float("nan"))
        ngx = min((r["nginx_cpu_us"] for r in rs), default=float("nan"))
        print(f"{key[0]:26} {key[1]:11} {len(rs):>2} {best['rps']:10.0f} {st.median(r['rps'] for r in rs):7.0f} "
              f"{best['p50']:7.2f} {best['p99']:7.2f} {app:10.0f} {ngx:10.0f}")


if __name__ == "__main__":
    main()
