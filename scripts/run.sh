#!/usr/bin/env bash
# Sets everything up (idempotent), starts the engine on 127.0.0.1:8000 and
# opens the desktop app pointed at it. Without a display (a server, a GPU
# host) it runs the engine alone in the foreground.
#   PIXERY_MODELS  the engine's models folder [~/pixery/models]
#   extra arguments go to `pixery-engine serve`
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models="${PIXERY_MODELS:-$HOME/pixery/models}"
mkdir -p "$models"
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "run: no display; serving the engine only (open the app elsewhere with Server URL http://localhost:8000)"
  exec bin/pixery-engine serve --addr 127.0.0.1:8000 --models "$models" "$@"
fi
engine_pid=""
if (exec 3<>/dev/tcp/127.0.0.1/8000) 2>/dev/null; then
  echo "run: something already listens on 127.0.0.1:8000; the app will use it"
else
  bin/pixery-engine serve --addr 127.0.0.1:8000 --models "$models" "$@" &
  engine_pid=$!
  trap 'kill "$engine_pid" 2>/dev/null; wait "$engine_pid" 2>/dev/null || true' EXIT
fi
bin/pixery
