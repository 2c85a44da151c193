#!/usr/bin/env bash
# Make headless Chromium available for the browser tests (tests marked `browser`).
# Installs Debian's `chromium` package with apt-get when it is missing and we can install packages.
# Always exits 0: where the install is impossible, the browser tests skip and say why.
set -u

have_chromium() {
    command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1
}

if have_chromium; then
    exit 0
fi
if [ "${VHR_NO_CHROMIUM_INSTALL:-0}" = "1" ]; then
    echo "ensure_chromium: chromium missing; VHR_NO_CHROMIUM_INSTALL=1, not installing (browser tests will skip)"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: chromium missing and apt-get not found (not Debian?); browser tests will skip"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "ensure_chromium: chromium missing and no root or passwordless sudo to install it; browser tests will skip"
        exit 0
    fi
fi

echo "ensure_chromium: installing Debian's chromium package (apt-get)..."
export DEBIAN_FRONTEND=noninteractive
LOG="$(mktemp "${TMPDIR:-/tmp}/ensure_chromium.XXXXXX.log")"
# The package lists may be missing on a fresh image; a failed update still lets a cached list work.
if ! $SUDO apt-get install -y -q --no-install-recommends chromium >"$LOG" 2>&1; then
    $SUDO apt-get update -q >>"$LOG" 2>&1 || true
    if ! $SUDO apt-get install -y -q --no-install-recommends chromium >>"$LOG" 2>&1; then
        echo "ensure_chromium: apt-get could not install chromium (no network or no such package?); browser tests will skip."
        echo "ensure_chromium: last lines of $LOG:"
        tail -n 5 "$LOG" | sed 's/^/    /'
        exit 0
    fi
fi
if have_chromium; then
    rm -f "$LOG"
    echo "ensure_chromium: installed $(chromium --version 2>/dev/null || true)"
else
    echo "ensure_chromium: apt-get finished but no chromium binary is on PATH; browser tests will skip"
fi
exit 0
