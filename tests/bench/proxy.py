"""AI proxy overhead against a running stack (scripts/bench.sh starts one).

Four targets answer the same non-streaming chat completion from the same
fake OpenAI upstream (the stack's fakes server, `fakes_url` in
$DEX_STACK_JSON):

  upstream     the fake itself, called directly;
  passthrough  a minimal JS Worker (tests/bench/passthrough/) in its own
               `wrangler dev --local`: forwards the body, streams the answer;
  proxy        our Worker, `POST /v1/chat/completions` with a real API key;
  litellm      LiteLLM's proxy (one uvicorn worker, no database), installed
               into tests/bench/.venv-litellm when missing.

For each, at concurrency 1 and 64: a warm-up, then a bounded number of
requests (capped in wall time); prints p50/p99 latency, requests per second
and, for the process-group-owning targets, CPU milliseconds per request of
that target's server processes (utime+stime from /proc). Then a summary and
our proxy against the pass-through Worker. Prints numbers; asserts nothing.

The load client (asyncio + aiohttp, one keep-alive connection per concurrent
worker) is the same for every target. It runs in tests/bench/.venv, created
from requirements.txt when missing. Every server this script starts is
started in its own session (process group) and stopped by killing that group.
"""
import argparse
import asyncio
import statistics
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VENV = HERE / ".venv"
LITELLM_VENV = HERE / ".venv-litellm"
LITELLM_VERSION = "1.106.2"  # installs here (newer ones need packages the index lacks)
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}).encode()
EXPECTED_REPLY = "Hello from the fake OpenAI. You said: hello"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------ client venv

def ensure_client():
    """Re-executes this script in tests/bench/.venv (created when missing),
    so that the client is the pinned one whatever python3 has installed."""
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        try:
            import aiohttp  # noqa: F401
        except ImportError:
            sys.exit("[bench] aiohttp is missing from tests/bench/.venv; delete the folder to reinstall")
        return
    if not py.exists() or subprocess.run([str(py), "-c", "import aiohttp"], capture_output=True, timeout=60).returncode != 0:
        log("creating tests/bench/.venv (load client)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=120)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "-r", str(HERE / "requirements.txt")], check=True, timeout=300)
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *sys.argv[1:]])


# ------------------------------------------------------------------ /proc

def proc_stat(pid):
    """(comm, pgrp, utime+stime ticks) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1:raw.rindex(")")]
    f = raw[raw.rindex(")") + 2:].split()
    # f[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    return comm, int(f[2]), int(f[11]) + int(f[12])


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def group_cpu_ms(pgid, comm=None):
    """CPU ms (user+system, all threads) of the live processes in a process
    group, only those named `comm` when given; and how many there were."""
    ticks, n = 0, 0
    for pid in all_pids():
        s = proc_stat(pid)
        if s and s[1] == pgid and (comm is None or s[0] == comm):
            ticks += s[2]
            n += 1
    return ticks * 1000.0 / CLK_TCK, n


def workerd_group_for_port(port):
    """Process group of the workerd serving 127.0.0.1:<port> (the stack's
    wrangler, whose pid stack.sh does not expose)."""
    needle = f"--socket-addr=entry=127.0.0.1:{port}".encode()
    for pid in all_pids():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in args:
            s = proc_stat(pid)
            if s and s[0] == "workerd":
                return s[1]
    return None


def fakes_group(fakes_url):
    """Process group of the stack's fakes server (started by stack.sh)."""
    port = fakes_url.rsplit(":", 1)[1].split("/")[0].encode()
    for pid in all_pids():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/fakes") and b"--port" in args and port in args:
            s = proc_stat(pid)
            return s[1] if s else None
    return None


