"""Key verification latency against a running stack (scripts/bench.sh starts one).

Cold: the first request with a key, whose context is not in KV yet (KV miss,
D1 lookup, KV write). Warm: the next request with the same key (KV hit).
Sequential requests (concurrency 1) over loopback to the Worker in workerd;
prints percentiles in milliseconds.
"""
import json
import os
import statistics
import sys
import time
import urllib.request

stack = json.load(open(os.environ["DEX_STACK_JSON"]))
BASE = stack["base_url"]
KEYS_PER_ACCOUNT = 40
ACCOUNTS = int(os.environ.get("BENCH_ACCOUNTS", "3"))


def call(method, path, token=None, body=None):
    req = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode())
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", "Bearer " + token)
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        payload = json.load(r)
    return (time.perf_counter() - started) * 1000, payload


def report(name, samples):
    s = sorted(samples)
    pct = lambda p: s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]
    print(f"{name:<34} n={len(s):<4} p50={pct(50):6.2f} ms  p95={pct(95):6.2f} ms  p99={pct(99):6.2f} ms  mean={statistics.mean(s):6.2f} ms")


keys = []
for a in range(ACCOUNTS):
    email = f"bench-{a}-{int(time.time() * 1000)}@bench.test"
    _, ses = call("POST", "/v1/auth/register", body={"email": email, "password": "bench-password-1"})
    for i in range(KEYS_PER_ACCOUNT):
        _, k = call("POST", "/v1/api-keys", ses["token"], {"name": f"bench-{i}"})
        keys.append(k["key"])

# Warm-up of the runtime itself (not of any key's cache).
for _ in range(20):
    call("GET", "/health")

cold, warm = [], []
for k in keys:
    ms, body = call("GET", "/keys/validate", k)
    assert body["valid"], body
    cold.append(ms)
    ms, body = call("GET", "/keys/validate", k)
    assert body["valid"], body
    warm.append(ms)
health = [call("GET", "/health")[0] for _ in range(len(keys))]

print(f"key verification, {len(keys)} keys, sequential, Worker in workerd (wrangler dev --local) on loopback")
report("GET /health (floor: no key, 1 D1 read)", health)
report("GET /keys/validate, cold (KV miss)", cold)
report("GET /keys/validate, warm (KV hit)", warm)
sys.exit(0)
