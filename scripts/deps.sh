#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when they are missing. Runs as root in CI
# (a fresh machine); elsewhere it uses sudo if it has to.
set -euo pipefail
want=()
need() { command -v "$1" >/dev/null 2>&1 || want+=("$2"); }

case "${1:-test}" in
  test)
    need curl curl
    need jq jq     # the CI examples' scripts (cmd/teal/examples_test.go)
    need redis-server redis-server   # throwaway Redis servers for the session tests
    need gcc gcc   # cgo: the migration classifier uses PostgreSQL's parser (pg_query)
    # PostgreSQL server binaries for throwaway clusters (initdb, pg_ctl) and its clients.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || want+=(postgresql)
    need pg_dump postgresql-client
    # BIND 9 for the rfc2136 provider's tests, dig and nsupdate for the DNS tests.
    need named bind9
    need dig bind9-dnsutils
    need nsupdate bind9-dnsutils
    # Chromium for the dashboard's browser tests (driven with chromedp).
    need chromium chromium
    # HAProxy for the haproxy router's tests (a real haproxy on loopback).
    need haproxy haproxy
    ;;
  bench)
    need wrk wrk
    need haproxy haproxy
    need nginx nginx     # a peer of the router in bench/router.sh
    need hyperfine hyperfine
    need tcpdump tcpdump # bench/router.sh's capture of what each proxy adds (benchwire)
    ;;
  *) echo "deps.sh: unknown target $1 (test|bench)" >&2; exit 2 ;;
esac

[ ${#want[@]} -eq 0 ] && exit 0
echo "deps: installing ${want[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${want[@]}" >/dev/null
