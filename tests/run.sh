#!/usr/bin/env bash
# Runs every test of hvprobe on a fresh Debian bookworm machine (as root): installs what the tests need
# when it is missing, then runs the whole suite. A prerequisite that cannot be installed is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the integration tests drive for real: DNS servers, userspace WireGuard, netns tools,
# node_exporter as an oracle, systemd-analyze for the unit files, promtool for /metrics, curl for the HTTPS
# API, Chromium for the status page, Alertmanager for alerts, lintian for the Debian package, nftables and
# conntrack-tools for the WireGuard conntrack evidence, capsh to drop one capability.
packages=(iproute2 iputils-ping procps prometheus-node-exporter unbound dnsmasq-base wireguard-go wireguard-tools util-linux systemd prometheus curl chromium prometheus-alertmanager lintian nftables conntrack libcap2-bin strace dbus-daemon)
commands=(ip ping ps prometheus-node-exporter unbound dnsmasq wireguard-go wg setpriv systemd-analyze promtool curl chromium prometheus-alertmanager lintian nft conntrack capsh strace dbus-daemon)
missing=()
for i in "${!commands[@]}"; do
  command -v "${commands[$i]}" >/dev/null 2>&1 || missing+=("${packages[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "tests/run.sh: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "tests/run.sh: need root to install ${missing[*]}" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# cargo-deb builds the Debian package in tests/it/deb.rs; it comes from crates.io.
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "tests/run.sh: installing cargo-deb" >&2
  cargo install --locked --quiet cargo-deb
fi

# The Debian package's release build runs here, before the tests, rather than inside tests/it/deb.rs beside
# timing-sensitive tests on two cores (the test then finds it up to date).
CARGO_TARGET_DIR=target/deb-build cargo deb --locked --quiet >/dev/null

cargo test --all-targets --locked "$@"
