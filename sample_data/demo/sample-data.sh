#!/bin/sh
# Regenerate everything under sample_data/ from scratch (called by `make sample-data`).
# Installs Debian's postgresql and redis-server if missing (needs root or sudo), creates the
# demo's own virtualenv (sample_data/demo/.venv, git-ignored) from requirements.txt, and runs
# generate.py. Takes a few minutes.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v redis-server >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql redis-server
fi
# The Debian packages may start their own default instances; the demo does not use them
# (it runs a private cluster and its own redis-server on free loopback ports).

if [ ! -x "$HERE/.venv/bin/python" ]; then
    python3 -m venv "$HERE/.venv"
fi
"$HERE/.venv/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt"
exec "$HERE/.venv/bin/python" "$HERE/generate.py"
