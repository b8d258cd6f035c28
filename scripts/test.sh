#!/usr/bin/env bash
# The test command of README.md, run by CI as it is (.ci/run).
# Installs what the tests need from Debian's packages, then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-tools.sh

# A target directory outside the clone, so repeated runs (and CI on the same machine) reuse builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/letterlock-target}"
cargo test --workspace --locked
