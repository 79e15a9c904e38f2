#!/usr/bin/env bash
# Installs everything pixery needs on a fresh Debian/Ubuntu machine and builds
# the binaries into bin/. Safe to run again: every step is idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.24.3
# sha256 of the npm tarball onnxruntime-node@1.24.3 and of the linux-x64 CPU
# library inside it; pinned so that a changed upstream package is refused.
ORT_TGZ_SHA256=aa1bb5fa261ea68de05dd53efbba210cd7adf2d2850f4c3a201054c74cc78040
ORT_LIB_SHA256=92ba8e44d31b80a34f5e805076a044122c3be1fffe0d88ed790de7267b0b2682
ORT_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/pixery/lib"

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

# gcc, pkg-config and the X11/GL -dev packages build the desktop app (Fyne's
# GLFW driver, cgo); openssh-server is for the remote tests' real sshd.
apt_packages=(ca-certificates gcc libc6-dev pkg-config git openssh-server openssh-client
  libgl1-mesa-dev libx11-dev libxcursor-dev libxrandr-dev libxinerama-dev libxi-dev libxxf86vm-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm only fetches the ONNX Runtime package; a machine whose Node.js already
# ships npm (NodeSource) conflicts with Debian's npm package, so ask only when absent.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null 2>&1; then
  if [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; else
    echo "setup: Go 1.26 or newer is required (https://go.dev/dl/); apt's golang is too old" >&2
    exit 1
  fi
fi

lib="$ORT_DIR/libonnxruntime.so.1"
if [ ! -f "$lib" ] || [ "$(sha256sum "$lib" | cut -d' ' -f1)" != "$ORT_LIB_SHA256" ]; then
  echo "setup: installing ONNX Runtime $ORT_VERSION (CPU) into $ORT_DIR"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null)
  echo "$ORT_TGZ_SHA256  $tmp/onnxruntime-node-$ORT_VERSION.tgz" | sha256sum -c --quiet
  tar -xzf "$tmp/onnxruntime-node-$ORT_VERSION.tgz" -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  echo "$ORT_LIB_SHA256  $tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | sha256sum -c --quiet
  mkdir -p "$ORT_DIR"
  install -m 0644 "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib.tmp"
  mv "$lib.tmp" "$lib"
fi

go mod download
mkdir -p bin
go build -o bin/pixery-engine ./engine/cmd/pixery-engine
if [ -f main.go ]; then go build -o bin/pixery . ; fi
echo "setup: done (ONNX Runtime at $lib, binaries in bin/)"
