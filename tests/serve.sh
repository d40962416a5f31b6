#!/bin/sh
# SPDX-License-Identifier: MIT
# serve.sh - `modelhost serve` end to end with curl, on 127.0.0.1 and ports
# the kernel picks: every endpoint, every class of error, the API key,
# greedy output against `generate --temp 0`, streaming and stop strings,
# tool calls (the parrot test plugin), and, with the slow toy test plugin (toy_delay_ms), a full queue, a client
# that hangs up, plugin reloads under a running request and SIGTERM.
# Every wait is bounded, and every server started is killed on exit.
set -u
B=${MODELHOST_BUILDDIR:-.}
MH="$B/modelhost"
if ! command -v curl >/dev/null 2>&1; then
	echo "skipping: curl not found (apt-get install curl)"
	exit 77
fi
. "$(dirname "$0")/lib.sh"
servers_setup

# req NAME METHOD PATH [BODY] [CURL ARGS...]: status in $CODE, body in $T/body,
# headers in $T/head.  Bounded by 60 s.
req() {
	rname=$1 method=$2 path=$3
	shift 3
	body=
	if [ $# -gt 0 ]; then
		body=$1
		shift
	fi
	if [ -n "$body" ]; then
		CODE=$(curl -s -m 60 -X "$method" -D "$T/head" -o "$T/body" -w '%{http_code}' \
			-H 'Content-Type: application/json' --data-binary "$body" "$@" \
			"http://127.0.0.1:$PORT$path")
	else
		CODE=$(curl -s -m 60 -X "$method" -D "$T/head" -o "$T/body" -w '%{http_code}' \
			"$@" "http://127.0.0.1:$PORT$path")
	fi
}

# expect NAME CODE PATTERN...: the last req gave CODE and a body with every PATTERN (grep -F)
expect() {
	ename=$1 ecode=$2
	shift 2
	if [ "$CODE" != "$ecode" ]; then
		bad "$ename: HTTP $CODE, expected $ecode: $(head -c 300 "$T/body")"
		return 1
	fi
	for p in "$@"; do
		if ! grep -qF -- "$p" "$T/body"; then
			bad "$ename: the body lacks '$p': $(head -c 400 "$T/body")"
			return 1
		fi
	done
	ok "$ename"
}

# An OpenAI error object with this status, type and param.
expect_error() {
	ename=$1 ecode=$2 type=$3 param=$4
	expect "$ename" "$ecode" "\"error\":{\"message\":\"" "\"type\":\"$type\"" "\"param\":$param"
}

# JSON string escaping of stdin, for comparing texts with bodies.
json_escape() {
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }'
}

KEY='s3cret-key-for-tests'
printf '%s\n' "$KEY" >"$T/keyfile"
AUTH="Authorization: Bearer $KEY"

# === the bundled model: the API, errors, the key ======================================
start main --parallel 2 --api-key-file "$T/keyfile" --body-limit 65536 -t 1 || exit 1

req "health" GET /health
expect "health answers without the key" 200 '"status":"ok"'
req "no key" GET /v1/models
expect_error "a missing key is refused" 401 authentication_error null
req "wrong key" GET /v1/models '' -H "Authorization: Bearer s3cret-key-for-test"
expect_error "a wrong key is refused" 401 authentication_error null
req "models" GET /v1/models '' -H "$AUTH"
expect "/v1/models lists the model by its directory's name" 200 '"object":"list"' \
	'"id":"stories260K"' '"object":"model"'

# greedy output equals generate --temp 0
"$MH" generate -p "Once upon a time" --temp 0 -n 40 -t 1 >"$T/gen" 2>/dev/null
want=$(sed '1s/^Once upon a time//' "$T/gen" | json_escape)
req "completion" POST /v1/completions \
	'{"model":"stories260K","prompt":"Once upon a time","max_tokens":40,"temperature":0}' -H "$AUTH"
expect "greedy completion equals generate --temp 0" 200 '"object":"text_completion"' \
	"\"text\":\"$want\"" '"finish_reason":"length"' \
	'"usage":{"prompt_tokens":5,"completion_tokens":40,"total_tokens":45}'
req "id out of range" POST /v1/completions \
	'{"prompt":[1,403,407,261,378,600],"max_tokens":40,"temperature":0}' -H "$AUTH"
expect_error "a token id outside the vocabulary" 400 invalid_request_error '"prompt"'
ids=$(curl -s -m 10 -H "$AUTH" -d '{"content":"Once upon a time"}' "http://127.0.0.1:$PORT/tokenize" |
	sed -n 's/.*"tokens":\(\[[0-9,]*\]\).*/\1/p')
[ -n "$ids" ] && ok "tokenize: $ids" || bad "tokenize gave no ids"
req "completion from ids" POST /v1/completions \
	"{\"prompt\":$ids,\"max_tokens\":40,\"temperature\":0}" -H "$AUTH"
expect "a prompt of token ids gives the same text" 200 "\"text\":\"$want\""
req "detokenize" POST /detokenize "{\"tokens\":$ids}" -H "$AUTH"
expect "detokenize" 200 '"content":"<s> Once upon a time"'

