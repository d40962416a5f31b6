#!/bin/sh
# SPDX-License-Identifier: MIT
# run.sh TARGET [SECONDS]: build tests/fuzz/fuzz_TARGET.c with clang's
# libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer, and fuzz it
# for SECONDS (default 60), starting from the reference files in ../shared.
# Needs clang and libclang-rt-14-dev (Debian), and ../shared for the seeds.
#   safetensors  any bytes as a .safetensors file (st_open, every tensor read)
#   tokenizer    any bytes as text and as ids, for each tokenizer.json in
#                ../shared/tokenizers (seconds split between them)
#   tokenizer_json  any bytes as tokenizer.json, then encoding, decoding and
#                streaming; seeds: tests/fuzz/tokenizer_json/ (every stage
#                type) and each reference tokenizer cut to 300 tokens
#   config       any bytes as config.json beside each reference checkpoint's
#                weights, through every plugin (built here, instrumented
#                too), then a forward pass (seconds split between them)
#   template     any bytes as a chat template, parsed and rendered over a small
#                conversation; seeds: the reference templates and tests/data
#   toolcall     any bytes as a reply with tool calls, read prefix by prefix as
#                a stream reads it (toolcall_scan); seeds: tests/fuzz/toolcall/
#   schema       any bytes as a JSON Schema and a reply held to it, the mask
#                checked against the token-by-token test at every byte;
#                seeds: tests/fuzz/schema/
# Corpora and the binaries go to $FUZZ_OUT (default /tmp/modelhost-fuzz);
# a crash leaves its input there as *crash-*, to replay with
# $FUZZ_OUT/fuzz_TARGET FILE, and makes this script exit 1.
set -eu
cd "$(dirname "$0")/../.."
t=${1:?usage: tests/fuzz/run.sh safetensors|tokenizer|tokenizer_json|config|template|toolcall|schema [SECONDS]}
secs=${2:-60}
shared=${MODELHOST_SHARED:-../shared}
out=${FUZZ_OUT:-/tmp/modelhost-fuzz}
mkdir -p "$out"
status=0
# fuzz NAME ENV... -- BINARY ARGS...: one run, its log in $out/NAME.log, the
# last lines shown; a finding sets status
fuzz() {
	name=$1
	shift
	echo "== $name"
	if ! env "$@" >"$out/$name.log" 2>&1; then
		status=1
		echo "FOUND something: $out/$name.log"
	fi
	tail -n 3 "$out/$name.log"
}
flags="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -I host -I sdk/include $(pkg-config --cflags libcjson)"
case $t in
safetensors)
	${CC:-clang} $flags tests/fuzz/fuzz_safetensors.c host/model/safetensors.c host/base/util.c \
		$(pkg-config --libs libcjson) -o "$out/fuzz_safetensors"
	mkdir -p "$out/corpus-safetensors"
	find "$shared" -name '*.safetensors' -size -64k -exec cp {} "$out/corpus-safetensors/" \;
	fuzz safetensors "$out/fuzz_safetensors" -max_total_time="$secs" -max_len=65536 \
		-timeout=10 -artifact_prefix="$out/" "$out/corpus-safetensors"
	;;
