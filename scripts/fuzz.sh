#!/usr/bin/env bash
# Runs every Go fuzz target of the module for FUZZTIME each (the seed corpora also run in
# `make test`). Targets are found by their declarations, so a new one is never forgotten.
set -euo pipefail
fuzztime="${FUZZTIME:-20s}"
go="${GO:-go}"
grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  for target in $(grep -o '^func Fuzz[A-Za-z0-9_]*' "$file" | cut -d' ' -f2); do
    echo "fuzz: $pkg $target ($fuzztime)"
    "$go" test -run=NONE -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
