#!/usr/bin/env bash
# Serve kmeweb at http://127.0.0.1:5000 with an RQ worker and the KME simulator beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLASK_APP=wsgi
FLASK=.venv/bin/flask

started_before=$(ls .run/redis.pid 2>/dev/null || true)
cleanup() { if [ -z "$started_before" ]; then python3 scripts/services.py stop; fi; }
trap cleanup EXIT

export REDIS_URL
REDIS_URL=$(python3 scripts/services.py redis --url "${REDIS_URL:-redis://127.0.0.1:6379/0}")
export KMEWEB_PORT="${KMEWEB_PORT:-5000}"
export KMEWEB_SIM_PORT="${KMEWEB_SIM_PORT:-8765}"

$FLASK db upgrade >/dev/null
$FLASK seed-demo --sim-url "http://127.0.0.1:${KMEWEB_SIM_PORT}" \
  --sim-state "${KMEWEB_INSTANCE_DIR:-instance}/kme-sim.sqlite"
credentials=$($FLASK ensure-demo-admin)

echo
echo "kmeweb is starting at http://127.0.0.1:${KMEWEB_PORT}"
echo "  sign in as ${credentials}"
echo "  Redis: ${REDIS_URL}   KME simulator: http://127.0.0.1:${KMEWEB_SIM_PORT}"
echo "  stop with Ctrl-C"
echo
exec_honcho() { .venv/bin/honcho -f Procfile start; }
exec_honcho
