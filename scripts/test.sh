#!/usr/bin/env bash
# Run the whole suite on SQLite and on PostgreSQL against real Redis and Chromium.
# Private servers started here are stopped on exit; nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
# Every process the suite starts (four pytest processes, some forty `flask worker` processes,
# the CLI and gunicorn ones) imports kmeweb. With PYTHONDONTWRITEBYTECODE set (as on these
# machines) each one compiled kmeweb's source again, about 0.3 CPU-seconds a start, and
# pytest rewrote every test module in each process: compile once, and let pytest keep its
# rewritten modules.
unset PYTHONDONTWRITEBYTECODE
$PY -m compileall -q -j 0 kmeweb tests wsgi.py config.py > /dev/null

started_before=$(ls .run/redis.pid .run/pg/data/postmaster.pid 2>/dev/null || true)
cleanup() { if [ -z "$started_before" ]; then python3 scripts/services.py stop; fi; }
trap cleanup EXIT

export TEST_REDIS_URL
TEST_REDIS_URL=$(python3 scripts/services.py redis --url "${TEST_REDIS_URL:-redis://127.0.0.1:6379/13}" --db 13)
export TEST_DATABASE_URL
TEST_DATABASE_URL=$(python3 scripts/services.py postgres --url "${TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/postgres}")
export KMEWEB_CHROMIUM
KMEWEB_CHROMIUM=$(python3 scripts/services.py chromium --path "${KMEWEB_CHROMIUM:-/usr/bin/chromium}")
# node and the OpenID provider the sign-in tests run (npm ci in tests/oidc when its lock changed)
export KMEWEB_NODE
KMEWEB_NODE=$(python3 scripts/services.py node)

# The suite runs in three processes side by side, each with its own Redis database: the
# browser tests (SQLite, then PostgreSQL), the rest on SQLite, and the rest on PostgreSQL.
# Much of a test's time is spent waiting (workers, Chromium, the simulator), so three
# processes keep two cores busy (four measured no faster: the cores are then the limit);
# KMEWEB_TEST_SERIAL=1 runs the two databases one after the other with live output instead.
other_db() {  # the Redis URL $1 with database number ($db + $2) % 16
  python3 - "$1" "$2" <<'PYEOF'
import sys
from urllib.parse import urlsplit, urlunsplit
parts = urlsplit(sys.argv[1])
db = int(parts.path.strip("/") or 0)
print(urlunsplit(parts._replace(path=f"/{(db + int(sys.argv[2])) % 16}")))
PYEOF
}
PG_REDIS_URL=$(other_db "$TEST_REDIS_URL" 8)
REST_REDIS_URL=$(other_db "$TEST_REDIS_URL" 14)
PG_BROWSER_REDIS_URL=$(other_db "$TEST_REDIS_URL" 4)
if [ "${KMEWEB_TEST_SERIAL:-}" = "1" ]; then
  echo "== tests on SQLite (redis $TEST_REDIS_URL)"
  KMEWEB_TEST_DB=sqlite $PY -m pytest "$@"
  echo "== tests on PostgreSQL ($TEST_DATABASE_URL, redis $PG_REDIS_URL)"
  KMEWEB_TEST_DB=postgresql TEST_REDIS_URL=$PG_REDIS_URL $PY -m pytest "$@"
  exit 0
