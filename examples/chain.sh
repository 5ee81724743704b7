#!/usr/bin/env bash
# A shell pipeline over topos commands: stdout carries JSON lines from one command to the next.
set -euo pipefail
OUT=${1:-/tmp/topos-chain}
mkdir -p "$OUT"
topos template info --json > "$OUT/template.json"
topos augment -o "$OUT/aug" --copies 4 --identity-sigma 1 --seed 0 --json \
  | topos augment - -o "$OUT/aug-expr" --copies 2 --no-regions --expressions 3 --seed 1 --json \
  > "$OUT/records.jsonl"
echo "$(wc -l < "$OUT/records.jsonl") heads in $OUT/aug-expr"
