#!/usr/bin/env bash
# Builds the Linux desktop package pixery.tar.xz (binary, .desktop file, icon
# from FyneApp.toml) with Fyne's packaging tool. Run scripts/setup.sh first.
# The first run compiles the cgo packages again with the tool's own flags
# (about 4 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then export PATH="$PATH:/usr/local/go/bin"; fi
fyne="$(go env GOPATH)/bin/fyne"
[ -x "$fyne" ] || go install fyne.io/tools/cmd/fyne@v1.7.4
"$fyne" package -os linux "$@"
ls -l pixery.tar.xz
