#!/usr/bin/env bash
# bench/run.sh — the load run of docs/performance.md: jwtauthz side by side with an
# always-allow ext_authz server (the floor), driven by ghz with Envoy-shaped
# CheckRequests, server and load tool each pinned to one core.
#
#   BENCH_WAIT_QUIET=1 bash bench/run.sh   # the full run (about 15 minutes), updates docs/
#   BENCH_DURATION=3s BENCH_POOL=400 BENCH_NEWUSERS=30000 BENCH_MEMORY_TOKENS=2000 \
#     BENCH_GO_COUNT=1 BENCH_DOCS=0 bash bench/run.sh      # a quick try
#
# Needs Linux with at least 2 CPUs, Go, taskset (util-linux) and gzip.
# Results go to bench/out/: one ghz JSON per scenario (gzipped at the end),
# results.csv, results.md, latency.png, the Go benchmarks (./authz/ and
# authz/route's BenchmarkMatch100) and benchstat.
# With BENCH_DOCS=1 (the default) the plot is copied to docs/performance.png
# and the results section of docs/performance.md is replaced.
#
# Settings (environment):
#   BENCH_DURATION        each closed- and open-loop scenario (20s)
#   BENCH_POOL            token pool, split between the two providers (10000)
#   BENCH_CONCURRENCIES   closed-loop concurrencies ("1 16 64")
#   BENCH_RATES           open-loop offered rates, requests/s ("1000 2500 5000 7500")
#   BENCH_OPEN_CONCURRENCY ghz workers in open loop (50)
#   BENCH_NEWUSERS        pool of fresh users for the new-user scenarios: more than
#                         the fastest run can use in BENCH_DURATION (150000)
#   BENCH_MEMORY_TOKENS   distinct tokens and users of the memory scenario (100000)
#   BENCH_GO_COUNT        -count of the Go benchmarks; 0 skips them (5)
#   BENCH_WAIT_QUIET      1: first wait (up to 20 min) for the 1-minute load
#                         average to stay below 0.7 for a minute (0)
#   BENCH_SERVER_CPU, BENCH_LOAD_CPU  cores for the server and ghz (0, 1)
#   BENCH_DOCS            1: update docs/performance.md and docs/performance.png (1)
#   BENCH_OUT             output directory (bench/out)
#   BENCH_REPORT_ONLY     1: measure nothing; render results.md, the plot and the
#                         docs again from the raw outputs already in BENCH_OUT (0)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${BENCH_DURATION:-20s}
POOL=${BENCH_POOL:-10000}
CONCURRENCIES=${BENCH_CONCURRENCIES:-1 16 64}
RATES=${BENCH_RATES:-1000 2500 5000 7500}
OPEN_CONCURRENCY=${BENCH_OPEN_CONCURRENCY:-50}
NEWUSERS=${BENCH_NEWUSERS:-150000}
MEMORY_TOKENS=${BENCH_MEMORY_TOKENS:-100000}
GO_COUNT=${BENCH_GO_COUNT:-5}
WAIT_QUIET=${BENCH_WAIT_QUIET:-0}
SERVER_CPU=${BENCH_SERVER_CPU:-0}
LOAD_CPU=${BENCH_LOAD_CPU:-1}
DOCS=${BENCH_DOCS:-1}
OUT=${BENCH_OUT:-$ROOT/bench/out}
REPORT_ONLY=${BENCH_REPORT_ONLY:-0}

