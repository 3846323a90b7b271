#!/usr/bin/env python3
"""canto's benchmark suite: every scenario side by side with its peers in one
run, reported as ratios (these machines are shared and noisy; absolute
numbers alone mean little). Run through bench/run, which builds everything.

Scenarios:
  hello      keep-alive HTTP/1.1 hello: canto vs native hyper, nginx, Prosody;
             then p99 of canto and native hyper at half of canto's peak rate
  wasi-http  the same standard wasi:http component in canto and `wasmtime serve`
  static     4 KiB and 1 MiB files: canto's http_files vs nginx (sendfile on) vs Prosody's
             mod_http_files; each server's CPU per 4 KiB request (and canto's for a
             404 with no module); canto's RSS before and after sending a 1 GiB file
  https      TLS handshakes per second and keep-alive throughput over TLS, vs nginx
  vhosts     1, 100 and 1,000 virtual hosts with 3 modules each: startup, memory, throughput
  languages  whoami in Rust, Python, JavaScript, C: size and per-request latency
  reload     module swap: write -> first request served by the new version, and
             requests lost / latency spike while swapping under load
  restart    start -> listening with a cold vs warm compile cache
  websocket  10,000 idle WebSockets (server RSS per connection), and echo round
             trips at 1 and 64 connections: canto's http_ws_echo (a fresh
             instance per message) vs a native tokio-tungstenite echo server
  xmpp       XMPP between anonymous users over WebSocket (@xmpp/client) and over
             BOSH (Strophe.js): message round trips at 1 and 100 pairs, and memory
             per idle session, through canto's `websocket` and `bosh` in front of
             Prosody's c2s vs Prosody's own mod_websocket and mod_bosh
  file-share XEP-0363 uploads (PUT) and downloads of 1 MiB and 100 MiB files, MiB/s:
             canto's http_file_share vs Prosody's own mod_http_file_share
             (internal mode, slots asked for with slixmpp) vs nginx's WebDAV PUT
  counter    wasi:keyvalue: POST increments through http_counter with the embedded
             SQLite store and with a Redis store, the same module answering
             without a store, a native hyper + redis-rs server on the same Redis,
             and 1 vs 2 canto nodes (Redis store) behind HAProxy

`--smoke` (what CI runs): canto only, 1 s per measurement, and any error
response fails the run, so the suite cannot rot. (counter runs whole, Redis,
HAProxy and its native baseline included: its point is the stores behind.)
"""

import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANTO = os.path.join(ROOT, "target/release/canto")
NATIVE = os.path.join(ROOT, "target/release/native-hello")
NATIVE_WS = os.path.join(ROOT, "target/release/native-ws-echo")
WS_LOAD = os.path.join(ROOT, "target/release/ws-load")
FILE_LOAD = os.path.join(ROOT, "target/release/file-load")
NATIVE_COUNTER = os.path.join(ROOT, "target/release/native-counter")
WASMTIME = os.environ.get("WASMTIME", os.path.join(ROOT, "target/bench-tools/bin/wasmtime"))
GUESTS = os.path.join(ROOT, "target/guests/wasm32-wasip2/release")
LANGUAGES = os.path.join(ROOT, "target/languages/out")
SMOKE = "--smoke" in sys.argv
DURATION = 1 if SMOKE else int(os.environ.get("DURATION", "10"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
ONLY = set(sys.argv[1:]) - {"--smoke"}

work = tempfile.mkdtemp(prefix="canto-bench-")
processes = []
rows = []  # (scenario, system, figure, ratio text)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit(f"nothing listening on {port}")


def start(argv, **kwargs):
    """Starts `argv` in a process group of its own, so stop() reaches what it starts too (nginx's workers)."""
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **kwargs
    )
    processes.append(process)
    return process


def signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop(process):
    """SIGTERM to the group, up to 15 s for the leader, then SIGKILL to whatever is left; always reaped."""
    signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pass
    signal_group(process, signal.SIGKILL)
    process.wait()


def canto(config, plugins=(), env=None):
    """Starts canto with `config` (after a preamble) and the given modules; returns (process, port)."""
    port = free_port()
    plugin_dir = tempfile.mkdtemp(dir=work)
    for name, path in plugins:
        shutil.copy(path, os.path.join(plugin_dir, f"mod_{name}.wasm"))
    path = os.path.join(plugin_dir, "canto.cfg.lua")
    with open(path, "w") as f:
        f.write(f'http_ports = {{ {port} }}\nhttp_interfaces = {{ "127.0.0.1" }}\nhttps_ports = {{}}\n')
        f.write(f'plugin_paths = {{ "{plugin_dir}" }}\n{config}')
    process = start([CANTO, "--config", path], env={**os.environ, "RUST_LOG": "warn", **(env or {})})
    wait_port(port)
    return process, port, plugin_dir


def nginx(server_block, tls=None):
    """Starts nginx with one server block; `tls` = (cert, key) makes its listener HTTPS."""
    return nginx_server(server_block, tls)[1]


def nginx_server(server_block, tls=None):
    """nginx as `nginx()` starts it; returns (process, port)."""
    port = free_port()
    listen = f"listen 127.0.0.1:{port}" + (f" ssl; ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};" if tls else ";")
    root = tempfile.mkdtemp(dir=work)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""user root; daemon off; worker_processes 1; error_log {root}/error.log; pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ {listen} {server_block} }} }}
""")
    process = start(["nginx", "-c", conf, "-p", root])
    wait_port(port)
    return process, port


def prosody(config):
    """Prosody with `config` on a free HTTP port; returns the port."""
    return prosody_server(config)[1]


def prosody_server(config, c2s_port=None):
    """Prosody with `config` on a free HTTP port, and `c2s_port` as its client
    port if given; returns (process, HTTP port)."""
    port = free_port()
    root = tempfile.mkdtemp(dir=work)
    path = os.path.join(root, "prosody.cfg.lua")
    with open(path, "w") as f:
        f.write(f"""run_as_root = true