# streaming: the events' texts join into the same text, then [DONE]
curl -s -N -m 60 -H "$AUTH" -d '{"prompt":"Once upon a time","max_tokens":40,"temperature":0,"stream":true,"stream_options":{"include_usage":true}}' \
	"http://127.0.0.1:$PORT/v1/completions" >"$T/sse"
joined=$(grep '^data: {' "$T/sse" | sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' | tr -d '\n')
if [ "$joined" = "$want" ] && [ "$(tail -n 2 "$T/sse" | head -n 1)" = "data: [DONE]" ] &&
	grep -q '"finish_reason":"length"' "$T/sse" &&
	grep -q '"choices":\[\],"usage":{"prompt_tokens":5,"completion_tokens":40' "$T/sse" &&
	[ "$(grep -c '^data: ' "$T/sse")" -gt 5 ]; then
	ok "streamed text_completion events join into the greedy text, usage, [DONE]"
else
	bad "streaming: '$joined' vs '$want': $(head -c 600 "$T/sse")"
fi

# a held reply is the same text as generate --json-schema --temp 0
printf '%s' '{"type":"object","properties":{"mood":{"enum":["happy","sad"]},"age":{"type":"integer"}},"required":["mood","age"]}' >"$T/kid.json"
"$MH" generate -p "Once upon a time" --temp 0 -n 300 --json-schema "$T/kid.json" -t 1 >"$T/gen" 2>/dev/null
held=$(sed '1s/^Once upon a time//' "$T/gen" | json_escape)
req "held" POST /v1/completions "{\"prompt\":\"Once upon a time\",\"max_tokens\":300,\"temperature\":0,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"kid\",\"schema\":$(cat "$T/kid.json")}}}" -H "$AUTH"
expect "a held completion equals generate --json-schema --temp 0" 200 "\"text\":\"$held\"" \
	'"finish_reason":"stop"' '\"mood\"'

# a stop string ends the text before it and is never streamed in part
req "stop" POST /v1/completions \
	'{"prompt":"Once upon a time","max_tokens":40,"temperature":0,"stop":["Lily"]}' -H "$AUTH"
expect "a stop string ends the text" 200 \
	'"text":", there was a little girl named ","logprobs":null,"finish_reason":"stop"'
curl -s -N -m 60 -H "$AUTH" -d '{"prompt":"Once upon a time","max_tokens":40,"temperature":0,"stream":true,"stop":"Lily. She"}' \
	"http://127.0.0.1:$PORT/v1/completions" >"$T/sse"
joined=$(grep '^data: {' "$T/sse" | sed -n 's/.*"text":"\(\([^"\\]\|\\.\)*\)".*/\1/p' | tr -d '\n')
if [ "$joined" = ", there was a little girl named " ] && ! grep -q '"text":"L' "$T/sse" &&
	grep -q '"finish_reason":"stop"' "$T/sse"; then
	ok "a streamed stop string is never sent in part"
else
	bad "streamed stop: '$joined': $(cat "$T/sse")"
fi

# sampling with a seed is repeatable
s1=$(curl -s -m 60 -H "$AUTH" -d '{"prompt":"Once","max_tokens":30,"temperature":1,"seed":7}' \
	"http://127.0.0.1:$PORT/v1/completions" | sed 's/"id":"[^"]*","object":"text_completion","created":[0-9]*//')
s2=$(curl -s -m 60 -H "$AUTH" -d '{"prompt":"Once","max_tokens":30,"temperature":1,"seed":7}' \
	"http://127.0.0.1:$PORT/v1/completions" | sed 's/"id":"[^"]*","object":"text_completion","created":[0-9]*//')
case "$s1" in
*'"finish_reason":"length"'*) [ "$s1" = "$s2" ] && ok "the same seed gives the same text" ||
	bad "seeded sampling: $s1 / $s2" ;;
*) bad "seeded sampling: $s1" ;;
esac

# bad input: 400s with the parameter named, 404s, 405, 413
req "malformed" POST /v1/completions '{"prompt": "x",' -H "$AUTH"
expect_error "malformed JSON" 400 invalid_request_error null
req "not an object" POST /v1/completions '[1,2]' -H "$AUTH"
expect_error "a body that is not an object" 400 invalid_request_error null
req "wrong type" POST /v1/completions '{"prompt":"x","temperature":"hot"}' -H "$AUTH"
expect_error "a wrong type names the parameter" 400 invalid_request_error '"temperature"'
req "max_tokens 0" POST /v1/completions '{"prompt":"x","max_tokens":0}' -H "$AUTH"
expect_error "max_tokens 0" 400 invalid_request_error '"max_tokens"'
req "max_tokens -3" POST /v1/completions '{"prompt":"x","max_tokens":-3}' -H "$AUTH"
expect_error "max_tokens below 0" 400 invalid_request_error '"max_tokens"'
req "n 2" POST /v1/completions '{"prompt":"x","n":2}' -H "$AUTH"
expect_error "n other than 1" 400 invalid_request_error '"n"'
req "stop type" POST /v1/completions '{"prompt":"x","stop":[1]}' -H "$AUTH"
expect_error "a stop that is not a string" 400 invalid_request_error '"stop"'
long=$(awk 'BEGIN { printf "[1"; for (i = 0; i < 600; i++) printf ",400"; printf "]" }')
req "too long" POST /v1/completions "{\"prompt\":$long}" -H "$AUTH"
expect "a prompt longer than the context" 400 'more than the context length of 512' '"param":"prompt"'
printf '{"prompt":"caf\351"}' >"$T/latin1"
CODE=$(curl -s -m 10 -o "$T/body" -w '%{http_code}' -H "$AUTH" --data-binary @"$T/latin1" \
	"http://127.0.0.1:$PORT/v1/completions")