def machine_busy_ms():
    """CPU ms spent busy by the whole machine (all cores) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle ...: irq/softirq time is left out, as it is not
    # charged to processes (loopback traffic would count as foreign load).
    return (v[0] + v[1] + v[2]) * 1000.0 / CLK_TCK


class Noise:
    """Busy CPU outside this script, the target and the fakes: other work
    on the machine that would disturb a run."""

    def __init__(self, groups):
        self.groups = [g for g in groups if g]

    def read(self):
        t = os.times()
        ours = (t.user + t.system) * 1000.0 + sum(group_cpu_ms(g)[0] for g in self.groups)
        return machine_busy_ms(), ours


class CpuProbe:
    def __init__(self, pgid, comm, label):
        self.pgid, self.comm, self.label = pgid, comm, label

    def read(self):
        """(CPU ms of the `comm` processes, CPU ms of the whole group)."""
        whole = group_cpu_ms(self.pgid)[0]
        return (group_cpu_ms(self.pgid, self.comm)[0] if self.comm else whole), whole


# ------------------------------------------------------------- processes

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_group(args, log_path, cwd=None, env=None):
    """Starts a server in its own session, so its pid is its process group."""
    logf = open(log_path, "wb")
    try:
        return subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        logf.close()


def stop_group(proc, seconds=6.0):
    """SIGTERM to the whole process group, then SIGKILL after `seconds`."""
    if proc is None:
        return
    pgid = proc.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        proc.poll()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def wait_http(url, proc, seconds, log_path):
    """Waits until `url` answers anything over HTTP; False if the process
    died or time ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log(f"process exited with {proc.returncode}; last lines of {log_path}:")
            print(tail(log_path), file=sys.stderr)
            return False
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    log(f"{url} did not answer within {seconds} s; last lines of {log_path}:")
    print(tail(log_path), file=sys.stderr)
    return False


def tail(path, n=25):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def http_json(method, url, token, body=None, timeout=30):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


# ------------------------------------------------------------------ load

def pct(sorted_samples, p):
    s = sorted_samples
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


# `Server-Timing` entries our proxy reports (limits, wallet-reserve, upstream,
# wallet-settle), per concurrency, from the measured (not warm-up) requests.
SERVER_TIMING = {}


def parse_server_timing(value):
    out = {}
    for part in value.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                out[name] = float(rest[4:])
            except ValueError:
                pass
    return out


async def phase(session, url, headers, concurrency, total, max_seconds, record_timing=False):
    """`total` requests by `concurrency` workers, none started after
    `max_seconds`. Returns (latencies of 200s in ms, error counts, wall s)."""
    import aiohttp

    latencies, errors, samples = [], {}, {}
    issued = 0
    started = time.perf_counter()
    deadline = started + max_seconds
    last_end = started

    async def worker():
        nonlocal issued, last_end
        while issued < total and time.perf_counter() < deadline:
            issued += 1
            t0 = time.perf_counter()
            try:
                async with session.post(url, data=BODY, headers=headers) as r:
                    payload = await r.read()
                    status = r.status
                    timing = r.headers.get("server-timing")
                    if record_timing and timing and status == 200:
                        SERVER_TIMING.setdefault(concurrency, []).append(parse_server_timing(timing))
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                key = type(e).__name__
                errors[key] = errors.get(key, 0) + 1
                await asyncio.sleep(0.01)  # do not spin on a dead target
                continue
            t1 = time.perf_counter()
            last_end = max(last_end, t1)
            if status == 200:
                latencies.append((t1 - t0) * 1000)
            else:
                errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
                samples.setdefault(f"HTTP {status}", payload[:160].decode(errors="replace"))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, max(last_end - started, 1e-9), samples


