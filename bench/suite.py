#!/usr/bin/env python3
"""canto's benchmark suite: every scenario side by side with its peers in one
run, reported as ratios (these machines are shared and noisy; absolute
numbers alone mean little). Run through bench/run, which builds everything.

Scenarios:
  hello      keep-alive HTTP/1.1 hello: canto vs native hyper, nginx, Prosody
  static     a 4 KiB file: canto's http_files vs nginx vs Prosody's mod_http_files
  languages  whoami in Rust, Python, JavaScript, C: size and per-request latency
  reload     module swap: write -> first request served by the new version
  restart    start -> listening with a cold vs warm compile cache

`--smoke` (what CI runs): canto only, 1 s per measurement, and any error
response fails the run, so the suite cannot rot.
"""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANTO = os.path.join(ROOT, "target/release/canto")
NATIVE = os.path.join(ROOT, "target/release/native-hello")
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
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    processes.append(process)
    return process


def stop(process):
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


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


def nginx(server_block):
    port = free_port()
    root = tempfile.mkdtemp(dir=work)
    conf = os.path.join(root, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""user root; daemon off; worker_processes 1; error_log {root}/error.log; pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; {server_block} }} }}
""")
    start(["nginx", "-c", conf, "-p", root])
    wait_port(port)
    return port


def prosody(config):
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
c2s_ports = {{}}; s2s_ports = {{}}; c2s_direct_tls_ports = {{}}; s2s_direct_tls_ports = {{}}
component_ports = {{}}; legacy_ssl_ports = {{}}; https_ports = {{}}
http_ports = {{ {port} }}
http_interfaces = {{ "127.0.0.1" }}
{config}""")
    start(["prosody", "--config", path, "-F"])
    wait_port(port)
    return port


def wrk(url, connections=CONNECTIONS, duration=DURATION):
    """(requests/s, p50 ms, p99 ms) from wrk."""
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        problem = " ".join(l.strip() for l in out.splitlines() if "Non-2xx" in l or "Socket" in l)
        if SMOKE:
            sys.exit(f"smoke run failed: {url}: {problem}")
        print(f"  warning: {url}: {problem}", file=sys.stderr)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label):
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, ms("50%"), ms("99%")


def throughput_rows(scenario, systems):
    """systems: [(name, url)], the first being canto; rows with canto's ratio to each peer."""
    if SMOKE:
        systems = systems[:1]
    results = [(name, wrk(url)) for name, url in systems]
    canto_rps = results[0][1][0]
    for name, (rps, p50, p99) in results:
        ratio = "" if name == results[0][0] else f"canto = {canto_rps / rps:.2f}x"
        rows.append((scenario, name, f"{rps:,.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms", ratio))


def scenario_hello():
    proc, port, _ = canto('VirtualHost "localhost"\n  modules_enabled = { "http_hello" }\n')
    native_port = nginx_port = prosody_port = 0
    if not SMOKE:
        native_port = free_port()
        start([NATIVE, str(native_port)])
        wait_port(native_port)
        nginx_port = nginx('location / { default_type "text/plain; charset=utf-8"; return 200 "hello from localhost\\n"; }')
        prosody_port = prosody('VirtualHost "localhost"\n  modules_enabled = { "bench_hello" }\n')
    throughput_rows("hello", [
        ("canto + http_hello.wasm", f"http://localhost:{port}/hello/"),
        ("native hyper", f"http://127.0.0.1:{native_port}/hello/"),
        ("nginx (return 200)", f"http://127.0.0.1:{nginx_port}/"),
        ("Prosody 0.12 Lua module", f"http://localhost:{prosody_port}/bench_hello/"),
    ])
    stop(proc)


def scenario_static():
    www = tempfile.mkdtemp(dir=work)
    with open(os.path.join(www, "4k.txt"), "wb") as f:
        f.write(os.urandom(2048).hex().encode())
    proc, port, _ = canto(
        f'VirtualHost "localhost"\n  modules_enabled = {{ "http_files" }}\n  http_files_dir = "{www}"\n',
        plugins=[("http_files", os.path.join(GUESTS, "http_files.wasm"))],
    )
    nginx_port = prosody_port = 0
    if not SMOKE:
        nginx_port = nginx(f"location /files/ {{ alias {www}/; }}")
        prosody_port = prosody(f'VirtualHost "localhost"\n  modules_enabled = {{ "http_files" }}\n  http_files_dir = "{www}"\n')
    throughput_rows("static 4 KiB", [
        ("canto + http_files.wasm", f"http://localhost:{port}/files/4k.txt"),
        ("nginx", f"http://127.0.0.1:{nginx_port}/files/4k.txt"),
        ("Prosody mod_http_files", f"http://localhost:{prosody_port}/files/4k.txt"),
    ])
    stop(proc)


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


SCENARIOS = [("hello", scenario_hello), ("static", scenario_static), ("languages", scenario_languages),
             ("reload", scenario_reload), ("restart", scenario_restart)]

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
        if process.poll() is None:
            process.kill()
    shutil.rmtree(work, ignore_errors=True)
