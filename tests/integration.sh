#!/bin/sh
# SPDX-License-Identifier: MIT
# integration.sh - `make check-integration`: `modelhost serve` with real
# clients and services, all on 127.0.0.1, every wait bounded, every process
# started here killed on exit.
#   1. OpenAI's Node client (npm package `openai`, installed into a temporary
#      directory; skipped with a message when npm cannot reach its registry),
#      tool calls included (the parrot test plugin)
#   2. a load test: 32 concurrent streaming clients while the plugin is
#      reinstalled and reloaded; no request fails and every greedy output
#      equals the same request run alone
#   3. two replicas behind nginx (examples/nginx/modelhost.conf), one killed:
#      new requests keep succeeding
set -u
B=${MODELHOST_BUILDDIR:-.}
SRC=${MODELHOST_SRCDIR:-.}
MH="$B/modelhost"
. "$(dirname "$0")/lib.sh"
servers_setup
skip=0
skipped() { skip=$((skip + 1)); echo "skip: $1"; }

for tool in curl; do
	command -v "$tool" >/dev/null 2>&1 || { echo "skipping: $tool not found"; exit 77; }
done

# text FILE: the text of a completion, or of a stream's events joined
text() {
	if grep -q '^data: ' "$1"; then
		grep '^data: {' "$1" | sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' | tr -d '\n'
	else
		sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' "$1"
	fi
}

# === 1. OpenAI's Node client ==========================================================
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	skipped "the OpenAI Node client: node and npm not found (apt-get install nodejs)"
elif ! (cd "$T" && mkdir node && cd node &&
	timeout 180 npm install --silent --no-audit --no-fund --prefix . openai@4 \
		>"$T/npm.log" 2>&1); then
	skipped "the OpenAI Node client: npm cannot reach its registry ($(tail -n 1 "$T/npm.log"))"
else
	start node -t 1 || exit 1
	cat >"$T/node/client.mjs" <<'EOF'
import OpenAI from 'openai';
const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'k3y', maxRetries: 0, timeout: 60000 });
const out = {};
const c = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time',
	max_tokens: 40, temperature: 0 });
out.completion = c.choices[0].text;
out.finish = c.choices[0].finish_reason;
out.usage = c.usage;
let s = '';
const stream = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time',
	max_tokens: 40, temperature: 0, stream: true });
let events = 0;
for await (const ev of stream) { s += ev.choices[0]?.text ?? ''; events++; }
out.streamed = s;
out.events = events;
const models = await client.models.list();
out.models = models.data.map((m) => m.id);
try {
	await client.chat.completions.create({ model: 'stories260K',
		messages: [{ role: 'user', content: 'hi' }] });
	out.chat = 'no error';
} catch (e) {
	out.chat = `${e.status} ${e.error?.type} ${e.error?.param}`;
}
try {
	await client.completions.create({ model: 'stories260K', prompt: 'x', max_tokens: 0 });
} catch (e) {
	out.bad = `${e.status} ${e.error?.param}`;
}
// replies held to a JSON Schema, greedy and sampled (the mask's two paths)
const schema = { type: 'object', properties: { name: { type: 'string', maxLength: 12 },
	age: { type: 'integer' }, mood: { enum: ['happy', 'sad'] } },
	required: ['name', 'age', 'mood'], additionalProperties: false };
out.schema = [];
for (const temperature of [0, 1]) {
	const r = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time',
		max_tokens: 400, temperature, seed: 7,
		response_format: { type: 'json_schema', json_schema: { name: 'kid', schema } } });
	out.schema.push([r.choices[0].text, r.choices[0].finish_reason]);
}
console.log(JSON.stringify(out));
EOF
	"$MH" generate -p "Once upon a time" --temp 0 -n 40 -t 1 2>/dev/null |
		sed '1s/^Once upon a time//' >"$T/gen"
	if timeout 120 node "$T/node/client.mjs" "http://127.0.0.1:$PORT/v1" >"$T/node.out" 2>"$T/node.err"; then
		node -e '