async def run_load(url, headers, concurrency, total, max_seconds, warmup, probe, noise):
    import aiohttp

    headers = {**headers, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await phase(session, url, headers, concurrency, warmup, min(15.0, max_seconds))
        await asyncio.sleep(0.3)
        cpu0 = probe.read() if probe else None
        noise0, t0 = noise.read(), time.perf_counter()
        latencies, errors, wall, samples = await phase(session, url, headers, concurrency, total, max_seconds, record_timing=True)
        await asyncio.sleep(0.5)  # let after-response work (usage records) finish
        cpu1 = probe.read() if probe else None
        noise1, t1 = noise.read(), time.perf_counter()
    result = {"c": concurrency, "ok": len(latencies), "errors": errors, "wall_s": wall, "samples": samples,
              "other_cores": max(0.0, (noise1[0] - noise0[0]) - (noise1[1] - noise0[1])) / 1000.0 / (t1 - t0)}
    if latencies:
        s = sorted(latencies)
        result.update(p50=pct(s, 50), p99=pct(s, 99), mean=sum(s) / len(s), rps=len(s) / wall)
        if probe:
            done = len(latencies) + sum(errors.values())
            result["cpu_ms_per_req"] = (cpu1[0] - cpu0[0]) / done
            if probe.comm:  # wrangler's node process too (request logging, stdout)
                result["group_cpu_ms_per_req"] = (cpu1[1] - cpu0[1]) / done
    return result


def check_answer(url, headers):
    """One request; None when it is the fake's answer, else what went wrong."""
    req = urllib.request.Request(url, method="POST", data=BODY, headers={**headers, "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}: {e.read().decode(errors='replace')[:300]}"
    except (urllib.error.URLError, OSError) as e:
        return f"no answer: {e}"
    try:
        reply = json.loads(text)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"unexpected answer: {text[:300]}"
    return None if reply == EXPECTED_REPLY else f"unexpected reply: {reply[:200]!r}"


# --------------------------------------------------------------- targets

class Target:
    """A name, a URL, request headers, an optional CPU probe, and the
    servers to stop afterwards."""

    def __init__(self, name, url, headers, probe=None, procs=(), note=""):
        self.name, self.url, self.headers, self.probe, self.procs, self.note = name, url, headers, probe, list(procs), note


def start_passthrough(fakes_url, workdir):
    src = HERE / "passthrough"
    dst = workdir / "passthrough"
    shutil.copytree(src, dst)  # wrangler writes .wrangler/ next to its config: keep it out of the repo
    port = free_port()
    log_path = workdir / "passthrough.log"
    env = {**os.environ, "WRANGLER_SEND_METRICS": "false"}
    env.pop("DEX_SKIP_BUILD", None)
    proc = start_group([str(WRANGLER), "dev", "--local", "--ip", "127.0.0.1", "--port", str(port), "--inspector-port", "0",
                        "--show-interactive-dev-session=false", "--var", f"UPSTREAM:{fakes_url}/openai/v1/chat/completions"],
                       log_path, cwd=dst, env=env)
    log(f"pass-through Worker: wrangler pid/pgid {proc.pid} on 127.0.0.1:{port} (log {log_path})")
    if not wait_http(f"http://127.0.0.1:{port}/", proc, 90, log_path):
        stop_group(proc)
        return None, "the pass-through Worker did not start"
    return Target("passthrough", f"http://127.0.0.1:{port}/v1/chat/completions", {"authorization": "Bearer x"},
                  CpuProbe(proc.pid, "workerd", "workerd"), [proc]), None


def litellm_installed(py):
    if not py.exists():
        return False
    r = subprocess.run([str(py), "-c", "import importlib.metadata as m; print(m.version('litellm'))"], capture_output=True, text=True, timeout=60)
    return r.returncode == 0 and r.stdout.strip() == LITELLM_VERSION


def start_litellm(fakes_url, workdir, install_seconds):
    py = LITELLM_VENV / "bin" / "python"
    if not litellm_installed(py):
        log(f"installing litellm[proxy]=={LITELLM_VERSION} into {LITELLM_VENV} (once; large)")
        t0 = time.monotonic()
        try:
            if not py.exists():
                subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=120, capture_output=True)
            r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], timeout=install_seconds,
                               capture_output=True, text=True)
        except subprocess.TimeoutExpired:
            return None, f"installing litellm[proxy]=={LITELLM_VERSION} took longer than {install_seconds} s"
        except subprocess.CalledProcessError as e:
            return None, f"could not create {LITELLM_VENV}: {e}"
        if r.returncode != 0 or not litellm_installed(py):
            return None, f"could not install litellm[proxy]=={LITELLM_VERSION}: {(r.stderr or r.stdout).strip()[-300:]}"
        log(f"installed litellm in {time.monotonic() - t0:.0f} s")
    port = free_port()
    master_key = "sk-bench-" + os.urandom(16).hex()
    config = workdir / "litellm_config.yaml"
    # JSON is YAML: no YAML writer needed here.
    config.write_text(json.dumps({
        "model_list": [{"model_name": "gpt-4o-mini",
                        "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{fakes_url}/openai/v1", "api_key": "x"}}],
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": master_key, "disable_spend_logs": True},
    }, indent=2))
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DIRECT_URL", "REDIS_HOST", "REDIS_URL", "LITELLM_MASTER_KEY")}
    env.update({
        "LITELLM_TELEMETRY": "False",            # no usage pings
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # the bundled price map, not a download
        "LITELLM_LOG": "ERROR",
        "LITELLM_MODE": "PRODUCTION",            # no .env loading
        "DISABLE_ADMIN_UI": "True",
        "NO_DOCS": "True",
        "NO_REDOC": "True",
    })
    log_path = workdir / "litellm.log"
    proc = start_group([str(LITELLM_VENV / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                        "--num_workers", "1"], log_path, cwd=workdir, env=env)
    log(f"LiteLLM {LITELLM_VERSION}: pid/pgid {proc.pid} on 127.0.0.1:{port} (log {log_path})")
    if not wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, 180, log_path):
        stop_group(proc)
        return None, "LiteLLM did not start within 180 s"
    return Target("litellm", f"http://127.0.0.1:{port}/v1/chat/completions", {"authorization": "Bearer " + master_key},
                  CpuProbe(proc.pid, None, "all"), [proc], note=f"litellm {LITELLM_VERSION}"), None


