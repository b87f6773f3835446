#!/usr/bin/env bash
# The main job: boot a microVM sandbox from the built-in image and run a command in it.
#
#   scripts/main.sh [COMMAND [ARG...]]
#
# Installs what it needs (scripts/setup.sh main), starts cargobayd, builds the default
# image if it is not built yet (once; cached under the XDG data directory), boots a
# sandbox from it, runs COMMAND there (default: `uname -a` and the distribution's name),
# prints the output and how long each step took, and removes the sandbox.  The exit code
# is the command's.  cargobayd keeps running afterwards (`.venv/bin/cargobay daemon stop`
# stops it).  The first issue's demo, an echo over yamux through hybrid vsock, is still
# there: `.venv/bin/python -m virga demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
say() { printf '\n== %s\n' "$*" >&2; }

t_all=$(now)
say "setup: Debian packages and .venv"
t=$(now); scripts/setup.sh main; t_setup=$(took "$t")

cb=.venv/bin/cargobay
say "daemon"
t=$(now); "$cb" daemon start; t_daemon=$(took "$t")

say "image: the default image (built once, then reused)"
t=$(now); "$cb" image build default; t_image=$(took "$t")

if [ $# -eq 0 ]; then
    set -- sh -c 'uname -a; . /etc/os-release; echo "$PRETTY_NAME"'
fi
say "sandbox: cargobay run --rm -- ${*@Q}"
t=$(now)
rc=0
"$cb" run --rm -- "$@" || rc=$?
t_run=$(took "$t")

say "summary"
printf '%-9s %8s s\n' setup "$t_setup" daemon "$t_daemon" image "$t_image" sandbox "$t_run" \
    total "$(took "$t_all")" >&2
printf 'exit code %d; cargobayd keeps running (stop it: %s daemon stop)\n' "$rc" "$cb" >&2
exit "$rc"