expect_error "invalid UTF-8" 400 invalid_request_error null
req "unknown model" POST /v1/completions '{"model":"gpt-4","prompt":"x"}' -H "$AUTH"
expect "an unknown model" 404 '"code":"model_not_found"' '"param":"model"'
req "unknown path" GET /v1/nothing '' -H "$AUTH"
expect_error "an unknown path" 404 invalid_request_error null
req "wrong method" GET /v1/completions '' -H "$AUTH"
expect_error "a wrong method" 405 invalid_request_error null
awk 'BEGIN { printf "{\"prompt\":\""; for (i = 0; i < 70000; i++) printf "a"; printf "\"}" }' >"$T/big"
CODE=$(curl -s -m 30 -o "$T/body" -w '%{http_code}' -H "$AUTH" --data-binary @"$T/big" \
	"http://127.0.0.1:$PORT/v1/completions")
expect "a body over --body-limit" 413 'larger than the limit of 65536 bytes'
req "chat without template" POST /v1/chat/completions \
	'{"messages":[{"role":"user","content":"hi"}]}' -H "$AUTH"
expect "chat with a model that has no template" 400 'has no chat template' '"param":"messages"'
req "health after errors" GET /health
expect "still serving after every error" 200 '"status":"ok"'
req "metrics" GET /metrics '' -H "$AUTH"
expect "metrics in Prometheus text format" 200 \
	'modelhost_requests_total{path="/v1/completions",status="200"}' \
	'modelhost_requests_total{path="/v1/completions",status="400"}' \
	'modelhost_requests_total{path="other",status="404"}' \
	'# TYPE modelhost_time_to_first_token_seconds histogram' \
	'modelhost_token_latency_seconds_bucket{le="+Inf"}' \
	'modelhost_plugin_info{name="llama",version="1.0.0"} 1' 'modelhost_busy_sequences 0'
if grep -qF "$KEY" "$T/body" "$T/main.log"; then
	bad "the API key shows in the log or the metrics"
else
	ok "the API key is in neither the log nor the metrics"
fi
kill -TERM "$SPID"
wait "$SPID"
st=$?
[ "$st" -eq 0 ] && ok "SIGTERM on an idle server: exit 0" || bad "SIGTERM: exit $st: $(cat "$T/main.log")"

# === chat completions through a chat template (--chat-template) ======================
# this template renders the bundled model's BOS and the messages' text, so a
# chat reply is the completion of the same text
printf '%s' '{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}' >"$T/tpl.jinja"
start chat --chat-template "$T/tpl.jinja" -t 1 || exit 1
req "chat" POST /v1/chat/completions \
	'{"model":"stories260K","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0}'
expect "a chat completion through the template is the greedy text" 200 '"object":"chat.completion"' \
	"\"message\":{\"role\":\"assistant\",\"content\":\"$want\"}" '"finish_reason":"length"' \
	'"prompt_tokens":5,"completion_tokens":40'
req "chat parts" POST /v1/chat/completions \
	'{"messages":[{"role":"user","content":[{"type":"text","text":"Once upon "},{"type":"text","text":"a time"}]}],"max_tokens":40,"temperature":0}'
expect "content as a list of text parts" 200 "\"content\":\"$want\""
curl -s -N -m 60 -d '{"messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":40,"temperature":0,"stream":true}' \
	"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
joined=$(grep '^data: {' "$T/sse" | sed -n 's/.*"delta":{"content":"\(\([^"\\]\|\\.\)*\)"}.*/\1/p' | tr -d '\n')
if [ "$joined" = "$want" ] && grep -q '"object":"chat.completion.chunk"' "$T/sse" &&
	grep -q '"delta":{"role":"assistant","content":""}' "$T/sse" &&
	grep -q '"delta":{},"logprobs":null,"finish_reason":"length"' "$T/sse" &&
	[ "$(tail -n 2 "$T/sse" | head -n 1)" = "data: [DONE]" ]; then
	ok "streamed chat.completion.chunk deltas join into the greedy text"
else
	bad "chat stream: '$joined': $(head -c 600 "$T/sse")"
fi
req "chat no messages" POST /v1/chat/completions '{"messages":[]}'
expect_error "chat without messages" 400 invalid_request_error '"messages"'
req "chat bad message" POST /v1/chat/completions '{"messages":[{"content":"x"}]}'
expect_error "a message without a role" 400 invalid_request_error '"messages"'
kill -TERM "$SPID"
wait "$SPID"