ISS_RS512=https://idp-a.example.com
ISS_ES256=https://idp-b.example.com
CALL=envoy.service.auth.v3.Authorization/Check

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$OUT/run.log" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- checks
mkdir -p "$OUT"
if [[ $REPORT_ONLY != 1 ]]; then
	rm -rf "$OUT/ghz" "$OUT/logs" "$OUT/config"
	rm -f "$OUT"/run.log "$OUT"/scenarios.tsv "$OUT"/*.csv "$OUT"/*.md "$OUT"/*.png "$OUT"/*.txt
	mkdir -p "$OUT/ghz" "$OUT/logs" "$OUT/config"
fi

[[ $(uname -s) == Linux ]] || die "needs Linux (/proc, taskset)"
command -v taskset >/dev/null || die "taskset not found (apt-get install util-linux)"
command -v gzip >/dev/null || die "gzip not found"
command -v go >/dev/null || die "go not found"
NPROC=$(nproc --all)
((NPROC >= 2)) || die "needs 2 CPUs (server and load tool on separate cores); nproc says $NPROC"
CLK_TCK=$(getconf CLK_TCK)
load1() { cut -d' ' -f1 /proc/loadavg; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jwtauthz-bench.XXXXXX")
SERVER_PID=""
cleanup() {
	if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- report
# render: results.csv, results.md and the plot from the raw outputs in OUT,
# then (BENCH_DOCS=1) docs/performance.png and docs/performance.md's section.
render() {
	log "report and plot"
	"$BIN/report" --out "$OUT" --image latency.png >"$OUT/results.md"
	"$BIN/report" --out "$OUT" --image performance.png --heading-level 3 >"$OUT/docs-section.md"
	"$BIN/plot" --csv "$OUT/results.csv" --out "$OUT/latency.png"
	if compgen -G "$OUT/ghz/*.json" >/dev/null; then gzip -f "$OUT"/ghz/*.json; fi

	if [[ $DOCS == 1 ]]; then
		cp "$OUT/latency.png" docs/performance.png
		begin='<!-- BEGIN bench/run.sh results -->'
		end='<!-- END bench/run.sh results -->'
		grep -qF "$begin" docs/performance.md || die "docs/performance.md has no '$begin' marker"
		awk -v b="$begin" -v e="$end" -v f="$OUT/docs-section.md" '
			$0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
			$0 == e { skip = 0 }
			!skip' docs/performance.md >"$WORK/performance.md"
		cp "$WORK/performance.md" docs/performance.md
		log "updated docs/performance.md and docs/performance.png"
	fi
	log "done: $OUT/results.md"
}

# ---------------------------------------------------------------- build
BIN=$WORK/bin
mkdir -p "$BIN"
go build -trimpath -o "$BIN/report" ./bench/report
go build -trimpath -o "$BIN/plot" ./bench/plot
if [[ $REPORT_ONLY == 1 ]]; then
	[[ -s $OUT/scenarios.tsv ]] || die "BENCH_REPORT_ONLY=1 but $OUT holds no run"
	render
	exit 0
fi
log "building jwtauthz, bench/floor, bench/tokens, ghz, benchstat"
go build -trimpath -o "$BIN/jwtauthz" ./cmd/jwtauthz
go build -trimpath -o "$BIN/floor" ./bench/floor
go build -trimpath -o "$BIN/tokens" ./bench/tokens
# ghz and benchstat are pinned in tools/go.mod (go get -tool).
(cd tools && go build -trimpath -o "$BIN/ghz" github.com/bojand/ghz/cmd/ghz &&
	go build -trimpath -o "$BIN/benchstat" golang.org/x/perf/cmd/benchstat)
GHZ_VERSION=$(cd tools && go list -m -f '{{.Version}}' github.com/bojand/ghz)
if ((GO_COUNT > 0)); then
	go test -c -o "$BIN/authz.test" ./authz/
	go test -c -o "$BIN/route.test" ./authz/route/
fi

{
	echo "date	$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit	$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$([[ -z $(git status --porcelain -- authz cmd store go.mod 2>/dev/null) ]] || echo ' + uncommitted changes in authz/, cmd/, store/ or go.mod')"
	echo "nproc	$NPROC"
	echo "cpu	$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
	echo "kernel	$(uname -r)"
	echo "go	$(go env GOVERSION)"
	echo "ghz	$GHZ_VERSION"
	echo "memory	$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "filesystem	$(df -T "$WORK" | awk 'NR == 2 { print $2 }') (bbolt files in $(dirname "$WORK"))"
	echo "duration	$DURATION"
	echo "pool	$POOL"
	echo "newusers	$NEWUSERS"
	echo "memory_tokens	$MEMORY_TOKENS"
	echo "open_concurrency	$OPEN_CONCURRENCY"
	echo "server_cpu	$SERVER_CPU"
	echo "load_cpu	$LOAD_CPU"
	echo "go_count	$GO_COUNT"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------- keys, tokens, requests
KEYS=$WORK/keys
"$BIN/jwtauthz" keygen --alg RS512 --bits 4096 --out "$KEYS/rs512" >"$WORK/keygen-rs512.txt"
"$BIN/jwtauthz" keygen --alg ES256 --out "$KEYS/es256" >"$WORK/keygen-es256.txt"
KID_ES256=$(awk '/^kid:/ { print $2 }' "$WORK/keygen-es256.txt")
[[ -n $KID_ES256 ]] || die "no kid in keygen output"

mint() { # OUT ALG PREFIX N [START]
	local key iss kid=""
	case $2 in
	RS512) key=$KEYS/rs512/private.pem iss=$ISS_RS512 ;;
	ES256) key=$KEYS/es256/private.pem iss=$ISS_ES256 kid=$KID_ES256 ;;
	esac
	"$BIN/tokens" mint --key "$key" --alg "$2" --kid "$kid" --iss "$iss" --ttl 12h \
		--prefix "$3" --n "$4" --start "${5:-0}" >"$1"
}

D=$WORK/data
mkdir -p "$D"
half_rs=$((POOL / 2))
half_es=$((POOL - half_rs))
log "minting the pool: $half_rs RS512-4096 and $half_es ES256 tokens, one user each"
mint "$D/rs512.txt" RS512 rs "$half_rs"
mint "$D/es256.txt" ES256 es "$half_es"
# One pool of fresh users serves the new-user runs and the memory run: each
# runs against a fresh store, and ghz sends pool element i as request i.
FRESH=$((NEWUSERS > MEMORY_TOKENS ? NEWUSERS : MEMORY_TOKENS))
log "minting $FRESH ES256 tokens of fresh users (new-user and memory scenarios)"
mint "$D/fresh.txt" ES256 new "$FRESH"
# ghz data files of Envoy-shaped CheckRequests, as length-delimited protobuf
# messages (ghz --binary-file): ghz decodes them all once at start-up,
# while from a JSON array (--data-file) it converts each element the first
# time it is sent and copies it on every send: on its one core, ghz then
# sends markedly fewer Checks per second, most of all from a pool whose
# elements are never repeated (the new-user scenarios).
# The first requests of the pool are also written as JSON, to read.
"$BIN/tokens" requests --format binary "$D/rs512.txt" "$D/es256.txt" >"$D/pool.bin" # alternating providers
"$BIN/tokens" requests --format binary "$D/rs512.txt" >"$D/rs512.bin"
"$BIN/tokens" requests --format binary "$D/es256.txt" >"$D/es256.bin"
"$BIN/tokens" requests --format binary "$D/fresh.txt" >"$D/fresh.bin"
"$BIN/tokens" requests <(head -2 "$D/rs512.txt") <(head -2 "$D/es256.txt") >"$OUT/config/requests-sample.json"

# config NAME MAX_ENTRIES: the service's config, as a realistic deployment
# would have it: the original RS512 public key, and an ES256 identity
# provider's JWK Set, each with its issuer and an e-mail claim header.
config() {
	cat >"$OUT/config/$1.yaml" <<EOF
listen: 127.0.0.1:0
http_listen: 127.0.0.1:0
store:
  path: $WORK/db/$1.db
cache:
  max_entries: $2
providers:
  - name: rs512
    issuer: $ISS_RS512
    algorithms: [RS512]
    pem_files: [$KEYS/rs512/public.pem]
    claim_headers:
      x-auth-email: email
  - name: es256
    issuer: $ISS_ES256
    algorithms: [ES256]
    jwks_file: $KEYS/es256/jwks.json
    claim_headers:
      x-auth-email: email
EOF
	echo "$OUT/config/$1.yaml"
}
mkdir -p "$WORK/db"

# ---------------------------------------------------------------- quiet machine
# After building and minting (their own load decays while we wait), before
# the first measurement.
if [[ $WAIT_QUIET == 1 ]]; then
	log "waiting for the 1-minute load average to stay below 0.7 for 60 s (at most 20 min)"
	waited=0 quiet=0
	while ((waited < 1200 && quiet < 60)); do
		if awk -v l="$(load1)" 'BEGIN { exit !(l < 0.7) }'; then quiet=$((quiet + 5)); else quiet=0; fi
		sleep 5
		waited=$((waited + 5))
	done
	if ((quiet >= 60)); then log "quiet after ${waited}s: $(cat /proc/loadavg)"; else log "gave up waiting after ${waited}s: $(cat /proc/loadavg)"; fi
	echo "$waited $quiet" >"$OUT/quiet-wait.txt"
fi

cat /proc/loadavg >"$OUT/loadavg-before.txt"
printf 'measuring\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/machine.txt"

# ---------------------------------------------------------------- server control
GRPC_ADDR="" HTTP_ADDR="" SERVER_NAME=""

http_get() { # ADDR PATH: the response body, by bash's /dev/tcp (no curl needed)
	local fd
	exec {fd}<>"/dev/tcp/${1%:*}/${1##*:}"
	printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$2" "$1" >&"$fd"
	sed '1,/^\r$/d' <&"$fd"
	exec {fd}<&-
}

# start_server NAME floor|jwtauthz [CONFIG]: starts it pinned to SERVER_CPU
# and waits until it serves (jwtauthz: /readyz says every provider has keys).
start_server() {
	SERVER_NAME=$1
	local logf=$OUT/logs/$1.log
	: >"$logf" # before the server starts: its redirection happens in the background
	if [[ $2 == floor ]]; then
		taskset -c "$SERVER_CPU" "$BIN/floor" --listen 127.0.0.1:0 2>"$logf" &
	else
		rm -f "$WORK/db/$1.db"
		taskset -c "$SERVER_CPU" "$BIN/jwtauthz" serve --config "$3" --drain 0s --log-format json 2>"$logf" &
	fi
	SERVER_PID=$!
	local i
	for ((i = 0; i < 300; i++)); do
		GRPC_ADDR=$(sed -n '/ serving"/s/.*"grpc":"\([^"]*\)".*/\1/p' "$logf" | head -1)
		[[ -n $GRPC_ADDR ]] && break
		kill -0 "$SERVER_PID" 2>/dev/null || die "$1 exited: $(cat "$logf")"
		sleep 0.1
	done
	[[ -n $GRPC_ADDR ]] || die "$1 did not start: $(cat "$logf")"
	HTTP_ADDR=""
	if [[ $2 == jwtauthz ]]; then
		HTTP_ADDR=$(sed -n '/ serving"/s/.*"http":"\([^"]*\)".*/\1/p' "$logf" | head -1)
		for ((i = 0; i < 300; i++)); do
			[[ $(http_get "$HTTP_ADDR" /readyz 2>/dev/null) == ok ]] && break
			sleep 0.1
		done
	fi
	log "$1: pid $SERVER_PID, gRPC $GRPC_ADDR${HTTP_ADDR:+, HTTP $HTTP_ADDR}"
}

