#!/usr/bin/env bash
# The main job.  Until the sandbox exists this runs the virga demo: an echo over yamux
# through a hybrid-vsock Unix socket, printing what it did and how long each step took.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh main
exec .venv/bin/python -m virga demo "$@"