# === tool calls, end to end ==========================================================
# The parrot test plugin (tests/plugins/parrot.c) answers with the content of
# the conversation's previous turn, token for token: a user message makes it
# say exactly that, through the real Qwen tokenizer (where <tool_call> is one
# token, as a Qwen2.5 model writes it) and Qwen2.5's chat template
# (tests/data/models/parrot).
data() {
	(IFS=:
	for r in ${MODELHOST_TESTDATA:-tests/data:data}; do
		[ -n "$r" ] && [ -e "$r/$1" ] && { echo "$r/$1"; exit 0; }
	done)
}
PARROT="$B/tests/plugins/.libs/parrot.so"
PCFG=$(data models/parrot/config.json)
QTOK=$(data tokenizers/qwen3/tokenizer.json)
if [ ! -f "$PARROT" ] || [ -z "$PCFG" ] || [ -z "$QTOK" ]; then
	echo "skip: tool calls: the parrot plugin, tests/data/models/parrot or the Qwen tokenizer is missing (make check builds them)"
else
	mkdir -p "$T/parrot" "$T/pp"
	cp "${PCFG%/config.json}"/* "$T/parrot/" && cp "$QTOK" "$T/parrot/" && cp "$PARROT" "$T/pp/"
	start parrot -m "$T/parrot" --plugin-dir "$T/pp" --parallel 2 -t 1 || exit 1
	TOOLS='"tools":[{"type":"function","function":{"name":"get_weather","description":"The weather in a city","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}}}]'
	# chat USER-CONTENT [MORE]: a chat body with one user message and the tools
	chat() { printf '{"messages":[{"role":"user","content":"%s"}],%s%s}' "$1" "$TOOLS" "${2:-}"; }
	CALL='<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"days\": 2}}\n</tool_call>'
	ARGS='"arguments":"{\"city\":\"Zürich\",\"days\":2}"'
	RAW='{\"city\": \"Zürich\", \"days\": 2}' # the arguments as the model writes them
	# args_joined FILE: the arguments fragments of call 0 in a stream, joined
	args_joined() {
		sed -n 's/.*"tool_calls":\[{"index":0,"function":{"arguments":"\(\([^"\\]\|\\.\)*\)"}}\].*/\1/p' "$1" | tr -d '\n'
	}
	# calls_end FILE: a stream of calls only, ended as OpenAI ends one
	calls_end() {
		grep -qF '"delta":{},"logprobs":null,"finish_reason":"tool_calls"' "$1" &&
			! grep -q '"delta":{"content":' "$1" &&
			[ "$(tail -n 2 "$1" | head -n 1)" = "data: [DONE]" ]
	}

	req "tool call" POST /v1/chat/completions "$(chat "$CALL")"
	expect "a reply in <tool_call> form comes back as tool_calls" 200 \
		'"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_' \
		"\"type\":\"function\",\"function\":{\"name\":\"get_weather\",$ARGS}}]}" \
		'"finish_reason":"tool_calls"'
	curl -s -N -m 60 -d "$(chat "$CALL" ',"stream":true')" \
		"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
	# as they are written, or whole when the reply is done before the first
	# look: the model's text of the arguments, or the normalized one
	joined=$(args_joined "$T/sse")
	if grep -qF '"delta":{"tool_calls":[{"index":0,"id":"call_' "$T/sse" &&
		grep -qF '"type":"function","function":{"name":"get_weather","arguments":""}}]}' "$T/sse" &&
		{ [ "$joined" = "$RAW" ] || [ "\"arguments\":\"$joined\"" = "$ARGS" ]; } &&
		calls_end "$T/sse"; then
		ok "a streamed tool call: OpenAI's deltas (id and name, then arguments), finish tool_calls, [DONE]"
	else
		bad "streamed tool call: $(cat "$T/sse")"
	fi
	req "text and two calls" POST /v1/chat/completions \
		"$(chat "Let me look.\\n$CALL\\n<tool_call>\\n{\\\"name\\\": \\\"get_time\\\", \\\"arguments\\\": {}}\\n</tool_call>")"
	expect "text before two calls: content, then both calls in order" 200 \
		'"content":"Let me look.\n","tool_calls":[{"id":"call_' \
		"\"name\":\"get_weather\",$ARGS}},{\"id\":\"call_" \
		'"name":"get_time","arguments":"{}"}}]' '"finish_reason":"tool_calls"'
	# a tool call that does not parse stays text, as llama.cpp and vLLM return
	# it (a JSON string in a body is the same JSON string in the reply)
	BROKEN='<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}\n</tool_call>'
	req "broken call" POST /v1/chat/completions "$(chat "$BROKEN")"
	expect "malformed tool-call JSON comes back as plain content" 200 \
		"\"message\":{\"role\":\"assistant\",\"content\":\"$BROKEN\"}" \
		'"finish_reason":"stop"'
	curl -s -N -m 60 -d "$(chat '<tool_call>\n{\"name\": \"get_weather\"} and more\n</tool_call>' ',"stream":true')" \
		"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
	joined=$(grep '^data: {' "$T/sse" | sed -n 's/.*"delta":{"content":"\(\([^"\\]\|\\.\)*\)"}.*/\1/p' | tr -d '\n')
	if [ "$joined" = '<tool_call>\n{\"name\": \"get_weather\"} and more\n</tool_call>' ] &&
		! grep -q '"tool_calls"' "$T/sse" && grep -q '"finish_reason":"stop"' "$T/sse"; then
		ok "a streamed tool call with text after its JSON comes back as content"
	else
		bad "streamed malformed call: '$joined': $(cat "$T/sse")"
	fi
	req "plain reply" POST /v1/chat/completions "$(chat 'Hello there')"
	expect "with tools, a plain reply stays a plain reply" 200 \
		'"message":{"role":"assistant","content":"Hello there"}' '"finish_reason":"stop"'
	# what the template made of the tools: the parrot repeats the system turn
	req "tools rendered" POST /v1/chat/completions \
		"{\"messages\":[{\"role\":\"system\",\"content\":\"You forecast.\"}],$TOOLS}"
	expect "the tools are rendered into the prompt by the template" 200 \
		'"content":"You forecast.\n\n# Tools\n' \
		'<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"The weather in a city\"'
	# tool_choice and parallel_tool_calls
	req "tool_choice none, rendering" POST /v1/chat/completions \
		"{\"messages\":[{\"role\":\"system\",\"content\":\"You forecast.\"}],$TOOLS,\"tool_choice\":\"none\"}"
	expect "tool_choice none: the tools are not rendered" 200 \
		'"message":{"role":"assistant","content":"You forecast."}' '"finish_reason":"stop"'
	req "tool_choice none, a call" POST /v1/chat/completions "$(chat "$CALL" ',"tool_choice":"none"')"
	expect "tool_choice none: a reply in <tool_call> form stays content" 200 \
		'"content":"<tool_call>\n{\"name\": \"get_weather\"' '"finish_reason":"stop"'
	req "tool_choice auto" POST /v1/chat/completions "$(chat "$CALL" ',"tool_choice":"auto"')"
	expect "tool_choice auto: as without it" 200 "\"name\":\"get_weather\",$ARGS}}]" \
		'"finish_reason":"tool_calls"'
	# tool_choice "required" and a named function hold the reply to calls
	# (host/text/constrain.h): greedy, the parrot's copy is taken where it
	# fits the form and the best token that fits where it does not
	TOOLS2='"tools":[{"type":"function","function":{"name":"get_weather"}},{"type":"function","function":{"name":"get_time"}}]'
	chat2() { printf '{"messages":[{"role":"user","content":"%s"}],%s,"temperature":0%s}' "$1" "$TOOLS2" "${2:-}"; }
	TIME='<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>'
	TARGS='"name":"get_time","arguments":"{\"tz\":\"UTC\"}"}}'
	req "required, two calls" POST /v1/chat/completions "$(chat2 "$TIME\\n$TIME" ',"tool_choice":"required"')"
	expect "tool_choice required: the calls the model makes" 200 \
		"$TARGS,{\"id\":\"call_" "$TARGS]" '"finish_reason":"tool_calls"'
	req "named, two calls" POST /v1/chat/completions \
		"$(chat2 "$TIME\\n$TIME" ',"tool_choice":{"type":"function","function":{"name":"get_time"}}')"
	if expect "tool_choice naming a function: one call, and the reply ends with it" 200 \
		"\"tool_calls\":[{\"id\":\"call_" "$TARGS]" '"finish_reason":"tool_calls"' &&
		grep -qF '"call_' "$T/body" && [ "$(grep -o '"call_' "$T/body" | wc -l)" -ne 1 ]; then
		bad "a named function: more than one call: $(cat "$T/body")"
	fi
	req "required, text" POST /v1/chat/completions \
		"$(chat2 'I will not call anything.' ',"tool_choice":"required","max_tokens":60')"
	# (the parrot's ties go to the lowest id: one byte a token, "t" before "w")
	expect "tool_choice required: a reply that would be text is a call all the same" 200 \
		'"content":"<tool_call>\n{\"name\": \"get_time\", \"arguments\": {' \
		'"finish_reason":"length"'
	req "named, text" POST /v1/chat/completions \
		"$(chat2 'No.' ',"tool_choice":{"type":"function","function":{"name":"get_weather"}},"max_tokens":60')"
	expect "a named function: its name, whatever the model would say" 200 \
		'"content":"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {' \
		'"finish_reason":"length"'
	curl -s -N -m 60 -d "$(chat2 "$TIME" ',"tool_choice":"required","stream":true')" \
		"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
	if grep -qF '"type":"function","function":{"name":"get_time","arguments":""}}]}' "$T/sse" &&
		calls_end "$T/sse"; then
		ok "tool_choice required, streamed: the call's deltas, finish tool_calls"
	else
		bad "required, streamed: $(cat "$T/sse")"
	fi
	req "named unknown" POST /v1/chat/completions \
		"$(chat2 x ',"tool_choice":{"type":"function","function":{"name":"get_wind"}}')"
	expect "tool_choice naming a function not in tools: 400" 400 \
		"names the function 'get_wind', which is not one of 'tools'" '"param":"tool_choice"'
	req "required without tools" POST /v1/chat/completions \
		'{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}'
	expect "tool_choice required without tools: 400" 400 "but there are no 'tools'" \
		'"param":"tool_choice"'
	req "required, a bad name" POST /v1/chat/completions \
		'{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"get weather"}}],"tool_choice":"required"}'
	expect "a forced call to a function whose name is not one: 400" 400 \
		"whose 'name' is 1 to 64 letters" '"param":"tools"'
	# response_format json_object: one JSON object, and the reply ends there
	jchat() { printf '{"messages":[{"role":"user","content":"%s"}],"temperature":0,"response_format":{"type":"json_object"}%s}' "$1" "${2:-}"; }
	req "json" POST /v1/chat/completions "$(jchat '{\"a\": [1, 2.5], \"b\": \"x\"} and then some')"
	expect "response_format json_object: the object, and nothing after it" 200 \
		'"content":"{\"a\": [1, 2.5], \"b\": \"x\"}"}' '"finish_reason":"stop"'
	req "json, text" POST /v1/chat/completions "$(jchat 'Hello there' ',"max_tokens":6')"
	expect "response_format json_object: a reply that would be text is an object all the same" \
		200 '"content":"{' '"finish_reason":"length"'
	# json_schema: the object its schema allows (properties in order, no
	# others: the parrot's "note" cannot come)
	SCHEMA='{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}'
	req "json_schema" POST /v1/chat/completions \
		"{\"messages\":[{\"role\":\"user\",\"content\":\"{\\\"city\\\": \\\"Bern\\\", \\\"note\\\": \\\"x\\\"} and more\"}],\"temperature\":0,\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"w\",\"schema\":$SCHEMA,\"strict\":true}}}"
	if expect "response_format json_schema: the object the schema allows" 200 \
		'"content":"{\"city\": \"Bern' '\"}"},' '"finish_reason":"stop"' &&
		grep -q note "$T/body"; then
		bad "json_schema: a property the schema does not have: $(cat "$T/body")"
	fi
	req "json_schema refused" POST /v1/chat/completions \
		'{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"a","schema":{"allOf":[{"type":"object"}]}}}}'
	expect "a schema that cannot be held: 400 naming the keyword" 400 \
		"the schema's 'allOf' cannot be held" '"param":"response_format"'
	# a forced call's arguments are held to the function's parameters: the
	# parrot would write {"tz": ...}, the schema requires "zone" first
	ZONE='"tools":[{"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{"zone":{"type":"string"}},"required":["zone"]}}}]'
	req "parameters" POST /v1/chat/completions \
		"{\"messages\":[{\"role\":\"user\",\"content\":\"$TIME\"}],$ZONE,\"tool_choice\":\"required\",\"temperature\":0,\"max_tokens\":30}"
	expect "a forced call's arguments follow the function's parameters" 200 \
		'"content":"<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\":' \
		'"finish_reason":"length"'
	req "parameters refused" POST /v1/chat/completions \
		'{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"not":{}}}}}}],"tool_choice":"required"}'
	expect "parameters that cannot be held: 400" 400 "the schema's 'not' cannot be held" \
		'"param":"tools"'
	req "response_format bad" POST /v1/chat/completions \
		'{"messages":[{"role":"user","content":"x"}],"response_format":"json"}'
	expect "response_format of another shape: 400" 400 '"param":"response_format"'
	req "tool_choice bad" POST /v1/chat/completions "$(chat "$CALL" ',"tool_choice":"sometimes"')"
	expect "tool_choice of another value: 400" 400 "must be \\\"auto\\\", \\\"none\\\"" \
		'"param":"tool_choice"'
	req "one call" POST /v1/chat/completions \
		"$(chat "$CALL\\n<tool_call>\\n{\\\"name\\\": \\\"get_time\\\", \\\"arguments\\\": {}}\\n</tool_call>" ',"parallel_tool_calls":false')"
	if expect "parallel_tool_calls false: the first call only" 200 \
		"\"name\":\"get_weather\",$ARGS}}]" '"finish_reason":"tool_calls"' &&
		grep -q get_time "$T/body"; then
		bad "parallel_tool_calls false: the second call is there: $(cat "$T/body")"
	fi
	# a client sends the call back with its arguments as a JSON string (as
	# OpenAI's API has them): the template writes them as the model wrote them
	HIST='{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Zürich\", \"days\": 2}"}}]}'
	req "call rendered" POST /v1/chat/completions "{\"messages\":[$HIST]}"
	expect "an assistant's tool call is rendered with its arguments as an object" 200 \
		"\"content\":\"$CALL\""
	req "call round trip" POST /v1/chat/completions "{\"messages\":[$HIST],$TOOLS}"
	expect "a tool call sent back comes back as the same call" 200 \
		"\"name\":\"get_weather\",$ARGS}}]}" '"finish_reason":"tool_calls"'
	req "tool result" POST /v1/chat/completions \
		"{\"messages\":[$HIST,{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"12 C, rain\"}],$TOOLS}"
	expect "a tool's result is rendered as a tool_response turn" 200 \
		'"content":"<tool_response>\n12 C, rain\n</tool_response>"' '"finish_reason":"stop"'
	kill -TERM "$SPID"
	wait "$SPID"
	st=$?
	[ "$st" -eq 0 ] && ok "the tool-call server exits 0 (clean under the sanitizers)" ||
		bad "the tool-call server: exit $st: $(tail -n 20 "$T/parrot.log")"

	# a parrot that takes 40 ms a token: a streamed call goes out as it is written
	mkdir -p "$T/parrot-slow"
	cp "$T/parrot"/* "$T/parrot-slow/"
	sed 's/^{$/{ "parrot_delay_ms": 40,/' "$T/parrot/config.json" >"$T/parrot-slow/config.json"
	start parrot-slow -m "$T/parrot-slow" --plugin-dir "$T/pp" --parallel 1 -t 1 || exit 1
	TWO="$CALL\\n<tool_call>\\n{\\\"name\\\": \\\"get_time\\\", \\\"arguments\\\": {}}\\n</tool_call>"
	curl -s -N -m 60 -d "$(chat "$TWO" ',"stream":true')" \
		"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
	joined=$(args_joined "$T/sse")
	frags=$(grep -c '"tool_calls":\[{"index":0,"function":{"arguments":"' "$T/sse")
	if [ "$joined" = "$RAW" ] && [ "$frags" -ge 3 ] &&
		grep -qF '"tool_calls":[{"index":1,"id":"call_' "$T/sse" &&
		grep -qF '"name":"get_time","arguments":""}}]}' "$T/sse" &&
		grep -qF '"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]' "$T/sse" &&
		[ "$(grep -o '"index":0,"id":"call_[^"]*"' "$T/sse" | wc -l)" -eq 1 ] &&
		calls_end "$T/sse"; then
		ok "a tool call's arguments stream as the model writes them ($frags pieces), then the next call"
	else
		bad "tool call arguments as written: '$joined', $frags pieces: $(cat "$T/sse")"
	fi
	curl -s -N -m 60 -d "$(chat "$TWO" ',"stream":true,"parallel_tool_calls":false')" \
		"http://127.0.0.1:$PORT/v1/chat/completions" >"$T/sse"
	if [ "$(args_joined "$T/sse")" = "$RAW" ] && ! grep -q '"index":1' "$T/sse" &&
		calls_end "$T/sse"; then
		ok "parallel_tool_calls false, streamed as written: the first call only"
	else
		bad "parallel_tool_calls false, streamed: $(cat "$T/sse")"
	fi
	kill -TERM "$SPID"
	wait "$SPID"
	st=$?
	[ "$st" -eq 0 ] || bad "the slow tool-call server: exit $st: $(tail -n 20 "$T/parrot-slow.log")"
fi

# === the slow toy plugin: queue, disconnects, reloads, SIGTERM =========================
TOY="$B/tests/plugins/.libs"
if [ ! -f "$TOY/toy_v1.so" ] || [ ! -f "$TOY/toy_v2.so" ] || [ ! -f "$TOY/toy_badabi.so" ]; then
	echo "skip: test plugins not built (make check builds them)"
	[ "$fail" -eq 0 ] || exit 1
	exit 0
fi
P="$T/plugins" M="$T/toy"
mkdir -p "$P" "$M"
cp "$TOY/toy_v1.so" "$P/toy.so"
# each forward pass takes 25 ms; greedy decoding repeats id 1; 3 is EOS
toy_model -c '{"toy_delay_ms": 25}' "$M" 4 0.5 2 1 0

# metric NAME: its value on the toy server
metric() {
	curl -s -m 5 "http://127.0.0.1:$PORT/metrics" | sed -n "s/^$1 //p"
}
# wait_until CMD...: up to 10 s
wait_until() {
	i=0
	while ! "$@"; do
		i=$((i + 1))
		[ "$i" -gt 100 ] && return 1
		sleep 0.1
	done
}
first_event() { grep -q '^data: {' "$1" 2>/dev/null; }
queued_is() { [ "$(metric modelhost_queue_depth)" = "$1" ]; }
busy_is() { [ "$(metric modelhost_busy_sequences)" = "$1" ]; }
LONG='{"prompt":[0],"max_tokens":60,"temperature":0,"ignore_eos":true,"stream":true}'

start toy -m "$M" --plugin-dir "$P" --parallel 1 --queue 1 --timeout 20 || exit 1
# one running, one waiting, the third turned away
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/a" &
ca=$!
wait_until first_event "$T/a"
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/b" &
cb=$!
wait_until queued_is 1
req "full" POST /v1/completions '{"prompt":[0],"max_tokens":2}'
if expect_error "past --queue: 503" 503 server_error null; then
	grep -qi '^Retry-After: 1' "$T/head" && ok "503 carries Retry-After" ||
		bad "no Retry-After: $(cat "$T/head")"
fi
wait "$ca" "$cb"
a=$(grep -c '"text":"' "$T/a") b=$(grep -c '"text":"' "$T/b")
if grep -q '"finish_reason":"length"' "$T/a" && grep -q '"finish_reason":"length"' "$T/b" &&
	[ "$(grep '^data: {' "$T/a" | sed -n 's/.*"text":"\([0-9 ]*\)".*/\1/p' | tr -d '\n' | wc -w)" -eq 60 ]; then
	ok "the running and the queued request both finish ($a and $b events)"
else
	bad "queued requests: $(tail -c 300 "$T/a") / $(tail -c 300 "$T/b")"
fi

# a client that hangs up frees its sequence within a step
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/c" &
cc=$!
wait_until first_event "$T/c"
kill "$cc"
wait "$cc" 2>/dev/null
t0=$(date +%s%N)
if wait_until busy_is 0; then
	ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$ms" -lt 1000 ] && ok "a client that hangs up frees its sequence (${ms} ms)" ||
		bad "hang-up freed the sequence only after $ms ms"
else
	bad "a client that hung up still holds its sequence"
fi

# a plugin reinstalled under a running request: it finishes on the old code
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/d" &
cd_=$!
wait_until first_event "$T/d"
cp "$TOY/toy_v2.so" "$P/.toy.so.new" && mv "$P/.toy.so.new" "$P/toy.so"
kill -HUP "$SPID"
wait_until grep -q "is now served by toy 2.0.0" "$T/toy.log" &&
	ok "SIGHUP: the reinstalled plugin takes over" || bad "SIGHUP reload: $(cat "$T/toy.log")"
wait "$cd_"
n=$(grep '^data: {' "$T/d" | sed -n 's/.*"text":"\([0-9 ]*\)".*/\1/p' | tr -d '\n' | wc -w)
[ "$n" -eq 60 ] && grep -q '"finish_reason":"length"' "$T/d" &&
	ok "the request running across the swap finishes whole" || bad "across the swap: $n tokens: $(tail -c 300 "$T/d")"
req "after swap" POST /v1/completions '{"prompt":[0],"max_tokens":3,"temperature":0}'
expect "a new request runs on the new plugin" 200 '"text":"1 1 1"'
metric 'modelhost_plugin_info{name="toy",version="2.0.0"}' | grep -qx 1 &&
	ok "metrics name the new plugin" || bad "plugin_info after the swap"
req "reload again" POST /admin/reload
expect "/admin/reload: nothing new, the same plugin" 200 '"status":"ok"' 'still serves' '"version":"2.0.0"'
# a broken build installed: the reload fails and the old code keeps serving
cp "$TOY/toy_badabi.so" "$P/.toy.so.new" && mv "$P/.toy.so.new" "$P/toy.so"
req "bad reload" POST /admin/reload
expect "a plugin that fails to load leaves the old one serving" 500 'keeps serving'
req "after bad reload" POST /v1/completions '{"prompt":[0],"max_tokens":3,"temperature":0}'
expect "still served after a failed reload" 200 '"text":"1 1 1"'

# SIGTERM: the running request finishes, then exit 0 and no more connections
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/e" &
ce=$!
wait_until first_event "$T/e"
kill -TERM "$SPID"
wait "$ce"
wait "$SPID"
st=$?
n=$(grep '^data: {' "$T/e" | sed -n 's/.*"text":"\([0-9 ]*\)".*/\1/p' | tr -d '\n' | wc -w)
if [ "$st" -eq 0 ] && [ "$n" -eq 60 ] && grep -q '^data: \[DONE\]' "$T/e"; then
	ok "SIGTERM: the running request finishes, exit 0"
else
	bad "SIGTERM under load: exit $st, $n tokens: $(tail -n 5 "$T/toy.log")"
fi
curl -s -m 5 "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 &&
	bad "the server still answers after SIGTERM" || ok "no connections after exit"

# --timeout is for idle clients, not for the model: a reply that takes longer
# than it still arrives, and a stream waiting in the queue gets keep-alive
# comments
cp "$TOY/toy_v1.so" "$P/.toy.so.new" && mv "$P/.toy.so.new" "$P/toy.so" # a loadable build again
start slow -m "$M" --plugin-dir "$P" --parallel 1 --timeout 1 || exit 1
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/f" &
cf=$!
wait_until first_event "$T/f"
curl -s -N -m 60 -d "$LONG" "http://127.0.0.1:$PORT/v1/completions" >"$T/g" &
cg=$!
req "slow reply" POST /v1/completions '{"prompt":[0],"max_tokens":60,"temperature":0,"ignore_eos":true}'
wait "$cf" "$cg"
expect "a reply slower than --timeout arrives whole" 200 '"finish_reason":"length"' '"completion_tokens":60'
grep -q '^: waiting' "$T/g" && grep -q '^data: \[DONE\]' "$T/g" &&
	ok "a queued stream gets keep-alive comments, then its tokens" ||
	bad "queued stream with --timeout 1: $(head -c 300 "$T/g")"
kill -TERM "$SPID"
wait "$SPID"

echo "serve: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
