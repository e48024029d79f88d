#!/usr/bin/env bash
# `make run`: migrate the database (the embedded PostgreSQL in .local/ unless DATABASE_URL is
# set), print how to call the service, then run it in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${PORT:-8000}"
export PORT

$BIN/python -m migrate >/dev/null || { echo "run: the migration failed (see above)" >&2; exit 1; }
$BIN/python -m migrate --check >/dev/null

cat <<EOT

langgraph-pg is starting on http://127.0.0.1:${PORT}  (database: ${DATABASE_URL:+\$DATABASE_URL}${DATABASE_URL:-embedded PostgreSQL in .local/pgdata; make db-stop stops it})

  curl -s localhost:${PORT}/ready
  curl -s -X POST localhost:${PORT}/threads -H 'content-type: application/json' -d '{"graph_id": "support"}'
  curl -s -X POST localhost:${PORT}/threads/<thread_id>/runs/wait -H 'content-type: application/json' \\
       -d '{"assistant_id": "support", "input": {"messages": [{"role": "user", "content": "Where is my invoice?"}]}}'

  .venv/bin/python - <<'PY'
  from langgraph_sdk import get_sync_client
  client = get_sync_client(url="http://127.0.0.1:${PORT}")
  thread = client.threads.create(graph_id="support")
  for part in client.runs.stream(thread["thread_id"], "support", stream_mode="updates",
                                 input={"messages": [{"role": "user", "content": "Are returns guaranteed?"}]}):
      print(part.event, part.data)
  print(client.threads.get(thread["thread_id"])["status"])   # interrupted: waiting for approval
  PY

EOT
exec $BIN/python -m service
