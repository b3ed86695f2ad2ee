#!/usr/bin/env bash
# Install the Debian packages conchshell needs beyond Python wheels:
# a piano soundfont and a headless browser for the tests. Only what is missing
# is installed, so re-running is cheap. Needs root (or sudo) and apt.
set -euo pipefail

# fluidr3mono-gm-soundfont: the sampled piano the stand-in dataset is rendered with.
# chromium, chromium-driver: the MOS page's end-to-end browser test.
packages=(fluidr3mono-gm-soundfont chromium chromium-driver)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: apt-get not found; install these packages by hand: ${missing[*]}" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "system-deps: need root to install ${missing[*]}" >&2; exit 1; }
    sudo="sudo"
fi
echo "system-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