tokenizer)
	${CC:-clang} $flags tests/fuzz/fuzz_tokenizer.c host/text/tokenizer/*.c host/base/util.c \
		$(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lpthread -lm \
		-o "$out/fuzz_tokenizer"
	set -- "$shared"/models/stories260K/tokenizer.json "$shared"/tokenizers/*/tokenizer.json
	each=$((secs / $#))
	[ "$each" -gt 0 ] || each=1
	for tj; do
		name=$(basename "$(dirname "$tj")")
		mkdir -p "$out/corpus-tokenizer-$name"
		fuzz "tokenizer-$name" FUZZ_TOKENIZER="$tj" "$out/fuzz_tokenizer" \
			-max_total_time="$each" -max_len=512 -timeout=10 \
			-artifact_prefix="$out/$name-" "$out/corpus-tokenizer-$name"
	done
	;;
tokenizer_json)
	${CC:-clang} $flags tests/fuzz/fuzz_tokenizer_json.c host/text/tokenizer/*.c host/base/util.c \
		$(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lpthread -lm \
		-o "$out/fuzz_tokenizer_json"
	c="$out/corpus-tokenizer_json"
	mkdir -p "$c"
	cp tests/fuzz/tokenizer_json/*.json "$c/"
	for tj in "$shared"/models/stories260K/tokenizer.json "$shared"/tokenizers/*/tokenizer.json; do
		FUZZ_SHRINK=300 "$out/fuzz_tokenizer_json" "$tj" \
			"$c/$(basename "$(dirname "$tj")").json" 2>/dev/null
	done
	fuzz tokenizer_json "$out/fuzz_tokenizer_json" -max_total_time="$secs" -max_len=65536 \
		-timeout=10 -dict=tests/fuzz/tokenizer_json.dict -artifact_prefix="$out/json-" "$c"
	;;
config)
	mkdir -p "$out/plugins"
	for p in llama mistral phi qwen; do
		${CC:-clang} -g -O1 -fsanitize=fuzzer-no-link,address,undefined \
			-fno-sanitize-recover=undefined -fPIC -shared -I sdk/include \
			plugins/$p/*.c -o "$out/plugins/$p.so"
	done
	# the host's sources need the configured tree's config.h (the BLAS
	# choice), and plugins are scanned by the scanner program first (built
	# with ASan too, or it could not dlopen the instrumented plugins)
	[ -f config.h ] || { echo "run.sh: config needs a configured tree: run ./configure first" >&2; exit 2; }
	${CC:-clang} -g -O1 -fsanitize=address,undefined -I host -I sdk/include host/plugin/scanner.c -ldl \
		-o "$out/modelhost-plugin-scanner"
	export MODELHOST_PLUGIN_SCANNER="$out/modelhost-plugin-scanner"
	host=$(find host -name '*.c' | grep -v -e '^host/cli/' -e '^host/server/' -e '^host/plugin/scanner.c$' | sort)
	${CC:-clang} $flags -I . -DMH_PLUGINDIR='"/nonexistent"' -DMH_PKGDATADIR='"/nonexistent"' \
		-DMH_SCANNER='"/nonexistent"' \
		$(pkg-config --cflags openblas libpcre2-8 libutf8proc) tests/fuzz/fuzz_config.c $host \
		$(pkg-config --libs libcjson openblas libpcre2-8 libutf8proc) -ldl -lpthread -lm \
		-o "$out/fuzz_config"
	set --
	for m in "$shared"/fixtures/models/*/ "$shared"/models/*/; do
		[ -f "$m/config.json" ] && set -- "$@" "${m%/}"
	done
	each=$((secs / $#))
	[ "$each" -gt 0 ] || each=1
	for m; do
		name=$(basename "$m")
		mkdir -p "$out/corpus-config-$name"
		cp "$m/config.json" "$out/corpus-config-$name/"
		fuzz "config-$name" FUZZ_MODEL="$m" FUZZ_PLUGINS="$out/plugins" "$out/fuzz_config" \
			-max_total_time="$each" -max_len=4096 -timeout=10 \
			-artifact_prefix="$out/$name-" "$out/corpus-config-$name"
	done
	;;
template)
	${CC:-clang} $flags $(pkg-config --cflags libutf8proc) tests/fuzz/fuzz_template.c \
		host/text/template/*.c $(pkg-config --libs libutf8proc) -lm -o "$out/fuzz_template"
	mkdir -p "$out/corpus-template"
	cp tests/data/*.jinja "$out/corpus-template/"
	! command -v python3 >/dev/null || python3 -c 'import json, os, sys
for f in sys.argv[2:]:
    if os.path.exists(f):
        for n, t in json.load(open(f))["templates"].items():
            open("%s/%s.jinja" % (sys.argv[1], n), "w").write(t["template"])' "$out/corpus-template" \
		tests/data/fixtures/chat/templates-open.json tests/data/fixtures/chat/qwen3-coder.json \
		"$shared/fixtures/chat/templates.json"
	fuzz template "$out/fuzz_template" -max_total_time="$secs" -max_len=16384 -timeout=10 \
		-rss_limit_mb=2048 -artifact_prefix="$out/template-" "$out/corpus-template"
	;;
toolcall)
	${CC:-clang} $flags tests/fuzz/fuzz_toolcall.c host/server/toolcall.c \
		$(pkg-config --libs libcjson) -o "$out/fuzz_toolcall"
	mkdir -p "$out/corpus-toolcall"
	cp tests/fuzz/toolcall/* "$out/corpus-toolcall/"
	fuzz toolcall "$out/fuzz_toolcall" -max_total_time="$secs" -max_len=1024 -timeout=10 \
		-dict=tests/fuzz/toolcall.dict -artifact_prefix="$out/toolcall-" "$out/corpus-toolcall"
	;;
schema)
	${CC:-clang} $flags $(pkg-config --cflags libpcre2-8 libutf8proc) tests/fuzz/fuzz_schema.c \
		host/text/constrain.c host/text/tokenizer/*.c host/base/util.c \
		$(pkg-config --libs libcjson libpcre2-8 libutf8proc) -lpthread -lm -o "$out/fuzz_schema"
	mkdir -p "$out/corpus-schema"
	cp tests/fuzz/schema/* "$out/corpus-schema/"
	fuzz schema FUZZ_TOKENIZER="$shared/models/stories260K/tokenizer.json" "$out/fuzz_schema" \
		-max_total_time="$secs" -max_len=2048 -timeout=10 -dict=tests/fuzz/schema.dict \
		-artifact_prefix="$out/schema-" "$out/corpus-schema"
	;;
*)
	echo "run.sh: unknown target '$t' (safetensors, tokenizer, tokenizer_json, config, template, toolcall or schema)" >&2
	exit 2
	;;
esac
exit "$status"
