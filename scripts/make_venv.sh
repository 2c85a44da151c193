#!/usr/bin/env bash
# Create the virtual environment. Debian splits `venv` out of python3 (python3-venv), so install it
# when it is missing and we are allowed to.
set -euo pipefail
py="${1:-python3}"; venv="${2:-.venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' 2>/dev/null; then exit 0; fi
rm -rf "$venv"
if "$py" -m venv "$venv" 2>/dev/null; then exit 0; fi
rm -rf "$venv"
ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
echo "python venv module missing; installing python${ver}-venv" >&2
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "error: run 'apt-get install python${ver}-venv' as root, then retry" >&2; exit 1; fi
$SUDO apt-get update -qq && $SUDO apt-get install -y -qq "python${ver}-venv" >/dev/null
"$py" -m venv "$venv"
