#!/usr/bin/env bash
# Installs what CargoBay needs on a fresh Debian/Ubuntu machine and prepares .venv.
#   scripts/setup.sh [main|test]
# "main" installs what the main job needs; "test" adds what the test suite needs
# (Go and Debian's hashicorp yamux for the interop peer, ...).  Idempotent: a second run
# only checks.  apt runs as root, or through sudo when not root.
set -euo pipefail
cd "$(dirname "$0")/.."
purpose=${1:-main}

apt_main=(python3 python3-venv python3-dev gcc)
# Building and booting guest images (cargobay.images): the kernel .deb is fetched with
# apt-get and unpacked with dpkg-deb (always present); busybox-static comes from the
# guest's own debootstrap tree, so the host does not need it.
apt_main+=(qemu-system-x86 debootstrap e2fsprogs kmod zstd)
# The default image's minimal kernel is compiled from Debian's kernel source
# (cargobay.images.minikernel; about 10 minutes once, then cached).
apt_main+=(linux-source-6.1 make libc6-dev binutils bc bison flex libelf-dev xz-utils)
apt_test=(golang-go golang-github-hashicorp-yamux-dev qemu-guest-agent)
apt_test+=(cpio)  # the initramfs writer is checked against GNU cpio
apt_test+=(nftables iproute2)  # bridged networking tests: nft and network namespaces
apt_test+=(docker.io docker-registry busybox-static)  # containers: real dockerd, a loopback registry, images built from busybox
# the ATP's libvirt host pool: libvirtd, libvirt-python's build deps, virsh (the benchmark's
# peer) and sshd for qemu+ssh:// on loopback
apt_test+=(libvirt-daemon-system libvirt-clients libvirt-dev pkg-config openssh-server)
apt_test+=(docker-compose)  # the compose engine is tested both ways against docker-compose 1.29.2
apt_test+=(nginx-light)  # apps downloads: a real HTTP server with Range support on loopback
apt_test+=(chromium)  # the web GUI's end-to-end tests (Playwright drives Debian's Chromium)

want=("${apt_main[@]}")
[ "$purpose" = test ] && want+=("${apt_test[@]}")
# the web GUI is built with npm (Debian 12: nodejs 18); a nodejs that ships its own npm
# (NodeSource) must not get Debian's npm package on top
command -v npm >/dev/null 2>&1 || want+=(nodejs npm)

missing=()
for pkg in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q -o DPkg::Lock::Timeout=300 >&2
    $SUDO apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PY --version)" >&2
    "$PY" -m venv .venv
fi
stamp=.venv/.cargobay-installed
sum=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$sum" ]; then
    echo "setup: installing Python packages into .venv" >&2
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[dev]' >&2
    echo "$sum" > "$stamp"
fi

# The web GUI (web/, React + Vite) builds into src/cargobay/daemon/webui/dist, which the
# daemon serves at /ui/.  Only when the build is missing or older than its sources.
webui_index=src/cargobay/daemon/webui/dist/index.html
if [ ! -f "$webui_index" ] || [ -n "$(find web/src web/index.html web/package.json \
        web/package-lock.json web/vite.config.ts web/tsconfig.json -newer "$webui_index" \
        -print -quit)" ]; then
    echo "setup: building the web UI (npm ci && npm run build in web/)" >&2
    (
        cd web
        if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
            npm ci --no-audit --no-fund --loglevel=error >&2
        fi
        npm run build --silent >&2
    ) || { [ "$purpose" = test ] && exit 1; echo "setup: the web UI was not built (see above)" >&2; }
fi
