#!/usr/bin/env bash
# install-deps.sh: installs every Debian 12 package sbx needs to build, run, test and benchmark.
# Idempotent: packages already present are not fetched again. Needs root (or sudo).
set -euo pipefail

PKGS=(
  # build
  build-essential cmake pkg-config
  libgrpc-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  librocksdb-dev libcurl4-openssl-dev libssl-dev libseccomp-dev libcap-dev libmicrohttpd-dev
  libcmocka-dev
  # formatting (scripts/format.sh, the format-check target)
  clang-format-14
  # runtime of the sandboxes and the tests
  python3 python3-grpcio python3-grpc-tools python3-yaml openssl iproute2 procps curl
  # a terminal emulator for the `sbx term` test (tests/integration/cli_term.sh)
  tmux
  # package managers the egress tests drive inside sandboxes (npm: see below)
  nodejs python3-pip util-linux
  # packaging checks (compose files are validated without an engine)
  docker-compose
  # the compose stack on a private dockerd (scripts/test-compose.sh; base image by debootstrap)
  docker.io debootstrap
  # benchmark peers
  etcd-server redis-server redis-tools bubblewrap
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm: Debian's package, unless a nodejs build that bundles npm is installed (NodeSource's
# nodejs conflicts with Debian's npm)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts these daemons on install; sbx's benchmarks start their own on loopback.
for svc in etcd redis-server; do
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true; fi
done
echo "install-deps: done"
