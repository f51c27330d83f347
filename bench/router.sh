#!/usr/bin/env bash
# Benchmarks teal's built-in router against its peers — HAProxy, nginx, a plain
# httputil.ReverseProxy, teal's own old path (ReverseProxy over http.Transport) — and against
# the upstream directly, side by side in one run on this machine, and records the result in
# docs/benchmarks.md. See bench/README.md.
#
#   bench/router.sh                     # 3 interleaved rounds of wrk -t2 -c64 -d10s per target,
#                                       # then a constant-rate pass at half of teal's rate
#   ROUNDS=5 DURATION=20s bench/router.sh
#   NO_DOC=1 bench/router.sh            # print the tables, leave docs/benchmarks.md alone
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
RATE_DURATION=${RATE_DURATION:-10s}
BODY=${BODY:-13}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
TEAL_PORT=${TEAL_PORT:-18080}
HAPROXY_PORT=${HAPROXY_PORT:-18082}
HTTPUTIL_PORT=${HTTPUTIL_PORT:-18083}
NGINX_PORT=${NGINX_PORT:-18084}
TEALRP_PORT=${TEALRP_PORT:-18085}
TEALNET_PORT=${TEALNET_PORT:-18086}

root=$(cd "$(dirname "$0")/.." && pwd)
doc=$root/docs/benchmarks.md

say() { printf 'router.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# Tools: installed from Debian when missing.
"$root/scripts/deps.sh" bench
command -v go >/dev/null || die "go is needed to build bench/cmd/benchrouter, benchload and benchwire"

work=$(mktemp -d)
chmod 755 "$work" # nginx's workers run as nobody
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$UPSTREAM_PORT" "$TEAL_PORT" "$HAPROXY_PORT" "$HTTPUTIL_PORT" "$NGINX_PORT" "$TEALRP_PORT" "$TEALNET_PORT"; do
	port_free "$p" || die "port $p is in use; set the *_PORT variables"
done

# wait_http polls a target until it answers, for up to 10 seconds.
wait_http() {
	local deadline=$((SECONDS + 10))
	until curl -sf -o /dev/null "http://127.0.0.1:$1/"; do
		((SECONDS < deadline)) || die "nothing answers on port $1; logs in $work"
		sleep 0.1
	done
}

say "building benchrouter, benchload and benchwire"
(cd "$root" && go build -o "$work/benchrouter" ./bench/cmd/benchrouter && go build -o "$work/benchload" ./bench/cmd/benchload &&
	go build -o "$work/benchwire" ./bench/cmd/benchwire)

# The third measurement captures the loopback device (tcpdump), which needs root or
# CAP_NET_RAW; without it that column says n/a.
wire=1
if ! timeout 2 tcpdump -i lo -c 1 -w /dev/null 'tcp port 9' >/dev/null 2>"$work/tcpdump-check"; then
	grep -qi 'permission\|not permitted' "$work/tcpdump-check" && wire=0
fi
((wire)) || say "tcpdump cannot capture here (run as root for the wire column); going on without it"

# proc holds each target's processes, whose CPU time per request is measured: for direct,
# the upstream itself.
declare -A proc
up=127.0.0.1:$UPSTREAM_PORT
"$work/benchrouter" -role upstream -upstream "$up" -body "$BODY" 2>"$work/upstream.log" &
pids+=($!) proc[direct]=$!
"$work/benchrouter" -role router -upstream "$up" -listen "127.0.0.1:$TEAL_PORT" 2>"$work/teal.log" &
pids+=($!) proc[teal]=$!
"$work/benchrouter" -role router -transport http -upstream "$up" -listen "127.0.0.1:$TEALRP_PORT" 2>"$work/teal-rp.log" &
pids+=($!) proc[teal-rp]=$!
"$work/benchrouter" -role router -server nethttp -upstream "$up" -listen "127.0.0.1:$TEALNET_PORT" 2>"$work/teal-nethttp.log" &
pids+=($!) proc[teal-nethttp]=$!
"$work/benchrouter" -role httputil -upstream "$up" -listen "127.0.0.1:$HTTPUTIL_PORT" 2>"$work/httputil.log" &
pids+=($!) proc[httputil]=$!

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
	server up1 $up
EOF
haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" &
pids+=($!) proc[haproxy]=$!

# nginx likewise: a worker per core, kept-alive upstream connections (HTTP/1.1, no
# Connection header passed on), the client's Host kept, X-Forwarded-* set, no access log.
mkdir -m 777 "$work/nginx"
cat >"$work/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $work/nginx/body;
	proxy_temp_path $work/nginx/proxy;
	fastcgi_temp_path $work/nginx/fastcgi;
	uwsgi_temp_path $work/nginx/uwsgi;
	scgi_temp_path $work/nginx/scgi;
	upstream up {
		server $up;
		keepalive 256;
	}
	server {
		listen 127.0.0.1:$NGINX_PORT;
		location / {
			proxy_pass http://up;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$remote_addr;
			proxy_set_header X-Forwarded-Host \$host;
			proxy_set_header X-Forwarded-Proto \$scheme;
		}
	}
}
EOF
nginx -c "$work/nginx.conf" -p "$work/nginx" 2>"$work/nginx.log" &
pids+=($!) proc[nginx]=$!

