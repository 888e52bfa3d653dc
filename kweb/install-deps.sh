#!/usr/bin/env bash
# Installs what the kweb benchmark compares against: nginx (the baseline server) and
# wrk (a second load generator, to cross-check kweb-load), from the distribution's
# packages. Needs root (or sudo) and apt. The bench runs without them, comparing the
# kweb variants with each other only.
set -euo pipefail
if command -v nginx >/dev/null && command -v wrk >/dev/null; then
    echo "nginx and wrk are installed"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq nginx wrk
# The package may start a system nginx on port 80: the bench runs its own.
$SUDO systemctl stop nginx 2>/dev/null || $SUDO service nginx stop 2>/dev/null || true
command -v nginx && command -v wrk