fi
mkdir -p .run
logs=()
pids=()
run() {  # run LOG REDIS_URL DB PYTEST_ARGS...: one pytest process in the background
  local log=$1 redis=$2 db=$3
  shift 3
  KMEWEB_TEST_DB=$db TEST_REDIS_URL=$redis $PY -m pytest --durations=10 \
    --junitxml="${log%.log}.xml" "$@" > "$log" 2>&1 &
  pids+=($!)
  logs+=("$log")
}
if [ $# -eq 0 ]; then
  # Three processes: the browser tests (SQLite, then PostgreSQL), and the rest on each
  # database. tests/knox (the KME client against the simulator) touches no database and runs once, with
  # SQLite; so does tests/oidc (the test OpenID provider in Chromium), with the browser tests.
  rest=($(ls -d tests/*/ | grep -v -e '^tests/browser/$' -e '^tests/oidc/$'))
  # Browser tests of how pages look and what the HTTP layer answers (layout and axe at two
  # widths, the CSP, sign-in, htmx refusals, upload limits, the API reference) read no data a
  # database could answer differently: they run on SQLite only. Every procedure in Chromium
  # (profiles, integration, import, operations, tokens, ...) runs on both databases; on
  # PostgreSQL with the CSP check only, as axe-core checked the same pages' markup on SQLite
  # (and holds each navigation while it runs).
  look_only=(tests/browser/test_ui_browser.py tests/browser/test_templates_csp.py
    tests/browser/test_login_browser.py tests/browser/test_htmx_errors_browser.py
    tests/browser/test_upload_limits_browser.py tests/browser/test_apidocs_browser.py)
  # Tests that read no database (the import rules, identifier checks, the thread and GC
  # guards, the SQLite file sharing, the OpenAPI document, the API reference page) answer the
  # same on both: the PostgreSQL process skips them. (The API's property-based run stays on
  # both: PostgreSQL refuses text SQLite stores, such as a value longer than its column.)
  no_database=(tests/test_architecture.py tests/test_identifiers.py tests/test_gcpause.py
    tests/test_threads.py tests/test_sqlite_sharing.py tests/api/test_openapi.py tests/apidocs)
  # The browser chain ended about two minutes before the PostgreSQL process, which then ran
  # alone on one core: tests/ops (the two-host rehearsal, the backup and restore) runs on
  # PostgreSQL at the end of the chain instead, so the processes end closer. (With
  # tests/alerts moved too, the chain became the last to end: 561 s against 493 s.)
  moved_to_browsers=(tests/ops/)
  pg_rest=()
  for dir in "${rest[@]}"; do
    case " tests/knox/ ${moved_to_browsers[*]} " in *" $dir "*) ;; *) pg_rest+=("$dir") ;; esac
  done
  # The browser chain was still running a minute or two after the other two had ended (635 s
  # against 495 s and 573 s), with the cores no longer busy: the look-only tests (83 s) run at
  # the end of the SQLite process instead, next to the chain's PostgreSQL part.
  browsers() {  # the browser tests on SQLite, then on PostgreSQL
    local first=0
    KMEWEB_TEST_DB=sqlite TEST_REDIS_URL=$TEST_REDIS_URL $PY -m pytest tests/browser \
      "${look_only[@]/#/--ignore=}" tests/oidc \
      --junitxml=.run/test-sqlite-browser.xml > .run/test-sqlite-browser.log 2>&1 || first=$?
    KMEWEB_BROWSER_AXE=0 KMEWEB_TEST_DB=postgresql TEST_REDIS_URL=$PG_BROWSER_REDIS_URL \
      $PY -m pytest --durations=10 tests/browser "${look_only[@]/#/--ignore=}" \
      "${moved_to_browsers[@]}" \
      --junitxml=.run/test-postgresql-browser.xml > .run/test-postgresql-browser.log 2>&1 \
      && [ $first -eq 0 ]
  }
  browsers &
  pids+=($!)
  logs+=(.run/test-sqlite-browser.log .run/test-postgresql-browser.log)
  run .run/test-sqlite.log "$REST_REDIS_URL" sqlite "${rest[@]}" tests/*.py "${look_only[@]}"
  run .run/test-postgresql.log "$PG_REDIS_URL" postgresql \
    "${pg_rest[@]}" tests/*.py "${no_database[@]/#/--ignore=}"
else
  run .run/test-sqlite.log "$TEST_REDIS_URL" sqlite "$@"
  run .run/test-postgresql.log "$PG_REDIS_URL" postgresql "$@"
fi
echo "== tests on SQLite ($TEST_REDIS_URL, $REST_REDIS_URL) and PostgreSQL ($TEST_DATABASE_URL, $PG_REDIS_URL), side by side"
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
for log in "${logs[@]}"; do echo "== $log"; cat "$log"; done
exit $rc
