#!/usr/bin/env bash
# Benchmarks teal's built-in router against HAProxy and against the upstream directly, in one
# run on this machine, and records the result in docs/benchmarks.md. See bench/README.md.
#
#   bench/router.sh                     # wrk -t2 -c64 -d10s --latency against each target
#   DURATION=30s CONNS=128 bench/router.sh
#   NO_DOC=1 bench/router.sh            # print the table, leave docs/benchmarks.md alone
set -euo pipefail

DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
TEAL_PORT=${TEAL_PORT:-18080}
HAPROXY_PORT=${HAPROXY_PORT:-18082}
BODY=${BODY:-13}

root=$(cd "$(dirname "$0")/.." && pwd)
doc=$root/docs/benchmarks.md

say() { printf 'router.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Tools: installed from Debian when missing.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v haproxy >/dev/null || missing+=(haproxy)
if ((${#missing[@]})); then
	say "installing ${missing[*]}"
	sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v go >/dev/null || die "go is needed to build bench/cmd/benchrouter"

work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UPSTREAM_PORT" "$TEAL_PORT" "$HAPROXY_PORT"; do
	port_free "$p" || die "port $p is in use; set UPSTREAM_PORT, TEAL_PORT or HAPROXY_PORT"
done

# wait_http polls a target until it answers, for up to 10 seconds.
wait_http() {
	local deadline=$((SECONDS + 10))
	until curl -sf -o /dev/null "http://127.0.0.1:$1/"; do
		((SECONDS < deadline)) || die "nothing answers on port $1; logs in $work"
		sleep 0.1
	done
}

say "building benchrouter"
(cd "$root" && go build -o "$work/benchrouter" ./bench/cmd/benchrouter)

"$work/benchrouter" -role upstream -upstream "127.0.0.1:$UPSTREAM_PORT" -body "$BODY" 2>"$work/upstream.log" &
pids+=($!)
"$work/benchrouter" -role router -upstream "127.0.0.1:$UPSTREAM_PORT" -listen "127.0.0.1:$TEAL_PORT" 2>"$work/teal.log" &
pids+=($!)

# HAProxy set up like teal's router: HTTP mode, keep-alive on both sides, one server,
# X-Forwarded-For added, as many threads as the machine has cores (its default).
cat >"$work/haproxy.cfg" <<EOF
global
	maxconn 4096
defaults
	mode http
	option http-keep-alive
	option forwardfor
	timeout connect 5s
	timeout client 30s
	timeout server 30s
frontend teal_bench
	bind 127.0.0.1:$HAPROXY_PORT
	default_backend upstream
backend upstream
	server up1 127.0.0.1:$UPSTREAM_PORT
EOF
haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
pids+=($!)

wait_http "$UPSTREAM_PORT"
wait_http "$TEAL_PORT"
wait_http "$HAPROXY_PORT"

targets=(direct teal haproxy)
declare -A port=([direct]=$UPSTREAM_PORT [teal]=$TEAL_PORT [haproxy]=$HAPROXY_PORT)
for t in "${targets[@]}"; do
	say "warming up $t ($WARMUP)"
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:${port[$t]}/" >/dev/null
done
for t in "${targets[@]}"; do
	say "measuring $t (wrk -t$THREADS -c$CONNS -d$DURATION --latency)"
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${port[$t]}/" >"$work/$t.wrk"
done

# parse prints "req/s p50 p90 p99 errors" from wrk's output, latencies in milliseconds.
parse() {
	awk '
	function ms(v) {
		if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
		if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
		if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
		return v + 0
	}
	/^Requests\/sec:/ { rps = $2 }
	$1 == "50%" { p50 = ms($2) }
	$1 == "90%" { p90 = ms($2) }
	$1 == "99%" { p99 = ms($2) }
	/Non-2xx or 3xx responses:/ { errs += $NF }
	/Socket errors:/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
	END { printf "%.0f %.2f %.2f %.2f %d\n", rps, p50, p90, p99, errs }
	' "$1"
}

declare -A rps p50 p90 p99 errs
for t in "${targets[@]}"; do
	read -r rps[$t] p50[$t] p90[$t] p99[$t] errs[$t] < <(parse "$work/$t.wrk")
	((${rps[$t]} > 0)) || die "no result for $t; wrk said: $(cat "$work/$t.wrk")"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
teal_haproxy=$(ratio "${rps[teal]}" "${rps[haproxy]}")
teal_direct=$(ratio "${rps[teal]}" "${rps[direct]}")

when=$(date -u '+%Y-%m-%d %H:%M UTC')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
load=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
gover=$(go env GOVERSION)
hapver=$(haproxy -v | awk 'NR == 1 { print $3 }')

table=$work/table.md
{
	echo "Run $when, commit $commit: wrk -t$THREADS -c$CONNS -d$DURATION --latency, GET / answered"
	echo "with a $BODY-byte body by a Go upstream, all on 127.0.0.1; $gover, HAProxy $hapver."
	echo
	echo "| target | req/s | p50 ms | p90 ms | p99 ms | errors | req/s ÷ haproxy | req/s ÷ direct |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${targets[@]}"; do
		echo "| $t | ${rps[$t]} | ${p50[$t]} | ${p90[$t]} | ${p99[$t]} | ${errs[$t]} |" \
			"$(ratio "${rps[$t]}" "${rps[haproxy]}") | $(ratio "${rps[$t]}" "${rps[direct]}") |"
	done
	echo
	echo "**teal/haproxy = ${teal_haproxy}×, teal/direct = ${teal_direct}×.** Machine: $cores cores"
	echo "($cpu), shared by the load generator, the proxy under test and the upstream (and"
	echo "anything else running: load average $load at the end), so absolute numbers are low and"
	echo "noisy; the ratios are the point."
} >"$table"
history_line="- $when, commit $commit: teal ${rps[teal]} req/s (p99 ${p99[teal]} ms), haproxy ${rps[haproxy]} (p99 ${p99[haproxy]} ms), direct ${rps[direct]}; teal/haproxy ${teal_haproxy}×, teal/direct ${teal_direct}× (wrk -t$THREADS -c$CONNS -d$DURATION, $cores cores, load $load)"

cat "$table"
[ -z "${NO_DOC:-}" ] || exit 0

# docs/benchmarks.md: the Router section's table is replaced; every run is added, newest
# first, to the history under it.
if [ ! -f "$doc" ] || ! grep -q '<!-- router:begin -->' "$doc"; then
	mkdir -p "$(dirname "$doc")"
	[ -f "$doc" ] || cat >"$doc" <<'EOF'
# Benchmarks

How fast teal's own moving parts are, measured on the project's machines with the scripts in
`bench/` (see `bench/README.md`). Each section shows the latest run; earlier runs are kept as
a dated history under it. Re-run a script to refresh its section.
EOF
	cat >>"$doc" <<'EOF'

## Router

The built-in router (`proxy.Router`) against HAProxy set up the same way (HTTP mode,
keep-alive, one server) and against the upstream without a proxy. Produced by
`bench/router.sh`.

<!-- router:begin -->
<!-- router:end -->

### Router history

<!-- router:history -->
EOF
fi
awk -v table="$table" -v line="$history_line" '
	/<!-- router:begin -->/ { print; while ((getline l < table) > 0) print l; skip = 1; next }
	/<!-- router:end -->/ { skip = 0 }
	skip { next }
	/<!-- router:history -->/ { print; print line; next }
	{ print }
' "$doc" >"$work/doc.md"
cp "$work/doc.md" "$doc"
say "wrote $doc"