daemonize = false
pidfile = "{root}/prosody.pid"
data_path = "{root}"
log = {{ error = "{root}/prosody.log" }}
plugin_paths = {{ "{ROOT}/bench/prosody" }}
c2s_ports = {{ {c2s_port or ""} }}; s2s_ports = {{}}; c2s_direct_tls_ports = {{}}; s2s_direct_tls_ports = {{}}
component_ports = {{}}; legacy_ssl_ports = {{}}; https_ports = {{}}
interfaces = {{ "127.0.0.1" }}
http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
{config}""")
    process = start(["prosody", "--config", path, "-F"])
    wait_port(port)
    return process, port


def wrk_run(url, connections=CONNECTIONS, duration=DURATION, script=None, headers=(), allow_errors=False):
    """Runs wrk; returns its report as a dict: rps, p50, p99, max (ms), requests, errors, transfer (bytes/s)."""
    threads = min(2, connections)
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    for header in headers:
        argv += ["-H", header]
    if script:
        path = os.path.join(work, f"wrk-{len(os.listdir(work))}.lua")
        with open(path, "w") as f:
            f.write(script)
        argv += ["-s", path]
    out = subprocess.run(argv + [url], capture_output=True, text=True, check=True).stdout
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    errors += int((re.search(r"Non-2xx or 3xx responses: (\d+)", out) or [0, 0])[1])
    if errors and not allow_errors:
        problem = " ".join(l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket" in l)
        if SMOKE:
            sys.exit(f"smoke run failed: {url}: {problem}")
        print(f"  warning: {url}: {problem}", file=sys.stderr)

    def ms(pattern):
        value, unit = re.search(pattern, out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    def size(text):
        value, unit = re.match(r"([\d.]+)(B|KB|MB|GB)", text).groups()
        return float(value) * {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}[unit]

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": ms(r"^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$"),
        "p99": ms(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$"),
        "max": ms(r"^\s+Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)"),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "errors": errors,
        "transfer": size(re.search(r"Transfer/sec:\s+(\S+)", out).group(1)),
    }


def wrk(url, connections=CONNECTIONS, duration=DURATION):
    """(requests/s, p50 ms, p99 ms) from wrk."""
    report = wrk_run(url, connections, duration)
    return report["rps"], report["p50"], report["p99"]


def paced(rate, connections=CONNECTIONS):
    """A wrk script holding the load near `rate` requests/s: each connection
    waits between requests. It is a closed loop (the wait starts when the
    response arrives) and wrk's delay() is whole milliseconds, so the rate
    reached is a little under `rate`, and lower for a slower server."""
    return f"function delay() return {max(1, round(connections * 1000 / rate))} end\n"


def cpu_seconds(pid):
    """User + system CPU seconds of a process and its live children (nginx's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # from field 3, the state
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as f:
                    pending += [int(child) for child in f.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def cpu_per_request(process, url, allow_errors=False):
    """wrk on `url`; returns (the server's CPU microseconds per request, req/s)."""
    before = cpu_seconds(process.pid)
    report = wrk_run(url, allow_errors=allow_errors)
    used = cpu_seconds(process.pid) - before
    return used / max(report["requests"], 1) * 1e6, report["rps"]


def rss_kib(process):
    with open(f"/proc/{process.pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1))


FRESH = "fresh instance per request"
REUSED = "instances reused"
REUSE = "http_module_instance_reuse = 1000\n"


def throughput_rows(scenario, systems, cantos=1):
    """systems: [(name, url)], the first `cantos` being canto (in its modes);
    rows with each canto's ratio to each peer."""
    if SMOKE:
        systems = systems[:cantos]
    results = [(name, wrk(url)) for name, url in systems]
    ours = results[:cantos]
    for name, (rps, p50, p99) in results:
        if (name, (rps, p50, p99)) in ours:
            ratio = ""
        elif cantos == 1:
            ratio = f"canto = {ours[0][1][0] / rps:.2f}x"
        else:
            ratio = ", ".join(f"{mode(ours_name)} {ours_rps / rps:.2f}x" for ours_name, (ours_rps, _, _) in ours)
        rows.append((scenario, name, f"{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms", ratio))
    return results


def mode(name):
    """A canto row's mode, for ratio columns: "fresh" or "reused"."""
    return "reused" if REUSED in name else "fresh"


def scenario_hello():
    config = 'VirtualHost "localhost"\n  modules_enabled = { "http_hello" }\n'
    proc, port, _ = canto(config)
    reused, reused_port, _ = canto(REUSE + config)
    native_port = nginx_port = prosody_port = 0
    if not SMOKE:
        native_port = free_port()
        start([NATIVE, str(native_port)])
        wait_port(native_port)
        nginx_port = nginx('location / { default_type "text/plain; charset=utf-8"; return 200 "hello from localhost\\n"; }')
        prosody_port = prosody('VirtualHost "localhost"\n  modules_enabled = { "bench_hello" }\n')
    results = throughput_rows("hello", [
        (f"canto + http_hello.wasm, {FRESH}", f"http://localhost:{port}/hello/"),
        (f"canto + http_hello.wasm, {REUSED}", f"http://localhost:{reused_port}/hello/"),
        ("native hyper", f"http://127.0.0.1:{native_port}/hello/"),
        ("nginx (return 200)", f"http://127.0.0.1:{nginx_port}/"),
        ("Prosody 0.12 Lua module", f"http://localhost:{prosody_port}/bench_hello/"),
    ], cantos=2)
    if not SMOKE:
        # Latency when not saturated: each canto and native hyper offered
        # half of that canto's peak.
        for (name, (peak, _, _)), canto_port in zip(results[:2], [port, reused_port]):
            half = peak / 2
            ours = wrk_run(f"http://localhost:{canto_port}/hello/", script=paced(half))
            native = wrk_run(f"http://127.0.0.1:{native_port}/hello/", script=paced(half))
            for system, report in [(name, ours), ("native hyper", native)]:
                ratio = "" if report is ours else f"canto p99 = {ours['p99'] / report['p99']:.2f}x"
                rows.append((f"hello at half load ({mode(name)})", system,
                             f"{report['rps']:,.0f} req/s (paced to about {half:,.0f}), p50 {report['p50']:.2f} ms, "
                             f"p99 {report['p99']:.2f} ms", ratio))
    stop(proc)
    stop(reused)


def scenario_wasi_http():
    """The same standard wasi:http component (http_plain) in canto and in `wasmtime serve`."""
    plain = os.path.join(GUESTS, "http_plain.wasm")
    config = 'VirtualHost "localhost"\n  modules_enabled = { "http_plain" }\n'
    proc, port, _ = canto(config, plugins=[("http_plain", plain)])
    reused, reused_port, _ = canto(REUSE + config, plugins=[("http_plain", plain)])
    systems = [(f"canto + http_plain.wasm, {FRESH}", f"http://localhost:{port}/plain/"),
               (f"canto + http_plain.wasm, {REUSED}", f"http://localhost:{reused_port}/plain/")]
    if not SMOKE:
        if not os.path.exists(WASMTIME):
            sys.exit(f"no wasmtime at {WASMTIME}: bench/run installs it (or set WASMTIME)")
        serve_port = free_port()
        start([WASMTIME, "serve", "-S", "cli", "--addr", f"127.0.0.1:{serve_port}", plain])
        wait_port(serve_port)
        systems.append(("wasmtime serve -S cli + http_plain.wasm", f"http://127.0.0.1:{serve_port}/plain/"))
    throughput_rows("wasi:http component", systems, cantos=2)
    stop(proc)
    stop(reused)


def scenario_static():
    www = tempfile.mkdtemp(dir=work)
    with open(os.path.join(www, "4k.txt"), "wb") as f:
        f.write(os.urandom(2048).hex().encode())
    with open(os.path.join(www, "1m.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    config = f'VirtualHost "localhost"\n  modules_enabled = {{ "http_files" }}\n  http_files_dir = "{www}"\n'
    files = [("http_files", os.path.join(GUESTS, "http_files.wasm"))]
    proc, port, _ = canto(config, plugins=files)
    reused, reused_port, _ = canto(REUSE + config, plugins=files)
    nginx_port = prosody_port = 0
    nginx_process = None
    if not SMOKE:
        # sendfile as Debian's nginx.conf has it (the bare default is off).
        nginx_process, nginx_port = nginx_server(f"sendfile on; location /files/ {{ alias {www}/; }}")
        prosody_port = prosody(f'VirtualHost "localhost"\n  modules_enabled = {{ "http_files" }}\n  http_files_dir = "{www}"\n')
    throughput_rows("static 4 KiB", [
        (f"canto + http_files.wasm, {FRESH}", f"http://localhost:{port}/files/4k.txt"),
        (f"canto + http_files.wasm, {REUSED}", f"http://localhost:{reused_port}/files/4k.txt"),
        ("nginx", f"http://127.0.0.1:{nginx_port}/files/4k.txt"),
        ("Prosody mod_http_files", f"http://localhost:{prosody_port}/files/4k.txt"),
    ], cantos=2)
    # Where a request's time goes, apart from how wrk and the servers share
    # the cores: each server's own CPU time per request. canto answering a
    # 404 itself, with no module, is its HTTP server alone.
    measured = [(f"canto + http_files.wasm, {FRESH}", proc, f"http://localhost:{port}/files/4k.txt"),
                (f"canto + http_files.wasm, {REUSED}", reused, f"http://localhost:{reused_port}/files/4k.txt"),
                ("canto, no module (its own 404)", proc, f"http://localhost:{port}/nothing-here")]
    if nginx_process:
        measured.append(("nginx", nginx_process, f"http://127.0.0.1:{nginx_port}/files/4k.txt"))
    costs = [(name, *cpu_per_request(process, url, allow_errors="404" in name)) for name, process, url in measured]
    for name, micros, rps in costs:
        ratio = "" if name == "nginx" or not nginx_process else f"{micros / costs[-1][1]:.1f}x nginx's"
        rows.append(("static 4 KiB, server CPU per request", name,
                     f"{micros:.1f} µs ({rps:,.0f} req/s)", ratio))
    systems = [(f"canto + http_files.wasm, {FRESH}", f"http://localhost:{port}/files/1m.bin"),
               (f"canto + http_files.wasm, {REUSED}", f"http://localhost:{reused_port}/files/1m.bin"),
               ("nginx", f"http://127.0.0.1:{nginx_port}/files/1m.bin"),
               ("Prosody mod_http_files", f"http://localhost:{prosody_port}/files/1m.bin")]
    results = [(name, wrk_run(url, connections=16)) for name, url in systems[:2 if SMOKE else 4]]
    ours = results[:2]
    for name, report in results:
        ratio = "" if (name, report) in ours else ", ".join(
            f"{mode(n)} {r['rps'] / report['rps']:.2f}x" for n, r in ours)
        rows.append(("static 1 MiB (16 connections)", name,
                     f"{report['rps']:,.0f} req/s = {report['transfer'] / (1 << 20):,.0f} MiB/s, "
                     f"p99 {report['p99']:.2f} ms", ratio))
    # A 1 GiB file (sparse: the page cache, not the disk, is measured):
    # canto's memory must not grow with what it sends.
    with open(os.path.join(www, "1g.bin"), "wb") as f:
        f.truncate(1 << 30)
    before = rss_kib(proc)
    mib_s, _ = file_load("get", f"http://localhost:{port}/files/1g.bin", 1 if SMOKE else 3, 1)
    after = rss_kib(proc)
    rows.append(("static 1 GiB (1 connection)", f"canto + http_files.wasm, {FRESH}",
                 f"{mib_s:,.0f} MiB/s; RSS {before / 1024:.0f} MiB before, {after / 1024:.0f} MiB after", ""))
    stop(proc)
    stop(reused)


def self_signed(directory, name):
    """An ECDSA P-256 certificate for `name`; returns (cert, key) paths."""
    cert, key = os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                    "-addext", f"subjectAltName=DNS:{name}"], check=True, capture_output=True)
    return cert, key


def scenario_https():
    certs = tempfile.mkdtemp(dir=work)
    cert, key = self_signed(certs, "localhost")
    tls_port = free_port()
    proc, _, _ = canto(f'https_ports = {{ {tls_port} }}\nhttps_interfaces = {{ "127.0.0.1" }}\n'
                       f'https_ssl = {{ certificate = "{cert}", key = "{key}" }}\n'
                       'VirtualHost "localhost"\n  modules_enabled = { "http_hello" }\n')
    wait_port(tls_port)
    systems = [("canto + http_hello.wasm", f"https://localhost:{tls_port}/hello/")]
    if not SMOKE:
        nginx_port = nginx('location / { default_type "text/plain; charset=utf-8"; return 200 "hello from localhost\\n"; }',
                           tls=(cert, key))
        systems.append(("nginx (return 200)", f"https://localhost:{nginx_port}/"))
    for label, headers in [("HTTPS keep-alive", ()), ("HTTPS new connection per request", ("Connection: close",))]:
        results = [(name, wrk_run(url, headers=headers)) for name, url in systems]
        for name, report in results:
            ratio = "" if report is results[0][1] else f"canto = {results[0][1]['rps'] / report['rps']:.2f}x"
            what = "handshakes/s" if headers else "req/s"
            rows.append((label, name, f"{report['rps']:,.0f} {what}, p50 {report['p50']:.2f} ms, "
                         f"p99 {report['p99']:.2f} ms", ratio))
    stop(proc)


def scenario_vhosts():
    """Cost per virtual host: startup, memory and throughput with 1, 100 and 1,000 hosts of 3 modules each."""
    counts = [1, 10] if SMOKE else [1, 100, 1000]
    baseline = None
    for count in counts:
        hosts = [f"host{i}.test" for i in range(count)]
        config = "".join(f'VirtualHost "{host}"\n  modules_enabled = {{ "http_hello", "http_whoami", "http_echo" }}\n'
                         for host in hosts)
        began = time.monotonic()
        proc, port, _ = canto(config)
        startup = time.monotonic() - began
        idle_rss = rss_kib(proc)
        # Every request names a different host, in turn, so all of them are in play.
        names = ", ".join(f'"{host}"' for host in hosts)
        script = (f"local hosts = {{ {names} }}\nlocal i = 0\n"
                  "request = function()\n  i = i % #hosts + 1\n"
                  "  return wrk.format('GET', '/hello/', { Host = hosts[i] })\nend\n")
        report = wrk_run(f"http://127.0.0.1:{port}/hello/", script=script)
        loaded_rss = rss_kib(proc)
        stop(proc)
        baseline = baseline or report["rps"]
        rows.append(("virtual hosts", f"{count:,} host{'s' if count > 1 else ''} x 3 modules",
                     f"start {startup:.2f} s, RSS {idle_rss / 1024:,.0f} MiB idle / {loaded_rss / 1024:,.0f} MiB "
                     f"after load, {report['rps']:,.0f} req/s across all hosts",
                     "" if count == counts[0] else f"throughput = {report['rps'] / baseline:.2f}x of 1 host"))


def scenario_languages():
    modules = [("http_whoami", os.path.join(GUESTS, "http_whoami.wasm"), "Rust")]
    for suffix, language in [("py", "Python"), ("js", "JavaScript"), ("c", "C")]:
        path = os.path.join(LANGUAGES, f"http_whoami_{suffix}.wasm")
        if os.path.exists(path):
            modules.append((f"http_whoami_{suffix}", path, language))
    enabled = ", ".join(f'"{name}"' for name, _, _ in modules)
    proc, port, _ = canto(
        f'VirtualHost "localhost"\n  modules_enabled = {{ {enabled} }}\n',
        plugins=[(name, path) for name, path, _ in modules],
    )
    for name, path, language in modules:
        mount = name.removeprefix("http_")
        rps, p50, p99 = wrk(f"http://localhost:{port}/{mount}/", connections=1, duration=max(2, DURATION // 2))
        size = os.path.getsize(path)
        rows.append(("whoami per language", f"{language} ({size / 1024:,.0f} KiB)",
                     f"one client: p50 {p50:.2f} ms, p99 {p99:.2f} ms, {rps:,.0f} req/s", ""))
    stop(proc)


def scenario_reload():
    versions = [os.path.join(GUESTS, "http_hello.wasm"), os.path.join(GUESTS, "http_whoami.wasm")]
    proc, port, plugin_dir = canto('VirtualHost "localhost"\n  modules_enabled = { "swap" }\n',
                                   plugins=[("swap", versions[0])])
    url = f"http://localhost:{port}/swap/"
    latencies = []
    for i in range(1, 11):
        marker = b"hello from" if i % 2 == 0 else b'"method"'
        tmp = os.path.join(plugin_dir, "swap.tmp")
        shutil.copy(versions[i % 2], tmp)
        written = time.monotonic()
        os.rename(tmp, os.path.join(plugin_dir, "mod_swap.wasm"))
        while marker not in urllib.request.urlopen(url).read():
            time.sleep(0.001)
        latencies.append((time.monotonic() - written) * 1000)
    rows.append(("reload", "module swap, write -> new version served",
                 f"median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms (10 swaps)",
                 "includes 100 ms polling + 150 ms settle"))

    # Under load: the same wrk run with and without a swap every half second.
    steady = wrk_run(url, allow_errors=True)
    stop_swapping = threading.Event()

    def swap_repeatedly():
        i = 0
        while not stop_swapping.wait(0.5):
            i += 1
            tmp = os.path.join(plugin_dir, "swap.tmp")
            shutil.copy(versions[i % 2], tmp)
            os.rename(tmp, os.path.join(plugin_dir, "mod_swap.wasm"))

    swapper = threading.Thread(target=swap_repeatedly)
    swapper.start()
    try:
        swapping = wrk_run(url, allow_errors=True)
    finally:
        stop_swapping.set()
        swapper.join()
    swaps = int(DURATION / 0.5)
    if SMOKE and (steady["errors"] or swapping["errors"]):
        sys.exit(f"smoke run failed: {swapping['errors']} requests lost while swapping modules")
    for name, report in [("steady", steady), (f"swapping every 0.5 s (~{swaps} swaps)", swapping)]:
        rows.append(("reload under load", name,
                     f"{report['requests']:,} requests, {report['errors']} failed, {report['rps']:,.0f} req/s, "
                     f"p99 {report['p99']:.2f} ms, max {report['max']:.2f} ms",
                     "" if report is steady else f"max latency = {swapping['max'] / steady['max']:.1f}x steady"))
    stop(proc)


def scenario_restart():
    modules = [("http_hello", os.path.join(GUESTS, "http_hello.wasm")),
               ("http_whoami", os.path.join(GUESTS, "http_whoami.wasm")),
               ("http_files", os.path.join(GUESTS, "http_files.wasm"))]
    python = os.path.join(LANGUAGES, "http_whoami_py.wasm")
    if os.path.exists(python) and not SMOKE:
        modules.append(("http_whoami_py", python))
    enabled = ", ".join(f'"{name}"' for name, _ in modules)
    cache = tempfile.mkdtemp(dir=work)
    timings = []
    for _ in ("cold", "warm"):
        began = time.monotonic()
        proc, _, _ = canto(f'VirtualHost "localhost"\n  modules_enabled = {{ {enabled} }}\n', plugins=modules,
                           env={"CANTO_CACHE_DIR": cache})
        timings.append(time.monotonic() - began)
        stop(proc)
    names = ", ".join(name for name, _ in modules)
    rows.append(("restart", f"start -> listening ({names})",
                 f"cold cache {timings[0]:.2f} s, warm cache {timings[1]:.2f} s",
                 f"warm = {timings[0] / timings[1]:.1f}x faster"))


def ws_idle_kib(server, url, count):
    """The server's RSS growth per WebSocket, in KiB, with `count` idle ones open."""
    before = rss_kib(server)
    load = subprocess.Popen([WS_LOAD, "idle", url, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    processes.append(load)
    opened = load.stdout.readline().split()
    if opened != ["open", str(count)]:
        sys.exit(f"ws-load could not open {count} WebSockets to {url}")
    time.sleep(1)
    after = rss_kib(server)
    load.stdin.close()
    load.wait(timeout=60)
    return (after - before) / count


def ws_echo(url, connections):
    """(messages/s, p50 ms, p99 ms) of round trips, each connection waiting for its echo before the next."""
    out = subprocess.run([WS_LOAD, "echo", url, str(connections), str(DURATION)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"ws-load echo {url} failed: {out.stderr.strip()}")
    fields = out.stdout.split()
    return float(fields[3]), float(fields[5]), float(fields[7])


def scenario_websocket():
    count = 100 if SMOKE else int(os.environ.get("WS_IDLE", "10000"))
    config = (f"http_websocket_max_connections = {2 * count}\n"
              'VirtualHost "localhost"\n  modules_enabled = { "http_ws_echo" }\n')
    proc, port, _ = canto(config, plugins=[("http_ws_echo", os.path.join(GUESTS, "http_ws_echo.wasm"))])
    systems = [("canto + http_ws_echo.wasm, fresh instance per event", proc, f"ws://localhost:{port}/ws_echo/")]
    if not SMOKE:
        native_port = free_port()
        native = start([NATIVE_WS, str(native_port)])
        wait_port(native_port)
        systems.append(("native tokio-tungstenite echo", native, f"ws://localhost:{native_port}/"))
    idle = [ws_idle_kib(server, url, count) for _, server, url in systems]
    for i, ((name, _, _), kib) in enumerate(zip(systems, idle)):
        ratio = f"canto = {idle[0] / kib:.2f}x" if i else ""
        rows.append(("websocket idle", name, f"{count:,} open: {kib:.1f} KiB RSS per connection", ratio))
    for connections in (1, 64):
        results = [ws_echo(url, connections) for _, _, url in systems]
        ours = results[0]
        for i, ((name, _, _), (rate, p50, p99)) in enumerate(zip(systems, results)):
            ratio = f"canto = {ours[0] / rate:.2f}x msg/s, p99 {ours[2] / p99:.2f}x" if i else ""
            rows.append((f"websocket echo, {connections} conn", name,
                         f"{rate:,.0f} msg/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms", ratio))
    for _, server, _ in systems:
        stop(server)


def node_clients():
    """tests/clients with its packages installed under target/ (as the tests do)."""
    target = os.path.join(ROOT, "target/test-clients")
    os.makedirs(target, exist_ok=True)
    source = os.path.join(ROOT, "tests/clients")
    for name in os.listdir(source):
        shutil.copy(os.path.join(source, name), target)
    # Installed again whenever the lock file changed since (as the tests do).
    with open(os.path.join(target, "package-lock.json"), "rb") as f:
        lock = f.read()
    stamp = os.path.join(target, "node_modules/.installed-from-lock")
    if not os.path.exists(stamp) or open(stamp, "rb").read() != lock:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=target, check=True)
        with open(stamp, "wb") as f:
            f.write(lock)
    return target


def xmpp_load(*args):
    """Runs tests/clients/xmpp_load.mjs; returns the JSON it prints."""
    script = os.path.join(node_clients(), "xmpp_load.mjs")
    out = subprocess.run(["node", "--experimental-websocket", script, *map(str, args)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"xmpp_load {args[0]} failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def xmpp_idle_kib(servers, url, domain, count):
    """Each of `servers`' RSS growth per idle XMPP session, in KiB."""
    before = [rss_kib(server) for server in servers]
    script = os.path.join(node_clients(), "xmpp_load.mjs")
    load = subprocess.Popen(["node", "--experimental-websocket", script, "idle", url, domain, str(count)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    processes.append(load)
    if json.loads(load.stdout.readline() or "{}").get("online") != count:
        sys.exit(f"could not log {count} XMPP sessions in through {url}")
    time.sleep(1)
    after = [rss_kib(server) for server in servers]
    load.stdin.close()
    load.wait(timeout=60)
    return [(a - b) / count for a, b in zip(after, before)]


def scenario_xmpp():
    domain = "anon.localhost"
    xmpp_config = ('modules_enabled = { "websocket"; "bosh"; "saslauth"; "ping"; "presence" }\n'
                   'consider_websocket_secure = true\nconsider_bosh_secure = true\nc2s_require_encryption = false\n'
                   f'VirtualHost "{domain}"\n  authentication = "anonymous"\n')
    # Per transport, fresh servers (memory freed by one transport's sessions
    # would otherwise be reused by the other's): one Prosody behind canto,
    # another serving its own module; each one's memory measured from its start.
    for transport, path in (("websocket", "xmpp-websocket"), ("bosh", "http-bind")):
        c2s = free_port()
        behind, _ = prosody_server(xmpp_config, c2s_port=c2s)
        wait_port(c2s)
        proc, port, _ = canto('consider_websocket_secure = true\nconsider_bosh_secure = true\n'
                              f'http_default_host = "{domain}"\nVirtualHost "{domain}"\n'
                              f'  modules_enabled = {{ "{transport}" }}\n  http_xmpp_server = "127.0.0.1:{c2s}"\n')
        scheme = "ws" if transport == "websocket" else "http"
        systems = [(f"canto {transport} -> Prosody c2s", f"{scheme}://127.0.0.1:{port}/{path}")]
        own = None
        if not SMOKE:
            own, own_port = prosody_server(xmpp_config)
            systems.append((f"Prosody 0.12 mod_{transport}", f"{scheme}://127.0.0.1:{own_port}/{path}"))
        for pairs in (1, 100):
            results = [xmpp_load("pingpong", url, domain, pairs, DURATION) for _, url in systems]
            ours = results[0]
            for i, ((name, _), result) in enumerate(zip(systems, results)):
                ratio = f"canto = {ours['rate'] / result['rate']:.2f}x msg/s, p99 {ours['p99_ms'] / result['p99_ms']:.2f}x" if i else ""
                rows.append((f"xmpp {transport} round trips, {pairs} pair{'s' if pairs > 1 else ''}", name,
                             f"{result['rate']:,.0f} msg/s, p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms", ratio))
        # Memory once both have served the round trips above (warm, as in use).
        count = 10 if SMOKE else int(os.environ.get("XMPP_IDLE", "1000"))
        canto_kib, behind_kib = xmpp_idle_kib([proc, behind], systems[0][1], domain, count)
        rows.append((f"xmpp {transport} idle sessions", systems[0][0],
                     f"{count:,} open: canto {canto_kib:.1f} KiB + Prosody c2s {behind_kib:.1f} KiB per session", ""))
        if own:
            (own_kib,) = xmpp_idle_kib([own], systems[1][1], domain, count)
            rows.append((f"xmpp {transport} idle sessions", systems[1][0], f"{count:,} open: {own_kib:.1f} KiB per session",
                         f"canto's own = {canto_kib / own_kib:.2f}x, with Prosody's c2s = {(canto_kib + behind_kib) / own_kib:.2f}x"))
        stop(proc)
        stop(behind)
        if own:
            stop(own)


SHARE_SECRET = "bench-secret"


def file_load(*args):
    """Runs file-load; returns (MiB/s, errors)."""
    out = subprocess.run([FILE_LOAD, *map(str, args)], capture_output=True, text=True, check=True)
    if out.stderr:
        print(f"  {out.stderr.strip()}", file=sys.stderr)
    fields = out.stdout.split()
    report = dict(zip(fields[::2], fields[1::2]))
    errors = int(report["errors"])
    if errors and SMOKE:
        sys.exit(f"smoke run failed: file-load {args[0]}: {out.stderr.strip()}")
    return float(report["mib_s"]), errors


def canto_share_slots(port, count, size):
    """Upload slots as Prosody's external mode hands them out, signed here
    (HS256 over the same claims, with the secret canto is given)."""
    import base64, hashlib, hmac
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    now, slots = int(time.time()), []
    for i in range(count):
        slot = f"bench{i}-{os.urandom(6).hex()}"
        claims = {"sub": "bench@localhost", "iat": now, "exp": now + 3600, "slot": slot, "filename": f"file-{i}.bin",
                  "filesize": size, "filetype": "application/octet-stream", "expires": now + 86400}
        signed = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
        token = signed + "." + b64(hmac.new(SHARE_SECRET.encode(), signed.encode(), hashlib.sha256).digest())
        url = f"http://localhost:{port}/file_share/{slot}/file-{i}.bin"
        slots.append({"url": url, "get": url, "headers": {"Authorization": f"Bearer {token}",
                                                          "Content-Type": "application/octet-stream"}})
    return slots


def prosody_share_slots(c2s, count, size):
    """Slots from Prosody's own mod_http_file_share, asked for over XMPP (slixmpp)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench/slots.py"), str(c2s), "localhost",
                          "upload.localhost", str(count), str(size)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench/slots.py failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def scenario_file_share():
    """XEP-0363 uploads and downloads, MiB/s: canto's http_file_share vs
    Prosody's own mod_http_file_share (internal mode) vs nginx's WebDAV PUT."""
    limit = 200 << 20
    store = tempfile.mkdtemp(dir=work)
    proc, port, _ = canto(f'http_file_share_secret = "{SHARE_SECRET}"\nhttp_file_share_size_limit = {limit}\n'
                          f'http_file_share_dir = "{store}"\nVirtualHost "localhost"\n'
                          '  modules_enabled = { "http_file_share" }\n')
    prosody_proc = nginx_port = c2s = None
    if not SMOKE:
        c2s = free_port()
        prosody_proc, _ = prosody_server(
            'modules_enabled = { "saslauth" }\nc2s_require_encryption = false\n'
            'VirtualHost "localhost"\n  authentication = "anonymous"\n'
            f'Component "upload.localhost" "http_file_share"\n  http_file_share_size_limit = {limit}\n'
            '  http_file_share_daily_quota = 1e15\n', c2s_port=c2s)
        wait_port(c2s)
        dav = tempfile.mkdtemp(dir=work)
        os.makedirs(os.path.join(dav, "upload"))
        # sendfile as Debian's nginx.conf has it (the bare default is off).
        nginx_port = nginx(f"sendfile on; client_max_body_size 0; client_body_temp_path {dav}/tmp;\n"
                           f"location /upload/ {{ root {dav}; dav_methods PUT; create_full_put_path on; }}")
    # (label, file size, uploads, downloads, connections)
    runs = [("1 MiB", 1 << 20, 8 if SMOKE else 256, 8 if SMOKE else 1000, 4),
            ("100 MiB", 100 << 20, 1 if SMOKE else 4, 1 if SMOKE else 20, 2)]
    for label, size, uploads, downloads, connections in runs:
        systems = [("canto + http_file_share.wasm", canto_share_slots(port, uploads, size))]
        if not SMOKE:
            systems.append(("Prosody 0.12 mod_http_file_share", prosody_share_slots(c2s, uploads, size)))
            systems.append(("nginx (dav_methods PUT, sendfile)", [
                {"url": f"http://127.0.0.1:{nginx_port}/upload/{label[:-4]}-{i}/file.bin", "headers": {}}
                for i in range(uploads)]))
        for direction in ("upload", "download"):
            results = []
            for name, slots in systems:
                if direction == "upload":
                    path = os.path.join(work, f"slots-{len(os.listdir(work))}.json")
                    with open(path, "w") as f:
                        json.dump(slots, f)
                    results.append(file_load("put", path, size, connections))
                else:
                    results.append(file_load("get", slots[0].get("get", slots[0]["url"]), downloads, connections))
            ours = results[0][0]
            for (name, _), (mib_s, errors) in zip(systems, results):
                failed = f" ({errors} failed)" if errors else ""
                rows.append((f"file share {direction} {label} ({connections} connections)", name,
                             f"{mib_s:,.0f} MiB/s{failed}", "" if name == systems[0][0] else f"canto = {ours / mib_s:.2f}x"))
    stop(proc)
    if prosody_proc:
        stop(prosody_proc)


def debian_tool(name, package):
    """The path of a Debian tool, also where a user's PATH may not look (/usr/sbin)."""
    for path in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if path and os.access(path, os.X_OK):
            return path
    sys.exit(f"{name} not found: bench/run and scripts/test install it (Debian package {package})")


def redis_server():
    """A throwaway redis-server on a free loopback port, nothing persisted; returns (process, port)."""
    port = free_port()
    directory = tempfile.mkdtemp(dir=work)
    process = start([debian_tool("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", directory, "--logfile", ""])
    wait_port(port)
    return process, port


def haproxy(frontends):
    """HAProxy in the foreground (`-db`) with one HTTP frontend per entry of
    `frontends`, each a list of backend ports taken round robin (per request:
    keep-alive connections are not pinned to a server); returns (process,
    the frontends' ports)."""
    binary = debian_tool("haproxy", "haproxy")
    root = tempfile.mkdtemp(dir=work)
    ports = [free_port() for _ in frontends]
    config = ["defaults", "  mode http", "  timeout connect 5s", "  timeout client 60s", "  timeout server 60s"]
    for i, (port, backends) in enumerate(zip(ports, frontends)):
        config += [f"frontend front{i}", f"  bind 127.0.0.1:{port}", f"  default_backend nodes{i}",
                   f"backend nodes{i}", "  balance roundrobin"]
        config += [f"  server node{j} 127.0.0.1:{backend}" for j, backend in enumerate(backends)]
    path = os.path.join(root, "haproxy.cfg")
    with open(path, "w") as f:
        f.write("\n".join(config) + "\n")
    checked = subprocess.run([binary, "-c", "-f", path], capture_output=True, text=True)
    if checked.returncode != 0:
        sys.exit(f"haproxy rejected {path}: {(checked.stderr or checked.stdout).strip()[-500:]}")
    process = start([binary, "-f", path, "-db"])
    for port in ports:
        wait_port(port)
    return process, ports


# wrk sends POST (no body: a zero-length request) to the URL's path.
POST = 'wrk.method = "POST"\n'


def count_post(url, report):
    """One more POST after a wrk run: the answer, the counter's new value,
    must count at least every increment wrk saw answered with success, plus
    this one (those in flight when wrk stopped may add more). Fewer means
    increments were lost."""
    answer = urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10).read()
    value = int(answer.decode().strip())
    counted = report["requests"] - report["errors"]
    if value < counted + 1:
        problem = f"{url}: counter at {value} after {counted:,} increments answered and one more"
        if SMOKE:
            sys.exit(f"smoke run failed: {problem}")
        print(f"  warning: {problem}", file=sys.stderr)


def scenario_counter():
    """wasi:keyvalue counters: http_counter's POST /counter/n/<key> with the
    embedded SQLite store and with Redis, its GET /counter/none (no store:
    the module's own cost), a native hyper + redis-rs server doing the same
    INCRBY on the same Redis, and 1 vs 2 canto nodes sharing the Redis store
    behind HAProxy. Each measurement counts its own key, one hot key each."""
    counter = os.path.join(GUESTS, "http_counter.wasm")
    if not os.path.exists(counter):
        sys.exit(f"no {counter}: bench/run builds the guest modules (cargo build --release -p canto)")
    redis, redis_port = redis_server()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"

    def node(store):
        data = tempfile.mkdtemp(dir=work)
        proc, port, _ = canto(
            f'data_path = "{data}"\n'
            f'http_stores = {{ shared = {{ backend = "redis"; url = "{redis_url}" }} }}\n'
            'http_module_grants = { counter = { stores = { "default", "shared" } } }\n'
            f'VirtualHost "localhost"\n  modules_enabled = {{ "http_counter" }}\n  counter_store = "{store}"\n',
            plugins=[("http_counter", counter)])
        return proc, port

    sqlite, sqlite_port = node("default")
    shared, shared_port = node("shared")
    native_port = free_port()
    native = start([NATIVE_COUNTER, str(native_port), redis_url])
    wait_port(native_port)

    def measure(url, script=POST):
        report = wrk_run(url, script=script)
        if script:
            count_post(url, report)
        return report

    def figure(report):
        return f"{report['rps']:,.0f} req/s, p50 {report['p50']:.2f} ms, p99 {report['p99']:.2f} ms"

    none = measure(f"http://localhost:{shared_port}/counter/none", script=None)
    on_sqlite = measure(f"http://localhost:{sqlite_port}/counter/n/sqlite")
    on_redis = measure(f"http://localhost:{shared_port}/counter/n/redis")
    native_report = measure(f"http://127.0.0.1:{native_port}/counter/n/native")
    module = f"canto + http_counter.wasm, {FRESH}"
    for system, report, ratio in [
        (f"{module}: GET /counter/none (no store)", none, ""),
        (f"{module}: POST, SQLite store (`default`)", on_sqlite, f"sqlite/none = {on_sqlite['rps'] / none['rps']:.2f}x"),
        (f"{module}: POST, Redis store", on_redis, f"redis/none = {on_redis['rps'] / none['rps']:.2f}x"),
        ("native hyper + redis-rs ConnectionManager: POST, INCRBY", native_report,
         f"redis-canto/native = {on_redis['rps'] / native_report['rps']:.2f}x"),
    ]:
        rows.append(("counter (wasi:keyvalue)", system, figure(report), ratio))
    stop(native)
    stop(sqlite)

    # Scaling out: the same HAProxy in front of one node, then of two (the
    # first node and a second one), every node counting in the same Redis.
    second, second_port = node("shared")
    proxy, (one_port, two_port) = haproxy([[shared_port], [shared_port, second_port]])
    one = measure(f"http://localhost:{one_port}/counter/n/one-node")
    two = measure(f"http://localhost:{two_port}/counter/n/two-nodes")
    cores = os.cpu_count()
    rows.append(("counter behind HAProxy (Redis store)", "HAProxy -> 1 canto node", figure(one), ""))
    rows.append(("counter behind HAProxy (Redis store)", "HAProxy -> 2 canto nodes, round robin", figure(two),
                 f"2 nodes/1 node = {two['rps'] / one['rps']:.2f}x (wrk, HAProxy, Redis and the nodes share "
                 f"{cores} cores: on 2 cores this mostly shows overhead, not scaling)"))
    for process in (proxy, second, shared, redis):
        stop(process)


SCENARIOS = [("hello", scenario_hello), ("wasi-http", scenario_wasi_http), ("static", scenario_static),
             ("https", scenario_https), ("vhosts", scenario_vhosts), ("languages", scenario_languages),
             ("reload", scenario_reload), ("restart", scenario_restart), ("websocket", scenario_websocket),
             ("xmpp", scenario_xmpp), ("file-share", scenario_file_share), ("counter", scenario_counter)]

# A SIGTERM (a CI timeout, say) ends the run through the `finally` below, so
# the servers it started (each in a session of its own) are stopped too.
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"terminated by signal {signum}"))

# Thousands of sockets each: the servers and the load inherit this.
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)

try:
    print(f"canto benchmarks: {DURATION} s per measurement, {CONNECTIONS} connections, "
          f"{os.cpu_count()} cores (wrk and the servers share them)", flush=True)
    for name, run in SCENARIOS:
        if not ONLY or name in ONLY:
            print(f"  running {name} ...", file=sys.stderr, flush=True)
            run()
    print()
    print("| scenario | system | figure | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
finally:
    for process in processes:
        if process.returncode is None:  # not yet stopped and reaped
            stop(process)
    shutil.rmtree(work, ignore_errors=True)