const fs = require("fs");
const o = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const want = fs.readFileSync(process.argv[2], "utf8").replace(/\n$/, "");
const fails = [];
if (o.completion !== want) fails.push(`completion ${JSON.stringify(o.completion)} != ${JSON.stringify(want)}`);
if (o.finish !== "length") fails.push(`finish ${o.finish}`);
if (o.usage.completion_tokens !== 40 || o.usage.prompt_tokens !== 5) fails.push(`usage ${JSON.stringify(o.usage)}`);
if (o.streamed !== want) fails.push(`streamed ${JSON.stringify(o.streamed)}`);
if (o.events < 10) fails.push(`only ${o.events} events`);
if (o.models.join() !== "stories260K") fails.push(`models ${o.models}`);
if (o.chat !== "400 invalid_request_error messages") fails.push(`chat error ${o.chat}`);
if (o.bad !== "400 max_tokens") fails.push(`max_tokens 0: ${o.bad}`);
for (const [text, finish] of o.schema) {
	let j = null;
	try { j = JSON.parse(text); } catch (e) { fails.push(`not JSON: ${text}`); continue; }
	if (finish !== "stop" || Object.keys(j).join() !== "name,age,mood" || typeof j.name !== "string" ||
	    [...j.name].length > 12 || !Number.isInteger(j.age) || !["happy", "sad"].includes(j.mood))
		fails.push(`not held to the schema: ${text} (${finish})`);
}
if (fails.length) { console.log(fails.join("; ")); process.exit(1); }
' "$T/node.out" "$T/gen" >"$T/node.check" 2>&1 &&
			ok "OpenAI Node client: completion, streamed completion, models, error objects, json_schema" ||
			bad "OpenAI Node client: $(cat "$T/node.check")"
	else
		bad "OpenAI Node client failed: $(tail -n 5 "$T/node.err")"
	fi
	kill "$SPID"
	wait "$SPID"
	# tool calls through the client, whole and streamed (its stream helper
	# adds up the deltas; streamed, the arguments are the model's text, so
	# they are compared as JSON), with the parrot test plugin (see serve.sh)
	PARROT="$B/tests/plugins/.libs/parrot.so" QTOK="$B/tests/data/tokenizers/qwen3/tokenizer.json"
	if [ ! -f "$PARROT" ] || [ ! -f "$QTOK" ]; then
		skipped "the Node client's tool calls: the parrot plugin or the Qwen tokenizer is not built"
	else
		mkdir -p "$T/parrot" "$T/pp"
		cp "$SRC"/tests/data/models/parrot/* "$QTOK" "$T/parrot/" && cp "$PARROT" "$T/pp/"
		start parrot -m "$T/parrot" --plugin-dir "$T/pp" -t 1 || exit 1
		cat >"$T/node/tools.mjs" <<'EOF'
import OpenAI from 'openai';
const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'k3y', maxRetries: 0, timeout: 60000 });
const tools = [{ type: 'function', function: { name: 'get_weather',
	parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
const messages = [{ role: 'user',
	content: '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>' }];
const r = await client.chat.completions.create({ model: 'parrot', messages, tools });
const s = await client.beta.chat.completions.stream({ model: 'parrot', messages, tools }).finalChatCompletion();
const f = await client.chat.completions.create({ model: 'parrot', messages, tools, temperature: 0,
	tool_choice: { type: 'function', function: { name: 'get_weather' } } });
const back = await client.chat.completions.create({ model: 'parrot', tools, messages: [...messages,
	r.choices[0].message, { role: 'tool', tool_call_id: r.choices[0].message.tool_calls[0].id, content: '12 C' }] });
const call = (c) => c.choices[0].finish_reason + ' ' + c.choices[0].message.content + ' ' +
	c.choices[0].message.tool_calls.map((t) => `${t.type} ${t.function.name} ${JSON.stringify(JSON.parse(t.function.arguments))}`).join();
console.log(JSON.stringify({ call: call(r), streamed: call(s), forced: call(f), id: !!r.choices[0].message.tool_calls[0].id,
	back: back.choices[0].message.content }));
EOF
		if timeout 120 node "$T/node/tools.mjs" "http://127.0.0.1:$PORT/v1" >"$T/tools.out" 2>"$T/tools.err" &&
			[ "$(cat "$T/tools.out")" = '{"call":"tool_calls null function get_weather {\"city\":\"Zürich\"}","streamed":"tool_calls null function get_weather {\"city\":\"Zürich\"}","forced":"tool_calls null function get_weather {\"city\":\"Zürich\"}","id":true,"back":"<tool_response>\n12 C\n</tool_response>"}' ]; then
			ok "OpenAI Node client: a tool call, whole, streamed and forced, and its result sent back"
		else
			bad "OpenAI Node client's tool calls: $(cat "$T/tools.out") $(tail -n 5 "$T/tools.err")"
		fi
		kill "$SPID"
		wait "$SPID"
	fi
fi

# === 2. 32 streaming clients, a plugin swapped under them ===============================
LL="$B/plugins/llama/.libs/llama.so"
if [ ! -f "$LL" ]; then
	bad "no llama plugin at $LL"
else
	P="$T/plugins"
	mkdir -p "$P"
	cp "$LL" "$P/llama.so"
	start load --plugin-dir "$P" --parallel 8 --queue 64 -t 2 || exit 1
	n=32
	i=0
	while [ "$i" -lt "$n" ]; do # the prompts, and each one's output alone
		words="Once upon a time|The little dog|Lily and Tom|One day, a bird|The sun was|A big red ball|Mom said|In the park"
		p="$(echo "$words" | cut -d'|' -f$((i % 8 + 1))) $i"
		echo "{\"prompt\":\"$p\",\"max_tokens\":$((200 + 3 * i)),\"temperature\":0,\"ignore_eos\":true}" \
			>"$T/req$i"
		curl -s -m 60 --data-binary @"$T/req$i" "http://127.0.0.1:$PORT/v1/completions" >"$T/solo$i"
		i=$((i + 1))
	done
	t0=$(date +%s%N)
	# half the streams go first; once the first of them streams, the plugin is reinstalled as
	# install(1) does and reloaded, and the other half goes on the new one. The load is too
	# quick for a timed swap to fall inside it on a fast machine.
	i=0
	while [ "$i" -lt "$n" ]; do
		if [ "$i" -eq $((n / 2)) ]; then
			j=0
			while ! grep -q '^data: {' "$T/out0" 2>/dev/null && [ "$j" -lt 300 ]; do
				sleep 0.05
				j=$((j + 1))
			done
			cp "$LL" "$P/.llama.so.new" && mv "$P/.llama.so.new" "$P/llama.so"
			curl -s -m 60 -X POST "http://127.0.0.1:$PORT/admin/reload" >"$T/reload"
		fi
		sed 's/}$/,"stream":true}/' "$T/req$i" >"$T/sreq$i"
		curl -s -N -m 300 -o "$T/out$i" -w '%{http_code}' --data-binary @"$T/sreq$i" \
			"http://127.0.0.1:$PORT/v1/completions" >"$T/code$i" &
		eval "c$i=\$!"
		i=$((i + 1))
	done
	i=0
	while [ "$i" -lt "$n" ]; do
		eval "wait \$c$i"
		i=$((i + 1))
	done
	t1=$(date +%s%N)
	failed=0 same=0 r0=0 r1=0 tokens=0
	i=0
	while [ "$i" -lt "$n" ]; do
		if [ "$(cat "$T/code$i")" != 200 ] || ! grep -q '^data: \[DONE\]' "$T/out$i" ||
			grep -q '"error"' "$T/out$i"; then
			failed=$((failed + 1))
			echo "request $i: HTTP $(cat "$T/code$i"): $(tail -c 300 "$T/out$i")"
		elif [ "$(text "$T/out$i")" = "$(text "$T/solo$i")" ] && [ -n "$(text "$T/solo$i")" ]; then
			same=$((same + 1))
		else
			echo "request $i differs from its solo run"
		fi
		grep -q '"system_fingerprint":"modelhost-llama-1.0.0-r0"' "$T/out$i" && r0=$((r0 + 1))
		grep -q '"system_fingerprint":"modelhost-llama-1.0.0-r1"' "$T/out$i" && r1=$((r1 + 1))
		tokens=$((tokens + 200 + 3 * i))
		i=$((i + 1))
	done
	ms=$(((t1 - t0) / 1000000))
	echo "load: $n streams, $tokens tokens in $ms ms; $r0 ran on the plugin before the swap, $r1 after"
	[ "$failed" -eq 0 ] && ok "32 concurrent streams across a plugin swap: none failed" ||
		bad "$failed of $n streams failed"
	[ "$same" -eq "$n" ] && ok "every greedy stream equals its solo run" ||
		bad "only $same of $n streams equal their solo runs"
	if grep -q '"status":"ok"' "$T/reload" && [ "$r0" -gt 0 ] && [ "$r1" -gt 0 ]; then
		ok "the swap came midway: requests ran on both the old and the new code"
	else
		bad "the swap: $(cat "$T/reload"); before $r0, after $r1"
	fi
	kill "$SPID"
	wait "$SPID" || bad "the load server's exit status"
fi

# === 3. two replicas behind nginx, one killed =============================================
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ ! -x "$NGINX" ]; then
	skipped "nginx: not installed (apt-get install nginx)"
else
	start r1 -t 1 || exit 1
	p1=$PORT pid1=$SPID
	start r2 -t 1 || exit 1
	p2=$PORT pid2=$SPID
	NP=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + $$ % 20000)))
	mkdir -p "$T/nginx/conf.d"
	sed -e "s/127\.0\.0\.1:8081/127.0.0.1:$p1/" -e "s/127\.0\.0\.1:8082/127.0.0.1:$p2/" \
		-e "s/listen 127\.0\.0\.1:8080/listen 127.0.0.1:$NP/" \
		"$SRC/examples/nginx/modelhost.conf" >"$T/nginx/conf.d/modelhost.conf"
	cat >"$T/nginx/nginx.conf" <<EOF
$( [ "$(id -u)" = 0 ] && echo "user root;" )
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx.log warn;
events { worker_connections 256; }
http {
	access_log off;
	client_body_temp_path $T/nginx/body;
	proxy_temp_path $T/nginx/proxy;
	fastcgi_temp_path $T/nginx/fastcgi;
	uwsgi_temp_path $T/nginx/uwsgi;
	scgi_temp_path $T/nginx/scgi;
	include $T/nginx/conf.d/modelhost.conf;
}
EOF
	"$NGINX" -p "$T/nginx" -c "$T/nginx/nginx.conf" -g 'daemon off;' 2>>"$T/nginx.log" &
	npid=$!
	PIDS="$PIDS $npid"
	j=0
	until [ "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$NP/health")" = 200 ] ||
		[ "$j" -gt 100 ]; do
		sleep 0.1
		j=$((j + 1))
	done
	good=0 total=0
	for phase in before after; do
		if [ "$phase" = after ]; then
			kill -9 "$pid1"
			wait "$pid1" 2>/dev/null
		fi
		k=0
		while [ "$k" -lt 10 ]; do
			total=$((total + 1))
			code=$(curl -s -m 60 -o "$T/ngx" -w '%{http_code}' \
				-d '{"prompt":"Once upon a time","max_tokens":20,"temperature":0}' \
				"http://127.0.0.1:$NP/v1/completions")
			[ "$code" = 200 ] && grep -q '"finish_reason":"length"' "$T/ngx" && good=$((good + 1))
			k=$((k + 1))
		done
	done
	code=$(curl -s -m 60 -o "$T/ngx" -w '%{http_code}' "http://127.0.0.1:$NP/health")
	[ "$good" -eq "$total" ] && [ "$code" = 200 ] &&
		ok "nginx, two replicas, one killed: $good of $total requests succeeded, /health 200" ||
		bad "nginx: $good of $total requests succeeded, /health $code"
	# streaming passes through unbuffered
	curl -s -N -m 60 -d '{"prompt":"Once upon a time","max_tokens":20,"temperature":0,"stream":true}' \
		"http://127.0.0.1:$NP/v1/completions" >"$T/ngxs"
	[ "$(grep -c '^data: {' "$T/ngxs")" -ge 10 ] && grep -q '^data: \[DONE\]' "$T/ngxs" &&
		ok "nginx passes the event stream through" || bad "nginx stream: $(head -c 300 "$T/ngxs")"
	kill "$npid" "$pid2" 2>/dev/null
	wait "$npid" "$pid2" 2>/dev/null
fi

echo "integration: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
