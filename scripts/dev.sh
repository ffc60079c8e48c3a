#!/usr/bin/env bash
# `make dev`: the whole stack on this machine, offline. The Worker in workerd
# on 127.0.0.1:8787 (local D1, KV, Durable Objects, Queues, cron) and the
# fakes on 127.0.0.1:8790. State persists in .dev/ between runs; Ctrl-C stops
# everything that was started.
set -euo pipefail
source "$(dirname "$0")/stack.sh"
cd "$ROOT"

PORT="${DEX_PORT:-8787}"
FAKES_PORT="${DEX_FAKES_PORT:-8790}"
STATE="$ROOT/.dev"

bash scripts/toolchain.sh
trap 'stack_stop; exit 130' INT TERM
trap 'stack_stop' EXIT
stack_start "$PORT" "$FAKES_PORT" "$STATE/persist" "$STATE" 5

json() { python3 -c "import json,sys; d=json.load(open('$STATE/stack.json')); print(eval('d'+sys.argv[1]))" "$1"; }
cat <<MSG

  Dex Edge is running (offline).
    Worker      http://127.0.0.1:$PORT        log: .dev/worker.log
    Fakes       http://127.0.0.1:$FAKES_PORT   recorded requests: /__fakes/requests
    Stack file  .dev/stack.json

  Operator  $(json '["operator"]["email"]')  key $(json '["operator"]["api_key"]')
  Demo      $(json '["demo"]["email"]')  key $(json '["demo"]["api_key"]')

  Try:
    curl -s http://127.0.0.1:$PORT/health
    curl -s http://127.0.0.1:$PORT/v1/me -H "Authorization: Bearer $(json '["demo"]["api_key"]')"
    curl -s http://127.0.0.1:$PORT/v1/chat/completions -H "Authorization: Bearer $(json '["demo"]["api_key"]')" \
      -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}' 
    curl -s "http://127.0.0.1:$PORT/__scheduled?cron=*/5+*+*+*+*"

  Ctrl-C stops everything.
MSG
wait
