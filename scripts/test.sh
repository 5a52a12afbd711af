#!/usr/bin/env bash
# Run the whole suite on SQLite and on PostgreSQL against real Redis and Chromium.
# Private servers started here are stopped on exit; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python

started_before=$(ls .run/redis.pid .run/pg/data/postmaster.pid 2>/dev/null || true)
cleanup() { if [ -z "$started_before" ]; then python3 scripts/services.py stop; fi; }
trap cleanup EXIT

export TEST_REDIS_URL
TEST_REDIS_URL=$(python3 scripts/services.py redis --url "${TEST_REDIS_URL:-redis://127.0.0.1:6379/13}" --db 13)
export TEST_DATABASE_URL
TEST_DATABASE_URL=$(python3 scripts/services.py postgres --url "${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}")
export KMEWEB_CHROMIUM
KMEWEB_CHROMIUM=$(python3 scripts/services.py chromium --path "${KMEWEB_CHROMIUM:-/usr/bin/chromium}")

echo "== tests on SQLite (redis $TEST_REDIS_URL)"
KMEWEB_TEST_DB=sqlite $PY -m pytest "$@"
echo "== tests on PostgreSQL ($TEST_DATABASE_URL)"
KMEWEB_TEST_DB=postgresql $PY -m pytest "$@"
