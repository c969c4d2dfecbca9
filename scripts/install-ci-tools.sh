#!/usr/bin/env bash
# Installs the tools CI's release checks need when they are missing: cargo-deny (licences,
# duplicate versions, sources, advisories; see deny.toml), built from crates.io with its
# locked dependencies. Idempotent. A first install builds it: about 10 minutes on 2 cores.
set -euo pipefail
if ! cargo deny --version >/dev/null 2>&1; then
  echo "install-ci-tools: installing cargo-deny"
  cargo install cargo-deny --locked --version "^0.20"
fi
echo "install-ci-tools: $(cargo deny --version)"
