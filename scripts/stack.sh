#!/usr/bin/env bash
# Shared by scripts/dev.sh and scripts/e2e.sh: start the fakes and the Worker
# in workerd (wrangler dev --local) with every external base URL pointed at
# the fakes, apply migrations, seed an operator and a demo account, and write
# the stack description (stack.json). Source it; do not run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WRANGLER="$ROOT/node_modules/.bin/wrangler"
export WRANGLER_SEND_METRICS=false

# Local-only secrets. Never used outside a local stack.
LOCAL_KEY_PEPPER="local-pepper-not-a-secret"
LOCAL_BOOTSTRAP_TOKEN="local-bootstrap-token"
LOCAL_STRIPE_WEBHOOK_SECRET="whsec_local_not_a_secret"
LOCAL_JWT_SIGNING_KEYS="local-1:local-jwt-signing-secret-not-a-secret-0001"
# 32 bytes, base64; seals per-account upstream keys in local D1.
LOCAL_ENCRYPTION_KEY="bG9jYWwtZW5jcnlwdGlvbi1rZXktbm90LXNlY3JldCE="
OPERATOR_EMAIL="operator@dex.local"
OPERATOR_PASSWORD="operator-password-local"
DEMO_EMAIL="demo@dex.local"
DEMO_PASSWORD="demo-password-local"

STACK_PIDS=()

