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

# toy_model [-c JSON] DIR VOCAB L0 L1 ...: a checkpoint the toy test plugin
# serves (EOS 3) whose logits are L0 L1 ... (the rest 0), written beside
# and renamed into place; -c: more of config.json, e.g. '{"toy_delay_ms": 25}'.
toy_model() {
	more='{}'
	if [ "$1" = -c ]; then
		more=$2
		shift 2
	fi
	mkdir -p "$1"
	python3 - "$more" "$@" <<'PY'
import json, os, struct, sys
more, d, vocab, vals = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), [float(v) for v in sys.argv[4:]]
logits = vals + [0.0] * (vocab - len(vals))
hdr = json.dumps({"toy.logits": {"dtype": "F32", "shape": [vocab], "data_offsets": [0, 4 * vocab]}})
hdr += " " * (-len(hdr) % 8)
config = dict({"architectures": ["ToyForCausalLM"], "vocab_size": vocab, "eos_token_id": 3}, **more)
for name, data in (("config.json", json.dumps(config).encode()),
                   ("model.safetensors", struct.pack("<Q", len(hdr)) + hdr.encode() +
                    struct.pack("<%df" % vocab, *logits))):
    with open(os.path.join(d, name + ".new"), "wb") as f:
        f.write(data)
    os.rename(os.path.join(d, name + ".new"), os.path.join(d, name))
PY
}
