#!/usr/bin/env bash
# Installs the browser that the notes app's end-to-end tests drive (examples/notes/tests/
# browser.rs): Debian's chromium and chromium-driver (/usr/bin/chromium, /usr/bin/chromedriver),
# when either is missing. scripts/test.sh runs it; CI runs as root on a clean machine. npm's
# browser downloads (puppeteer, playwright) do not work here: the system Chromium is used.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null; then
    sudo="sudo"
else
    echo "browser-deps: chromium or chromedriver is missing and this user cannot install them;" \
         "run: apt-get install chromium chromium-driver" >&2
    exit 1
fi
echo "browser-deps: installing Debian's chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get install -y -qq chromium chromium-driver >&2; then
    $sudo apt-get update -qq >&2
    $sudo apt-get install -y -qq chromium chromium-driver >&2
fi
/usr/bin/chromium --version >&2