def proxy_target(stack, key_mode, plan):
    base = stack["base_url"]
    port = int(base.rsplit(":", 1)[1].split("/")[0])
    op_key = stack["operator"]["api_key"]
    if key_mode == "operator":
        key, how = op_key, "operator key (exempt from the per-key rate limit)"
    else:
        email = f"bench-proxy-{int(time.time() * 1000)}@bench.test"
        account = {"email": email, "password": "bench-password-1", "name": "Proxy benchmark", "plan": plan}
        try:
            try:
                created = http_json("POST", base + "/v1/admin/accounts", op_key, account)
            except urllib.error.HTTPError as e:
                if e.code != 400:
                    raise
                log(f"plan {plan!r} refused ({e.read().decode(errors='replace')[:120]}); creating the account with the default plan")
                plan = "default"
                del account["plan"]
                created = http_json("POST", base + "/v1/admin/accounts", op_key, account)
        except urllib.error.HTTPError as e:
            return None, f"could not create the bench account: HTTP {e.code} {e.read().decode(errors='replace')[:200]}"
        key = created["api_key"]["key"]
        # Credit, in case the proxy checks the balance; not every build does.
        try:
            http_json("POST", f"{base}/v1/admin/accounts/{created['account']['id']}/credits", op_key,
                      {"amount_usd": "1000", "reason": "proxy benchmark", "idempotency_key": "bench-" + email})
        except (urllib.error.URLError, OSError, KeyError):
            pass
        limit = os.environ.get("DEX_BENCH_RATE_LIMIT")
        how = f"fresh account's API key (non-operator, plan {plan}, credited $1000); " + (
            f"stack started with RATE_LIMIT_PER_MINUTE=RATE_LIMIT_BURST=GLOBAL_RATE_LIMIT_PER_MINUTE={limit}" if limit
            else "stack's own request limits (60/min, burst 10 unless raised): expect 429s")
    pgid = workerd_group_for_port(port)
    probe = CpuProbe(pgid, "workerd", "workerd") if pgid else None
    if not pgid:
        log(f"no workerd with --socket-addr=entry=127.0.0.1:{port}: no CPU figures for the proxy")
    return Target("proxy", base + "/v1/chat/completions", {"authorization": "Bearer " + key}, probe, note=how), None


# ----------------------------------------------------------------- output

