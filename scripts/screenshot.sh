#!/usr/bin/env bash
# Starts the real desktop app under Xvfb against a real engine and saves
# screenshots of its tabs to docs/ (used in README.md). Not a test: run it
# after changing the UI. Needs scripts/setup.sh to have run.
#
# The engine serves the repository's model registry (the real models show as
# "missing": no multi-gigabyte checkpoint here) plus the tiny random test
# checkpoint, with which a few images are generated first so that the gallery
# has something in it (a random model makes noise, honestly shown).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v go >/dev/null 2>&1; then export PATH="$PATH:/usr/local/go/bin"; fi
SUDO=""; if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
need=()
for p in xvfb imagemagick xdotool; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x bin/pixery ] && [ -x bin/pixery-engine ] || scripts/setup.sh

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
export PIXERY_CONFIG="$work/config" XDG_CACHE_HOME="$work/cache" XDG_STATE_HOME="$work/state" LANG=en_US.UTF-8
mkdir -p "$work/models" "$PIXERY_CONFIG"
cp testdata/golden/pipeline/sdxl-tiny.safetensors "$work/models/tiny.safetensors"
cat > "$work/models/tiny.toml" <<TOML
id = "tiny"
display_name = "Tiny random SDXL (tests)"
file = "tiny.safetensors"
architecture = "sdxl"
config_dir = "$PWD/testdata/golden/pipeline/configs"
[defaults]
cfg = 5.0
steps = 4
width = 192
height = 128
sampler = "euler_a"
TOML
port=18765
bin/pixery-engine serve --addr "127.0.0.1:$port" --models "$work/models" >"$work/engine.log" 2>&1 &
pids+=($!)
cat > "$PIXERY_CONFIG/settings.toml" <<TOML
server_url = "http://127.0.0.1:$port"
mode = "remote"
gallery_dir = "$work/gallery"
[last]
model = "animagine"
prompt = "1girl, solo, silver hair, long hair, blue eyes, school uniform, cherry blossoms, masterpiece, best quality"
seed_mode = "random"
batch = 1
TOML
for i in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/v1/health" >/dev/null && break; sleep 0.2; done
prompts=("1girl, solo, red dress, night city" "2girls, sitting, cafe, smile" "1boy, armor, castle, sunset"
  "landscape, mountains, lake, morning" "1girl, witch hat, magic circle, glowing" "cat ears, hoodie, headphones")
for p in "${prompts[@]}"; do
  bin/pixery generate --server "http://127.0.0.1:$port" -m tiny -p "$p" >/dev/null
done

Xvfb :97 -screen 0 1280x880x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=:97
sleep 1
bin/pixery >"$work/app.log" 2>&1 &
pids+=($!)
sleep 6
import -window root docs/screenshot-generate.png
# The tab bar is at the window's top left; "Gallery" is the second tab.
xdotool mousemove 118 18 click 1
sleep 3
import -window root docs/screenshot-gallery.png
xdotool mousemove 181 18 click 1
sleep 2
import -window root docs/screenshot-gpu.png
echo "screenshots: docs/screenshot-generate.png docs/screenshot-gallery.png docs/screenshot-gpu.png"
