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

# The two databases run side by side (each with its own Redis database), which halves the
# wall time on a machine with two cores; KMEWEB_TEST_SERIAL=1 runs them one after the other
# with live output instead.
PG_REDIS_URL=$(python3 - "$TEST_REDIS_URL" <<'PYEOF'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
db = int(parts.path.strip("/") or 0)
print(urlunsplit(parts._replace(path=f"/{(db + 8) % 16}")))
PYEOF
)
if [ "${KMEWEB_TEST_SERIAL:-}" = "1" ]; then
  echo "== tests on SQLite (redis $TEST_REDIS_URL)"
  KMEWEB_TEST_DB=sqlite $PY -m pytest "$@"
  echo "== tests on PostgreSQL ($TEST_DATABASE_URL, redis $PG_REDIS_URL)"
  KMEWEB_TEST_DB=postgresql TEST_REDIS_URL=$PG_REDIS_URL $PY -m pytest "$@"
  exit 0
fi
mkdir -p .run
# Browser tests are the heaviest part (Chromium, live servers, worker processes): SQLite runs
# them first and PostgreSQL last, so the two runs do not drive Chromium at the same time.
if [ $# -eq 0 ]; then
  sqlite_args=(tests/browser tests)
  # tests/knox (the KME client against the simulator) touches no database: SQLite's half only.
  pg_args=($(ls -d tests/*/ | grep -v -e '^tests/browser/$' -e '^tests/knox/$') tests/*.py tests/browser)
else
  sqlite_args=("$@")
  pg_args=("$@")
fi
echo "== tests on SQLite (redis $TEST_REDIS_URL) and PostgreSQL ($TEST_DATABASE_URL, redis $PG_REDIS_URL), side by side"
KMEWEB_TEST_DB=sqlite $PY -m pytest "${sqlite_args[@]}" > .run/test-sqlite.log 2>&1 &
sqlite_pid=$!
KMEWEB_TEST_DB=postgresql TEST_REDIS_URL=$PG_REDIS_URL $PY -m pytest "${pg_args[@]}" > .run/test-postgresql.log 2>&1 &
pg_pid=$!
sqlite_rc=0; wait $sqlite_pid || sqlite_rc=$?
pg_rc=0; wait $pg_pid || pg_rc=$?
echo "== tests on SQLite"; cat .run/test-sqlite.log
echo "== tests on PostgreSQL"; cat .run/test-postgresql.log
[ $sqlite_rc -eq 0 ] && [ $pg_rc -eq 0 ]