targets=(direct teal haproxy nginx httputil teal-rp teal-nethttp)
declare -A port=([direct]=$UPSTREAM_PORT [teal]=$TEAL_PORT [haproxy]=$HAPROXY_PORT
	[nginx]=$NGINX_PORT [httputil]=$HTTPUTIL_PORT [teal-rp]=$TEALRP_PORT [teal-nethttp]=$TEALNET_PORT)
for t in "${targets[@]}"; do wait_http "${port[$t]}"; done
# nginx's work is done by the workers its master started.
proc[nginx]="${proc[nginx]} $(pgrep -P "${proc[nginx]}" | tr '\n' ' ')"
hz=$(getconf CLK_TCK)
# ticks prints the CPU time (user and system, in clock ticks) the processes $@ have used.
ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$s"; }
for t in "${targets[@]}"; do
	say "warming up $t ($WARMUP)"
	wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" "http://127.0.0.1:${port[$t]}/" >/dev/null
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds interleave the targets, each round starting one target further on, so that a burst
# of load from elsewhere on the machine does not land on one target only.
n=${#targets[@]}
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		t=${targets[$(((i + r - 1) % n))]}
		say "round $r/$ROUNDS: $t (wrk -t$THREADS -c$CONNS -d$DURATION --latency)"
		# shellcheck disable=SC2086 # a list of pids
		before=$(ticks ${proc[$t]})
		wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:${port[$t]}/" >"$work/$t.$r.wrk"
		# shellcheck disable=SC2086
		echo $(($(ticks ${proc[$t]}) - before)) >"$work/$t.$r.ticks"
	done
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
# median prints the median of its arguments (the lower middle one for an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

declare -A rps p50 p90 p99 errs spread cpu
for t in "${targets[@]}"; do
	all_rps=() all_p50=() all_p90=() all_p99=() all_cpu=() e=0
	for ((r = 1; r <= ROUNDS; r++)); do
		read -r a b c d x < <(parse "$work/$t.$r.wrk")
		((a > 0)) || die "no result for $t; wrk said: $(cat "$work/$t.$r.wrk")"
		all_rps+=("$a") all_p50+=("$b") all_p90+=("$c") all_p99+=("$d") e=$((e + x))
		n=$(awk '/ requests in / { print $1 }' "$work/$t.$r.wrk")
		all_cpu+=("$(awk -v t="$(cat "$work/$t.$r.ticks")" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.1f", t * 1e6 / hz / n }')")
	done
	cpu[$t]=$(median "${all_cpu[@]}")
	rps[$t]=$(median "${all_rps[@]}") p50[$t]=$(median "${all_p50[@]}")
	p90[$t]=$(median "${all_p90[@]}") p99[$t]=$(median "${all_p99[@]}") errs[$t]=$e
	spread[$t]=$(printf '%s\n' "${all_rps[@]}" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }')
done
load_mid=$(cut -d' ' -f1-3 /proc/loadavg)

# Second pass: a constant rate, half of teal's maximum, against each target, to see the
# latency each adds (its p99 minus the upstream's own at the same rate). The requests are
# numbered (-tag) and the loopback device is captured meanwhile, for every target alike: the
# capture pairs each request with the one the proxy sent on, and benchwire reads from the
# kernel's timestamps how long each request spent in the proxy — the latency it adds, free
# of the load generator's own lateness.
rate=$((${rps[teal]} / 2))
rate_targets=(direct teal haproxy nginx httputil teal-nethttp)
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < ${#rate_targets[@]}; i++)); do
		t=${rate_targets[$(((i + r - 1) % ${#rate_targets[@]}))]}
		say "round $r/$ROUNDS at $rate req/s: $t (benchload -duration $RATE_DURATION)"
		td=
		if ((wire)); then
			tcpdump -i lo -n -s 128 -B 32768 -w "$work/$t.$r.pcap" \
				"tcp[tcpflags] & tcp-push != 0 and (port ${port[$t]} or port $UPSTREAM_PORT)" 2>"$work/$t.$r.tcpdump" &
			td=$!
			deadline=$((SECONDS + 10))
			until grep -q 'listening on' "$work/$t.$r.tcpdump"; do
				((SECONDS < deadline)) || die "tcpdump did not start: $(cat "$work/$t.$r.tcpdump")"
				sleep 0.05
			done
		fi
		"$work/benchload" -tag -url "http://127.0.0.1:${port[$t]}/" -rate "$rate" -conns "$CONNS" \
			-duration "$RATE_DURATION" >"$work/$t.$r.rate"
		if [ -n "$td" ]; then
			kill -INT "$td"
			wait "$td" || true
			if [ "$t" != direct ]; then
				"$work/benchwire" -proxy "${port[$t]}" -upstream "$UPSTREAM_PORT" "$work/$t.$r.pcap" >"$work/$t.$r.wire" ||
					die "benchwire could not read the capture of $t"
			fi
			rm -f "$work/$t.$r.pcap"
		fi
	done
done
declare -A rp50 rp99 rerr wp50 wp99 wdrop
field() { tr ' ' '\n' <"$1" | awk -F= -v k="$2" '$1 == k { print $2 }'; }
for t in "${rate_targets[@]}"; do
	a=() b=() c=() d=() e=0 x=0
	for ((r = 1; r <= ROUNDS; r++)); do
		a+=("$(field "$work/$t.$r.rate" p50_ms)") b+=("$(field "$work/$t.$r.rate" p99_ms)")
		e=$((e + $(field "$work/$t.$r.rate" errors)))
		if [ -f "$work/$t.$r.wire" ]; then
			c+=("$(field "$work/$t.$r.wire" added_p50_ms)") d+=("$(field "$work/$t.$r.wire" added_p99_ms)")
			x=$((x + $(awk '/packets dropped by kernel/ { print $1 }' "$work/$t.$r.tcpdump")))
		fi
	done
	rp50[$t]=$(median "${a[@]}") rp99[$t]=$(median "${b[@]}") rerr[$t]=$e
	wp50[$t]=n/a wp99[$t]=n/a wdrop[$t]=$x
	if ((${#c[@]})); then wp50[$t]=$(median "${c[@]}") wp99[$t]=$(median "${d[@]}"); fi
done
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }
teal_added=$(added "${rp99[teal]}" "${rp99[direct]}")
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

teal_haproxy=$(ratio "${rps[teal]}" "${rps[haproxy]}")
teal_httputil=$(ratio "${rps[teal]}" "${rps[httputil]}")
teal_nginx=$(ratio "${rps[teal]}" "${rps[nginx]}")
teal_direct=$(ratio "${rps[teal]}" "${rps[direct]}")
teal_rp=$(ratio "${rps[teal]}" "${rps[teal-rp]}")

when=$(date -u '+%Y-%m-%d %H:%M UTC')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
gover=$(go env GOVERSION)
hapver=$(haproxy -v | awk 'NR == 1 { print $3 }')
ngxver=$(nginx -v 2>&1 | sed 's/.*nginx\///; s/ .*//')

table=$work/table.md
{
	echo "Run $when, commit $commit: $ROUNDS interleaved rounds of wrk -t$THREADS -c$CONNS -d$DURATION"
	echo "--latency per target (medians below; req/s range over the rounds in brackets), GET /"
	echo "answered with a $BODY-byte body by a Go upstream, all on 127.0.0.1; $gover, HAProxy $hapver,"
	echo "nginx $ngxver. *teal-rp* is teal's router over \`httputil.ReverseProxy\` and \`http.Transport\`,"
	echo "the path every request took before the connection pool; *teal-nethttp* is teal's router"
	echo "behind net/http's server instead of its own (\`proxy.Server\`)."
	echo
	echo "| target | req/s | (range) | CPU µs/req | p50 ms | p90 ms | p99 ms | errors | ÷ haproxy | ÷ httputil | ÷ nginx | ÷ direct |"
	echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for t in "${targets[@]}"; do
		echo "| $t | ${rps[$t]} | ${spread[$t]} | ${cpu[$t]} | ${p50[$t]} | ${p90[$t]} | ${p99[$t]} | ${errs[$t]} |" \
			"$(ratio "${rps[$t]}" "${rps[haproxy]}") | $(ratio "${rps[$t]}" "${rps[httputil]}") |" \
			"$(ratio "${rps[$t]}" "${rps[nginx]}") | $(ratio "${rps[$t]}" "${rps[direct]}") |"
	done
	echo
	echo "CPU µs/req is the CPU time (user and system) of the target's own processes over its wrk"
	echo "rounds divided by the requests answered, median of the rounds; for direct it is the"
	echo "upstream's own. It depends less on what else runs than req/s does."
	echo
	echo "At a constant $rate req/s (half of teal's median), $ROUNDS rounds of \`benchload -conns $CONNS"
	echo "-duration $RATE_DURATION\` per target, latency counted from when each request was due:"
	echo
	echo "| target | p50 ms | p99 ms | p99 added ms | errors | in the proxy p50 ms | in the proxy p99 ms |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for t in "${rate_targets[@]}"; do
		if [ "$t" = direct ]; then w1=– w2=–; else w1=${wp50[$t]} w2=${wp99[$t]}; fi
		echo "| $t | ${rp50[$t]} | ${rp99[$t]} | $(added "${rp99[$t]}" "${rp99[direct]}") | ${rerr[$t]} | $w1 | $w2 |"
	done
	echo
	echo "*In the proxy* is read off a capture of the loopback device taken during the same rounds"
	echo "(\`tcpdump\`, then \`bench/cmd/benchwire\`): per request, from the client's request reaching"
	echo "the proxy to the proxy's answer leaving it, less the upstream's time — the latency the proxy"
	echo "adds, without the load generator's own lateness. Medians of the rounds' percentiles;"
	echo "packets the kernel dropped from the capture: teal ${wdrop[teal]}, haproxy ${wdrop[haproxy]}, nginx ${wdrop[nginx]}."
	echo
	echo "**teal/haproxy = ${teal_haproxy}×, teal/httputil = ${teal_httputil}×, teal/nginx = ${teal_nginx}×,"
	echo "teal/teal-rp = ${teal_rp}×; p99 added at $rate req/s = ${teal_added} ms; p99 in the proxy: teal"
	echo "${wp99[teal]} ms, haproxy ${wp99[haproxy]} ms, nginx ${wp99[nginx]} ms.** Machine: $cores cores"
	echo "($cpu), shared by the load generator, the proxies and the upstream, and by anything"
	echo "else running: load average $load_start before the rounds, $load_mid after them, $load_end"
	echo "at the end. Absolute numbers are low and noisy; the ratios within the run are the point."
} >"$table"
history_line="- $when, commit $commit: teal ${rps[teal]} req/s (p99 ${p99[teal]} ms, ${cpu[teal]} µs CPU/req), haproxy ${rps[haproxy]} (${cpu[haproxy]} µs), nginx ${rps[nginx]} (${cpu[nginx]} µs), httputil ${rps[httputil]} (${cpu[httputil]} µs), teal-rp ${rps[teal-rp]} (${cpu[teal-rp]} µs), direct ${rps[direct]}; teal/haproxy ${teal_haproxy}×, teal/httputil ${teal_httputil}×, teal/nginx ${teal_nginx}×, teal/direct ${teal_direct}×; p99 added at $rate req/s ${teal_added} ms, p99 in the proxy teal ${wp99[teal]} ms, haproxy ${wp99[haproxy]} ms, nginx ${wp99[nginx]} ms (median of $ROUNDS × wrk -t$THREADS -c$CONNS -d$DURATION, $cores cores, load $load_start → $load_end)"

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

The built-in router (`proxy.Router`) against HAProxy, nginx and a plain
`httputil.ReverseProxy` set up the same way (HTTP, keep-alive on both sides, one server) and
against the upstream without a proxy. Produced by `bench/router.sh`.

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
