#!/usr/bin/env bash
# The README's first command: set up, then run a sample program with wasce.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo '$ wasce exec --invoke fib examples/fib.wat 30'
target/release/wasce exec --invoke fib examples/fib.wat 30