stop_server() {
	kill -TERM "$SERVER_PID"
	wait "$SERVER_PID" || log "$SERVER_NAME exited with status $?"
	SERVER_PID=""
}

alive() { # SCENARIO: the server must not have stopped (another process may signal it)
	kill -0 "$SERVER_PID" 2>/dev/null ||
		die "$SERVER_NAME (pid $SERVER_PID) is gone at scenario $1; its log ends: $(tail -3 "$OUT/logs/$SERVER_NAME.log")"
}
secs() { awk -v t="$1" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'; }
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; } # utime + stime
core_ticks() { awk -v c="cpu$1" '$1 == c { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# metrics: allow deny users_created cache_hit cache_miss heap_inuse_bytes ("- - ..." for the floor)
metrics() {
	if [[ -z $HTTP_ADDR ]]; then
		echo "- - - - - -"
		return
	fi
	http_get "$HTTP_ADDR" /metrics | awk '
		/^jwtauthz_checks_total\{/ { if ($1 ~ /decision="allow"/) a += $2; else d += $2 }
		/^jwtauthz_users_created_total / { u = $2 }
		/^jwtauthz_token_cache_requests_total\{result="hit"\}/ { h = $2 }
		/^jwtauthz_token_cache_requests_total\{result="miss"\}/ { m = $2 }
		/^go_memstats_heap_inuse_bytes / { hi = $2 }
		END { printf "%d %d %d %d %d %.0f\n", a, d, u, h, m, hi }'
}

printf 'name\ttarget\tmode\tconcurrency\trate\tghz_json\tserver_cpu_s\tcore_busy_s\tcore_total_s\tload_core_busy_s\tload_core_total_s\tload1\tallow\tdeny\tusers_created\tcache_hit\tcache_miss\trss_kb\thwm_kb\theap_inuse\n' >"$OUT/scenarios.tsv"

# scenario NAME TARGET MODE CONCURRENCY RATE DATA [ghz flags...]: one ghz run
# against the running server, with the server's CPU time, its core's busy
# time, and the service's counters before and after.
scenario() {
	local name=$1 target=$2 mode=$3 conc=$4 rate=$5 data=$6
	shift 6
	local m0 m1 c0 c1 k0 k1 l1
	alive "$name"
	l1=$(load1)
	m0=($(metrics))
	read -r k0b k0t < <(core_ticks "$SERVER_CPU")
	read -r g0b g0t < <(core_ticks "$LOAD_CPU")
	c0=$(cpu_ticks "$SERVER_PID")
	taskset -c "$LOAD_CPU" "$BIN/ghz" --insecure --call "$CALL" --binary-file "$data" \
		--cpus 1 --connections 1 \
		--duration-stop wait --timeout 10s -c "$conc" "$@" \
		-O json -o "$OUT/ghz/$name.json" "$GRPC_ADDR" 2>"$OUT/logs/ghz-$name.log" ||
		die "ghz $name failed: $(cat "$OUT/logs/ghz-$name.log")"
	alive "$name"
	c1=$(cpu_ticks "$SERVER_PID")
	read -r k1b k1t < <(core_ticks "$SERVER_CPU")
	read -r g1b g1t < <(core_ticks "$LOAD_CPU")
	m1=($(metrics))
	local d=() i
	for i in 0 1 2 3 4; do
		if [[ ${m0[i]} == - ]]; then d+=(-); else d+=($((m1[i] - m0[i]))); fi
	done
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$name" "$target" "$mode" "$conc" "$rate" "ghz/$name.json" \
		"$(secs $((c1 - c0)))" "$(secs $((k1b - k0b)))" "$(secs $((k1t - k0t)))" \
		"$(secs $((g1b - g0b)))" "$(secs $((g1t - g0t)))" \
		"$l1" "${d[0]}" "${d[1]}" "${d[2]}" "${d[3]}" "${d[4]}" \
		"$(rss_kb "$SERVER_PID")" "$(hwm_kb "$SERVER_PID")" "${m1[5]}" >>"$OUT/scenarios.tsv"
	log "$name: done ($(grep -o '"count":[0-9]*' "$OUT/ghz/$name.json" | head -1), server CPU $(((c1 - c0) * 100 / CLK_TCK))/100 s, load $l1)"
}

closed_loop() { # TARGET DATA
	local c
	for c in $CONCURRENCIES; do
		scenario "$1-c$c" "$1" closed "$c" 0 "$2" -z "$DURATION"
	done
}

open_loop() { # TARGET DATA
	local r
	for r in $RATES; do
		scenario "$1-r$r" "$1" open "$OPEN_CONCURRENCY" "$r" "$2" --rps "$r" -z "$DURATION"
	done
}

warm() { # TARGET DATA POOLSIZE: one pass over the pool (first logins; fills the cache)
	scenario "$1-warm" "$1" warm 16 0 "$2" -n "$3"
}

# ---------------------------------------------------------------- scenarios
log "floor"
start_server floor floor
closed_loop floor "$D/pool.bin"
open_loop floor "$D/pool.bin"
stop_server

log "jwtauthz, cached (cache.max_entries 100000), $POOL tokens of both providers"
start_server cached jwtauthz "$(config cached 100000)"
warm cached "$D/pool.bin" "$POOL"
closed_loop cached "$D/pool.bin"
open_loop cached "$D/pool.bin"
stop_server

log "jwtauthz, uncached (cache.max_entries 0), RS512-4096 tokens only"
start_server uncached-rs512 jwtauthz "$(config uncached-rs512 0)"
warm uncached-rs512 "$D/rs512.bin" "$half_rs"
closed_loop uncached-rs512 "$D/rs512.bin"
stop_server

log "jwtauthz, uncached (cache.max_entries 0), ES256 tokens only"
start_server uncached-es256 jwtauthz "$(config uncached-es256 0)"
warm uncached-es256 "$D/es256.bin" "$half_es"
closed_loop uncached-es256 "$D/es256.bin"
open_loop uncached-es256 "$D/es256.bin"
stop_server

# New users: every request a user the store has never seen (a fresh store
# per run; ghz sends pool element i as request i, so no token repeats as
# long as the run needs no more than the pool), ES256 tokens, cache on.
# (ghz -n N -x D would stop at the pool's end, but ghz v0.120.0 ignores -n
# when -x is given.)
for c in $CONCURRENCIES; do
	log "jwtauthz, new users, concurrency $c"
	start_server "newusers-c$c" jwtauthz "$(config "newusers-c$c" 100000)"
	scenario "newusers-c$c" newusers newusers "$c" 0 "$D/fresh.bin" -z "$DURATION"
	stop_server
	n=$(grep -o '"count":[0-9]*' "$OUT/ghz/newusers-c$c.json" | head -1 | cut -d: -f2 || true)
	((n <= FRESH)) || log "warning: newusers-c$c sent $n Checks, more than the $FRESH fresh users: raise BENCH_NEWUSERS"
done

# Memory: MEMORY_TOKENS distinct tokens (ES256, so minting stays quick) of as
# many users: a first pass creates the users and fills the cache, a second
# pass repeats them (known users, cache hits); VmRSS after each.
log "jwtauthz, memory: $MEMORY_TOKENS tokens and users"
start_server memory jwtauthz "$(config memory 100000)"
scenario memory-pass1 memory memory 64 0 "$D/fresh.bin" -n "$MEMORY_TOKENS"
scenario memory-pass2 memory memory 64 0 "$D/fresh.bin" -n "$MEMORY_TOKENS"
stop_server

cat /proc/loadavg >"$OUT/loadavg-after-load.txt"

# ---------------------------------------------------------------- Go benchmarks
if ((GO_COUNT > 0)); then
	log "Go benchmarks: -count $GO_COUNT, pinned to core $SERVER_CPU (GOMAXPROCS defaults to the 1 CPU taskset allows)"
	(cd authz && taskset -c "$SERVER_CPU" "$BIN/authz.test" -test.run '^$' -test.bench . -test.benchmem \
		-test.count "$GO_COUNT") >"$OUT/gobench.txt"
	(cd authz/route && taskset -c "$SERVER_CPU" "$BIN/route.test" -test.run '^$' -test.bench '^BenchmarkMatch100$' -test.benchmem \
		-test.count "$GO_COUNT") >>"$OUT/gobench.txt"
	(cd "$OUT" && "$BIN/benchstat" gobench.txt >benchstat.txt)
fi
cat /proc/loadavg >"$OUT/loadavg-after.txt"

render
