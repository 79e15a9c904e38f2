#!/usr/bin/env bash
# Sets everything up (idempotent) and starts the engine on 127.0.0.1:8000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models="${PIXERY_MODELS:-$HOME/pixery/models}"
mkdir -p "$models"
exec bin/pixery-engine serve --addr 127.0.0.1:8000 --models "$models" "$@"