stack_log() { printf '[stack] %s\n' "$*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url seconds
  local url=$1 secs=$2 i
  for ((i = 0; i < secs * 5; i++)); do
    curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# Stops everything this shell started, by process group (wrangler has node
# and workerd children), never by name.
stack_stop() {
  local pid
  for pid in "${STACK_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${STACK_PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.3; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
}

# stack_start PORT FAKES_PORT PERSIST_DIR STATE_DIR RETRY_BASE_SECONDS [--var K:V ...]
stack_start() {
  local port=$1 fakes_port=$2 persist=$3 state=$4 retry_base=$5
  shift 5
  local extra_vars=("$@")
  mkdir -p "$persist" "$state"
  local fakes_url="http://127.0.0.1:$fakes_port"

  stack_log "building the fakes server"
  (cd "$ROOT" && cargo build -q -p dex-edge-tests --bin fakes)
  stack_log "starting fakes on $fakes_url"
  setsid "$ROOT/target/debug/fakes" --port "$fakes_port" >"$state/fakes.log" 2>&1 </dev/null &
  STACK_PIDS+=($!)
  wait_http "$fakes_url/__fakes/health" 30 || { stack_log "fakes did not start"; cat "$state/fakes.log" >&2; return 1; }

  stack_log "applying D1 migrations to $persist"
  (cd "$ROOT" && "$WRANGLER" d1 migrations apply DB --local --persist-to "$persist" >"$state/migrations.log" 2>&1) ||
    { cat "$state/migrations.log" >&2; return 1; }

  local vars=(
    --var "ENVIRONMENT:local"
    --var "STARTING_CREDIT_USD:5"
    --var "KEY_PEPPER:$LOCAL_KEY_PEPPER"
    --var "ADMIN_BOOTSTRAP_TOKEN:$LOCAL_BOOTSTRAP_TOKEN"
    --var "JWT_SIGNING_KEYS:$LOCAL_JWT_SIGNING_KEYS"
    --var "APP_BASE_URL:http://127.0.0.1:$port"
    --var "STRIPE_WEBHOOK_SECRET:$LOCAL_STRIPE_WEBHOOK_SECRET"
    --var "JOB_RETRY_BASE_SECONDS:$retry_base"
    --var "CORS_ALLOWED_ORIGINS:https://dexto.ai,http://localhost:3000"
    --var "OPENAI_BASE_URL:$fakes_url/openai"
    --var "OPENAI_API_KEY:sk-local-fake-openai"
    --var "ANTHROPIC_BASE_URL:$fakes_url/anthropic"
    --var "ANTHROPIC_API_KEY:sk-ant-local-fake"
    --var "OPENROUTER_BASE_URL:$fakes_url/openrouter/api"
    --var "OPENROUTER_API_KEY:sk-or-local-fake"
    --var "OPENROUTER_PROVISIONING_KEY:sk-or-prov-local-fake"
    --var "ENCRYPTION_KEY:$LOCAL_ENCRYPTION_KEY"
    --var "UPSTREAM_FIRST_BYTE_TIMEOUT_MS:3000"
    --var "STRIPE_BASE_URL:$fakes_url/stripe"
    --var "STRIPE_SECRET_KEY:sk_test_local_fake"
    --var "TWILIO_BASE_URL:$fakes_url/twilio"
    --var "TWILIO_VERIFY_BASE_URL:$fakes_url/twilio"
    --var "TWILIO_ACCOUNT_SID:AC00000000000000000000000000000001"
    --var "TWILIO_AUTH_TOKEN:local-twilio-auth-token"
    --var "TWILIO_VERIFY_SERVICE_SID:VA00000000000000000000000000000001"
    --var "TELNYX_BASE_URL:$fakes_url/telnyx"
    --var "GOOGLE_OAUTH_BASE_URL:$fakes_url/google"
    --var "GOOGLE_ADMIN_BASE_URL:$fakes_url/google"
    --var "GOOGLE_GMAIL_BASE_URL:$fakes_url/google"
    --var "GOOGLE_CALENDAR_BASE_URL:$fakes_url/google/calendar"
    --var "SIGNAL_CLI_BASE_URL:$fakes_url/signal"
    --var "DOMAINS_BASE_URL:$fakes_url/domains"
    --var "WARMUP_BASE_URL:$fakes_url/warmup"
  )
  stack_log "starting the Worker in workerd on http://127.0.0.1:$port (log: $state/worker.log)"
  # Started directly (no subshell) so that $! is wrangler's own process group.
  cd "$ROOT"
  DEX_SKIP_BUILD="${DEX_SKIP_BUILD:-0}" setsid "$WRANGLER" dev --local --ip 127.0.0.1 --port "$port" \
    --inspector-port 0 --test-scheduled --persist-to "$persist" --show-interactive-dev-session=false "${vars[@]}" ${extra_vars[@]+"${extra_vars[@]}"} \
    >"$state/worker.log" 2>&1 </dev/null &
  STACK_PIDS+=($!)
  wait_http "http://127.0.0.1:$port/health" 180 || { stack_log "the Worker did not start"; tail -50 "$state/worker.log" >&2; return 1; }

  stack_seed "http://127.0.0.1:$port" "$fakes_url" "$persist" "$state"
}

# Seeds the operator and a demo account through the real admin routes, then
# writes stack.json for scripts and tests.
stack_seed() {
  local base=$1 fakes_url=$2 persist=$3 state=$4
  stack_log "seeding operator and demo account"
  STACK_BASE="$base" STACK_FAKES="$fakes_url" STACK_PERSIST="$persist" STACK_STATE="$state" STACK_ROOT="$ROOT" \
  BOOT="$LOCAL_BOOTSTRAP_TOKEN" OP_EMAIL="$OPERATOR_EMAIL" OP_PW="$OPERATOR_PASSWORD" DEMO_EMAIL="$DEMO_EMAIL" DEMO_PW="$DEMO_PASSWORD" \
  WHSEC="$LOCAL_STRIPE_WEBHOOK_SECRET" python3 - <<'PY'
import json, os, urllib.request, urllib.error

base = os.environ["STACK_BASE"]
def post(path, body, token):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)

state = os.environ["STACK_STATE"]
path = os.path.join(state, "stack.json")
try:
    op = post("/v1/admin/bootstrap", {"email": os.environ["OP_EMAIL"], "password": os.environ["OP_PW"], "key_name": "operator"}, os.environ["BOOT"])
    op_key = op["api_key"]["key"]
    demo = post("/v1/admin/accounts", {"email": os.environ["DEMO_EMAIL"], "password": os.environ["DEMO_PW"], "name": "Demo", "plan": "prepaid", "key_name": "demo"}, op_key)
except urllib.error.HTTPError as e:
    if e.code == 409 and os.path.exists(path):
        # A persisted stack was seeded before; its keys are in stack.json.
        raise SystemExit(0)
    raise SystemExit(f"seeding failed: {e.code} {e.read().decode()[:300]}")
stack = {
    "base_url": base,
    "fakes_url": os.environ["STACK_FAKES"],
    "persist_dir": os.environ["STACK_PERSIST"],
    "worker_log": os.path.join(state, "worker.log"),
    "repo_root": os.environ["STACK_ROOT"],
    "bootstrap_token": os.environ["BOOT"],
    "operator": {"email": os.environ["OP_EMAIL"], "password": os.environ["OP_PW"], "api_key": op_key, "account_id": op["account"]["id"]},
    "demo": {"email": os.environ["DEMO_EMAIL"], "password": os.environ["DEMO_PW"], "api_key": demo["api_key"]["key"], "account_id": demo["account"]["id"]},
    "stripe_webhook_secret": os.environ["WHSEC"],
    "twilio": {"account_sid": "AC00000000000000000000000000000001", "auth_token": "local-twilio-auth-token", "verify_service_sid": "VA00000000000000000000000000000001"},
}
with open(path, "w") as f:
    json.dump(stack, f, indent=2)
PY
}
