#!/usr/bin/env bash
# Benchmarks teal's database step on two throwaway PostgreSQL clusters: clone time of a
# generated ≥ 1 GB database by each clone strategy against pg_dump -Fd -j2 + pg_restore -j2,
# and the freeze window of 20 switchovers under pgbench load. Records the result in
# docs/benchmarks.md. See bench/README.md.
#
#   bench/db.sh                          # -scale 70 (≈ 1 GB), -switches 20; ~5–10 min
#   bench/db.sh -scale 10 -switches 5    # quicker; any benchdb flag is passed on
#   SCALE=140 bench/db.sh                # ≈ 2 GB
#   NO_DOC=1 bench/db.sh                 # print the table, leave docs/benchmarks.md alone
set -euo pipefail

SCALE=${SCALE:-70}
SWITCHES=${SWITCHES:-20}

root=$(cd "$(dirname "$0")/.." && pwd)
doc=$root/docs/benchmarks.md

say() { printf 'db.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# PostgreSQL server binaries (initdb, pg_ctl, pgbench, pg_dump, pg_restore): from Debian when
# missing.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
	say "installing postgresql"
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi
command -v go >/dev/null || die "go is needed to build bench/cmd/benchdb"

# The clusters live under the temporary directory: the production database, one copy at a
# time and the baseline's dump need about three times the generated size.
need_kb=$((SCALE * 16 * 1024 * 3))
free_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
((free_kb > need_kb)) || die "${TMPDIR:-/tmp} has $((free_kb / 1024)) MB free; scale $SCALE needs about $((need_kb / 1024)) MB"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

say "building benchdb"
(cd "$root" && go build -o "$work/benchdb" ./bench/cmd/benchdb)

docflag=(-doc "$doc")
[ -z "${NO_DOC:-}" ] || docflag=()
cd "$root"
"$work/benchdb" -scale "$SCALE" -switches "$SWITCHES" "${docflag[@]}" "$@"
