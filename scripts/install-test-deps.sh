#!/bin/bash
# Install what the test suites need on a fresh Debian 12 machine (run as root). Idempotent:
# packages already installed are skipped without touching the network, so repeated CI runs
# are fast.
#
#   containerd, runc           real CRI runtime for discovery/scan tests (testkit::cri_sandbox)
#   busybox-static             rootfs of the locally built test image (no registry needed);
#                              its .deb is also kept in /var/cache/runtime-insights/
#   openjdk-17-jdk-headless, golang-go, nodejs, python3, zip, tomcat10
#                              build the workloads the fingerprint tests run
#   util-linux, mount, procps  unshare/setpriv/mount/kill for namespace tests
#   gcc, libc6-dev             static ELF test programs (GraalVM-style native executables)
# and from crates.io (cargo install, skipped when present):
#   cargo-machete              the unused-dependency gate of scripts/test.sh
#   cargo-fuzz                 the bounded fuzz run (scripts/fuzz.sh; the nightly toolchain
#                              comes with the machine's rustup)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(containerd runc busybox-static openjdk-17-jdk-headless golang-go nodejs python3 zip util-linux mount procps tomcat10 gcc libc6-dev strace)
CACHE_DIR=/var/cache/runtime-insights
BUSYBOX_DEB=$CACHE_DIR/busybox-static.deb

log() { printf 'install-test-deps: %s\n' "$*"; }
die() { printf 'install-test-deps: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get install)"
command -v apt-get >/dev/null || die "apt-get not found: this script supports Debian/Ubuntu only"

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

UPDATED=0
apt_update() {
    if [ "$UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq
        UPDATED=1
    fi
}

missing=()
for p in "${PACKAGES[@]}"; do
    if installed "$p"; then
        log "already installed: $p"
    else
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    apt_update
    # Check every name first so one clear message names all unavailable packages.
    unavailable=()
    for p in "${missing[@]}"; do
        cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
        if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
            unavailable+=("$p")
        else
            log "will install: $p ($cand)"
        fi
    done
    [ "${#unavailable[@]}" -eq 0 ] || die "no installation candidate for: ${unavailable[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    log "installed: ${missing[*]}"
else
    log "all packages present"
fi

# The test image's rootfs comes from this .deb (testkit::cri_sandbox reads it here).
if [ -s "$BUSYBOX_DEB" ] && dpkg-deb -I "$BUSYBOX_DEB" >/dev/null 2>&1; then
    log "already cached: $BUSYBOX_DEB"
else
    mkdir -p "$CACHE_DIR"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    # apt-get download drops privileges to _apt, which must be able to write the directory.
    chmod 755 "$tmp"
    chown _apt "$tmp" 2>/dev/null || true
    if ! (cd "$tmp" && apt-get download -qq busybox-static >/dev/null 2>&1); then
        apt_update
        (cd "$tmp" && apt-get download -qq busybox-static >/dev/null) ||
            die "apt-get download busybox-static failed"
    fi
    deb=$(ls "$tmp"/busybox-static_*.deb 2>/dev/null | head -1)
    [ -n "$deb" ] || die "apt-get download produced no busybox-static .deb"
    dpkg-deb -I "$deb" >/dev/null || die "downloaded $deb is not a valid .deb"
    mv "$deb" "$BUSYBOX_DEB.tmp" && mv "$BUSYBOX_DEB.tmp" "$BUSYBOX_DEB"
    log "cached: $BUSYBOX_DEB ($(dpkg-deb -f "$BUSYBOX_DEB" Version))"
fi

for tool in cargo-machete:0.9.2 cargo-fuzz:0.13.2; do
    name=${tool%%:*}
    if command -v "$name" >/dev/null; then
        log "already installed: $name"
    else
        log "cargo install $name ${tool##*:}"
        cargo install --locked --quiet "$name" --version "${tool##*:}"
    fi
done

for c in containerd runc ctr java go node python3 zip nsenter cargo-machete cargo-fuzz; do
    command -v "$c" >/dev/null || die "$c not on PATH after installation"
done
log "ready: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), $(go version | awk '{print $3}'), node $(node --version)"
