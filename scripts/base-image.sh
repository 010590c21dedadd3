#!/usr/bin/env bash
# base-image.sh: makes sure the Docker engine at $DOCKER_HOST has debian:bookworm-slim, the base
# of deploy/Dockerfile. When the image is missing (no registry is reachable here), it is built
# with `debootstrap --variant=minbase bookworm` from the Debian mirror this machine's apt is
# configured with (/etc/apt/sources.list*), trimmed like the official slim image (no docs, man
# pages, locales, apt lists), cached as a tarball under $SBX_CACHE_DIR (default
# /var/cache/sbx-ci) so later runs only `docker import` it (~2 s instead of ~25 s).
#
# Usage: scripts/base-image.sh            (as root; DOCKER=/usr/bin/docker by default)
# Env:   SBX_CACHE_DIR, SBX_DEBIAN_MIRROR (overrides the mirror found in apt's configuration),
#        SBX_BASE_REBUILD=1 (ignore the cached tarball).
set -euo pipefail

IMAGE=debian:bookworm-slim
SUITE=bookworm
DOCKER=${DOCKER:-/usr/bin/docker}
CACHE=${SBX_CACHE_DIR:-/var/cache/sbx-ci}
TARBALL=$CACHE/debian-$SUITE-minbase.tar

log() { printf 'base-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# The URI apt uses for SUITE (deb822 *.sources or one-line *.list entries), e.g.
# http://deb.debian.org/debian. $1 = suite to look for.
apt_mirror_for() {
    local suite=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++;
                if ($i ~ /^\[/ || $i ~ /\]$/) i++; if ($(i + 1) == s) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # one stanza per paragraph: print its first URI when Types has deb and Suites has suite
        awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
            { t = 0; u = ""; m = 0
              for (i = 1; i <= NF; i++) {
                if ($i ~ /^Types:/ && $i ~ /(^|[ \t])deb([ \t]|$)/) t = 1
                if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u = a[2] }
                if ($i ~ /^Suites:/) { n = split($i, a, /[ \t]+/); for (j = 2; j <= n; j++) if (a[j] == s) m = 1 }
                if ($i ~ /^Enabled:[ \t]*no/) t = 0 }
              if (t && m && u != "") { print u; exit } }' "$f"
    done
}

build_tarball() {
    local mirror security rootfs
    mirror=${SBX_DEBIAN_MIRROR:-$(apt_mirror_for "$SUITE" | head -n1)}
    [ -n "$mirror" ] || die "no Debian mirror for $SUITE in /etc/apt/sources.list*; set SBX_DEBIAN_MIRROR"
    security=$(apt_mirror_for "$SUITE-security" | head -n1)
    command -v debootstrap >/dev/null || die "debootstrap is not installed (scripts/install-deps.sh)"
    mkdir -p "$CACHE"
    rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$rootfs" "$TARBALL.part"' EXIT
    log "debootstrap --variant=minbase $SUITE from $mirror"
    local t0=$SECONDS
    if ! debootstrap --variant=minbase "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1; then
        tail -n 20 "$rootfs.log" >&2
        rm -f "$rootfs.log"
        die "debootstrap failed"
    fi
    rm -f "$rootfs.log"
    # apt sources as the official image has them, on this machine's mirror
    rm -f "$rootfs/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\n' "$mirror" "$SUITE" "$SUITE"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$security" "$SUITE"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$rootfs/etc/apt/sources.list.d/debian.sources"
    # slim: what later package installs leave out too (the official image's dpkg excludes)
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    printf 'APT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
    # no .deb files or package caches left in image layers
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log \
        "$rootfs"/var/log/apt/* "$rootfs"/tmp/*
    : >"$rootfs/etc/hostname"
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$rootfs"
    trap - EXIT
    log "cached $TARBALL ($(du -h "$TARBALL" | cut -f1), $((SECONDS - t0)) s)"
}

if "$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE present"
    exit 0
fi
if [ "${SBX_BASE_REBUILD:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    build_tarball
else
    log "using cached $TARBALL"
fi
t0=$SECONDS
"$DOCKER" import -c 'CMD ["/bin/bash"]' -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$TARBALL" "$IMAGE" >/dev/null
log "imported $IMAGE in $((SECONDS - t0)) s"
