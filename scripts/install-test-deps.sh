#!/usr/bin/env bash
# Installs what the test suite needs when it is missing: Debian's chromium and
# chromium-driver (browser tests), redis-server and redis-sentinel (Redis backend tests), nats-server (the NATS
# backend example's tests), nginx and haproxy (the deploy/ samples' tests), openssl, Node.js and
# npm.
# Idempotent; needs root (as on the project's machines and CI).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# redis-sentinel: the Redis backend's Sentinel failover tests.
command -v redis-sentinel >/dev/null 2>&1 || [ -x /usr/bin/redis-sentinel ] || need+=(redis-sentinel)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v node >/dev/null 2>&1 || need+=(nodejs)
# npm: the browser client's build toolchain (esbuild, TypeScript) and the Vite example.
command -v npm >/dev/null 2>&1 || need+=(npm)
if ((${#need[@]})); then
  echo "install-test-deps: installing ${need[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's nginx and haproxy packages may start a system service on port 80; tests run their own
# instances on free ports, so stop it where a service manager is around.
if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx haproxy nats-server redis-sentinel >/dev/null 2>&1 || true; fi
# redis-server from Debian may start a system service; tests use their own instances.
NATS_SERVER="$(command -v nats-server || echo /usr/sbin/nats-server)"
echo "install-test-deps: chromium $(chromium --version 2>/dev/null | awk '{print $2}'), redis $(redis-server --version | awk '{print $3}'), nats $("$NATS_SERVER" --version | awk '{print $2}')"