def wrangler_version():
    try:
        return json.loads((ROOT / "node_modules" / "wrangler" / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def run_line(name, r):
    errs = ", ".join(f"{k}×{v}" for k, v in sorted(r["errors"].items())) or "0"
    first = "".join(f"\n{'':<12} first {k} answer: {v}" for k, v in sorted(r["samples"].items()))
    if not r["ok"]:
        return f"{name:<12} c={r['c']:<3} no successful request (errors: {errs}){first}"
    cpu, group = r.get("cpu_ms_per_req"), r.get("group_cpu_ms_per_req")
    cpu_s = "-" if cpu is None else f"{cpu:.3f} ms"
    group_s = "" if group is None else f" (whole wrangler group {group:.3f} ms)"
    return (f"{name:<12} c={r['c']:<3} n={r['ok']:<5} p50={r['p50']:7.2f} ms  p99={r['p99']:7.2f} ms  "
            f"rps={r['rps']:8.1f}  wall={r['wall_s']:5.1f} s  other load={r['other_cores']:.2f} cores  errors={errs}  "
            f"cpu/req={cpu_s}{group_s}{first}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="upstream,passthrough,proxy,litellm")
    ap.add_argument("--requests-c1", type=int, default=300)
    ap.add_argument("--requests-c64", type=int, default=2000)
    ap.add_argument("--max-seconds", type=float, default=30.0, help="wall-time cap of each measured run")
    ap.add_argument("--proxy-key", choices=["auto", "account", "operator"], default="auto",
                    help="auto: a fresh account's key when DEX_BENCH_RATE_LIMIT says the stack's limit was raised, else the operator key")
    ap.add_argument("--proxy-plan", default="pro",
                    help="plan of the bench account: its tokens-per-minute bucket must hold 64 worst-case requests (pro: 2M)")
    ap.add_argument("--litellm-install-seconds", type=int, default=600)
    args = ap.parse_args()
    args.requests_c1 = max(1, min(args.requests_c1, 100_000))
    args.requests_c64 = max(1, min(args.requests_c64, 100_000))
    args.max_seconds = max(1.0, min(args.max_seconds, 300.0))

    stack = json.load(open(os.environ["DEX_STACK_JSON"]))
    fakes = stack["fakes_url"].rstrip("/")
    for url in (fakes, stack["base_url"]):
        host = url.split("//", 1)[1].split("/")[0].rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost", "[::1]"):
            sys.exit(f"[bench] refusing a non-loopback target: {url}")
    wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
    key_mode = args.proxy_key
    if key_mode == "auto":
        key_mode = "account" if os.environ.get("DEX_BENCH_RATE_LIMIT") else "operator"

    workdir = Path(tempfile.mkdtemp(prefix="dex-bench-proxy."))
    started = []
    results = {}   # name -> {c: result}
    problems = {}  # name -> why it has no numbers
    notes = {}
    plan = [(1, args.requests_c1, 50), (64, args.requests_c64, 256)]

    print(f"AI proxy benchmark: POST chat completion (non-streaming, {len(BODY)}-byte body), {os.cpu_count()} cores, loopback; "
          f"per run: warm-up then ≤{args.requests_c1} requests at c=1 / ≤{args.requests_c64} at c=64, each ≤{args.max_seconds:.0f} s")
    print(f"upstream: fake OpenAI at {fakes}/openai/v1/chat/completions; Workers: wrangler {wrangler_version()} dev --local; "
          f"client: aiohttp, keep-alive, same for every target")
    fakes_pgid = fakes_group(fakes)
    idle = Noise([fakes_pgid])
    n0, t0 = idle.read(), time.perf_counter()
    time.sleep(1.0)
    n1 = idle.read()
    other = max(0.0, (n1[0] - n0[0]) - (n1[1] - n0[1])) / 1000.0 / (time.perf_counter() - t0)
    print(f"other load before the runs: {other:.2f} cores" + ("  (machine not idle: numbers may be noisy)" if other > 0.2 else "")
          + "; 'other load' per run = busy CPU outside this client, the target and the fakes")
    sys.stdout.flush()
    try:
        for name in wanted:
            target, why = None, None
            try:
                if name == "upstream":
                    target = Target("upstream", f"{fakes}/openai/v1/chat/completions", {"authorization": "Bearer x"})
                elif name == "passthrough":
                    target, why = start_passthrough(fakes, workdir)
                elif name == "proxy":
                    target, why = proxy_target(stack, key_mode, args.proxy_plan)
                elif name == "litellm":
                    target, why = start_litellm(fakes, workdir, args.litellm_install_seconds)
                else:
                    why = "unknown target"
            except Exception as e:  # a target that breaks must not stop the others
                why = f"{type(e).__name__}: {e}"
            if target:
                started.extend(target.procs)
                if target.note:
                    notes[name] = target.note
                    print(f"{name}: {target.note}")
                why = check_answer(target.url, target.headers)
            if why:
                problems[name] = why
                print(f"{name:<12} ERROR: {why}")
                sys.stdout.flush()
            else:
                results[name] = {}
                for c, n, warm in plan:
                    groups = [fakes_pgid] + ([target.probe.pgid] if target.probe else [])
                    r = asyncio.run(run_load(target.url, target.headers, c, n, args.max_seconds, warm, target.probe, Noise(groups)))
                    results[name][c] = r
                    print(run_line(name, r))
                    sys.stdout.flush()
            if target:
                for p in target.procs:
                    stop_group(p)
                    started.remove(p)
    finally:
        for p in started:
            stop_group(p)
        shutil.rmtree(workdir, ignore_errors=True)

    summary(results, problems, notes)


def summary(results, problems, notes):
    print()
    print("summary (latency ms; cpu = ms of the target's server processes per request: workerd for Workers, the whole group for LiteLLM)")
    print(f"{'target':<12} {'c1 p50':>8} {'c1 p99':>8} {'c1 rps':>8} {'c1 cpu':>8} {'c64 p50':>8} {'c64 p99':>8} {'c64 rps':>8} {'c64 cpu':>8}")
    for name in ("upstream", "passthrough", "proxy", "litellm"):
        if name in problems:
            print(f"{name:<12} not measured: {problems[name][:100]}")
            continue
        if name not in results:
            continue
        cells = []
        for c in (1, 64):
            r = results[name].get(c, {})
            cells += [fmt(r.get("p50"), ".2f"), fmt(r.get("p99"), ".2f"), fmt(r.get("rps"), ".0f"), fmt(r.get("cpu_ms_per_req"), ".3f")]
        print(f"{name:<12} " + " ".join(f"{x:>8}" for x in cells))

    print()
    print("our proxy vs the pass-through Worker (owner's targets; informative, nothing fails):")
    pt, px = results.get("passthrough", {}), results.get("proxy", {})

    def get(d, c, k):
        return d.get(c, {}).get(k)

    def verdict(ok):
        return "met" if ok else "NOT met"

    a, b = get(px, 1, "p50"), get(pt, 1, "p50")
    if a is not None and b is not None:
        print(f"  added p50 at c=1:        {a - b:+.2f} ms   (target ≤ 1 ms: {verdict(a - b <= 1.0)})")
    else:
        print("  added p50 at c=1:        n/a (a target has no numbers)")
    a, b = get(px, 64, "rps"), get(pt, 64, "rps")
    if a is not None and b:
        print(f"  RPS at c=64:             {100 * a / b:.0f} % of pass-through ({a:.0f} vs {b:.0f})   (target ≥ 80 %: {verdict(a / b >= 0.8)})")
    else:
        print("  RPS at c=64:             n/a (a target has no numbers)")
    for c in (1, 64):
        a, b = get(px, c, "cpu_ms_per_req"), get(pt, c, "cpu_ms_per_req")
        label = f"added CPU/request c={c}:"
        if a is not None and b is not None:
            print(f"  {label:<24} {a - b:+.3f} ms (workerd {a:.3f} vs {b:.3f} ms)   (target ≤ 1 ms: {verdict(a - b <= 1.0)})")
        else:
            print(f"  {label:<24} n/a")
    if "litellm" in results and "proxy" in results:
        lt = results["litellm"]
        a, b = get(px, 1, "p50"), get(lt, 1, "p50")
        c_, d = get(px, 64, "rps"), get(lt, 64, "rps")
        if None not in (a, b, c_, d) and d:
            print(f"our proxy vs LiteLLM: p50 at c=1 {a:.2f} vs {b:.2f} ms; RPS at c=64 {c_:.0f} vs {d:.0f} ({c_ / d:.1f}×)")
    if "proxy" in notes:
        print(f"proxy auth: {notes['proxy']}")
    # Where a proxied request's time goes (the Worker's own Server-Timing).
    for c, rows in sorted(SERVER_TIMING.items()):
        names = ["limits", "wallet-reserve", "upstream", "wallet-settle"]
        means = {n: statistics.mean([r[n] for r in rows if n in r]) for n in names if any(n in r for r in rows)}
        parts = ", ".join(f"{n} {v:.2f} ms" for n, v in means.items())
        rs = means.get("wallet-reserve", 0) + means.get("wallet-settle", 0)
        print(f"proxy Server-Timing at c={c} (mean of {len(rows)}): {parts}; reserve + settle {rs:.2f} ms")
    px = results.get("proxy", {})
    if px.get(64):
        print(f"one hot account (every request on one key and one WALLET object) sustained {px[64]['rps']:.0f} requests/s at c=64. "
              "Non-streaming requests reserve and settle against the isolate's lease on the wallet, so the object sees one "
              "renewal per ~32 requests (or per 250 ms flush), not two calls per request; accounts scale out because each "
              "has its own object.")


if __name__ == "__main__":
    ensure_client()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop what we started
    main()
