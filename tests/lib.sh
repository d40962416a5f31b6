# SPDX-License-Identifier: MIT
# lib.sh - sourced by the shell suites (cli.sh, serve.sh, integration.sh):
# the pass/fail count, servers on ports the kernel picks, and the toy model
# the test plugin serves.  The suite sets B (the build tree) and MH first.
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }

# servers_setup: T, a temporary directory; PIDS, the servers start runs,
# every one killed on exit, the end of their logs shown after a failure.
servers_setup() {
	T=$(mktemp -d)
	PIDS=
	trap servers_cleanup EXIT
	trap 'exit 1' INT TERM
}
servers_cleanup() {
	for p in $PIDS; do kill -9 "$p" 2>/dev/null; done
	if [ "$fail" -ne 0 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] && { echo "=== server log $f"; tail -n 40 "$f"; }
		done
	fi
	rm -rf "$T"
}

# start NAME ARGS...: a server in the background; sets PORT and SPID, its
# stderr in $T/NAME.log.  Waits (at most 60 s) until /health says ok.
start() {
	name=$1
	shift
	: >"$T/$name.log"
	"$MH" serve --port 0 "$@" 2>"$T/$name.log" &
	SPID=$!
	PIDS="$PIDS $SPID"
	PORT=
	i=0
	while [ "$i" -lt 600 ]; do
		PORT=$(sed -n 's/^modelhost: serve: listening on http:\/\/127\.0\.0\.1:\([0-9]*\)\/.*/\1/p' \
			"$T/$name.log")
		if [ -n "$PORT" ] && [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' \
			"http://127.0.0.1:$PORT/health")" = 200 ]; then
			return 0
		fi
		kill -0 "$SPID" 2>/dev/null || break
		i=$((i + 1))
		sleep 0.1
	done
	bad "$name: the server did not come up: $(cat "$T/$name.log")"
	return 1
}

# toy_model DIR [CONFIG]: the model the toy test plugin serves: a vocabulary
# of 4, EOS 3, logits 0.5 2.0 1.0 0.0 (greedy repeats id 1); CONFIG is
# more of config.json, e.g. ', "toy_delay_ms": 25'.
toy_model() {
	printf '{"architectures": ["ToyForCausalLM"], "vocab_size": 4, "eos_token_id": 3%s}' "${2:-}" \
		>"$1/config.json"
	hdr='{"toy.logits":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
	while [ $((${#hdr} % 8)) -ne 0 ]; do hdr="$hdr "; done
	{ # u64 header length, the header, then the logits as little-endian F32
		printf "\\$(printf %03o ${#hdr})\\000\\000\\000\\000\\000\\000\\000"
		printf '%s' "$hdr"
		printf '\000\000\000\077\000\000\000\100\000\000\200\077\000\000\000\000'
	} >"$1/model.safetensors"
}
