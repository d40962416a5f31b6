#!/bin/sh
# SPDX-License-Identifier: MIT
# installcheck.sh - build the bigram example against an installed modelhost
# and generate with it, as a third party would.
#
#   sh examples/bigram/installcheck.sh BINDIR PKGCONFIGDIR SRCDIR
#
# BINDIR holds the installed `modelhost`, PKGCONFIGDIR the installed
# modelhost.pc, SRCDIR is modelhost's source tree (or this directory).
# Exits 0 when everything checks out, 1 with a message otherwise.

set -u

me=bigram-installcheck
fail() {
	echo "$me: FAIL: $*" >&2
	exit 1
}

[ $# -eq 3 ] || { echo "usage: $0 BINDIR PKGCONFIGDIR SRCDIR" >&2; exit 2; }
bindir=$1
pcdir=$2
srcdir=$3

if [ -f "$srcdir/examples/bigram/bigram.c" ]; then
	exdir=$srcdir/examples/bigram
elif [ -f "$srcdir/bigram.c" ]; then
	exdir=$srcdir
else
	fail "no examples/bigram/bigram.c under $srcdir"
fi
modelhost=$bindir/modelhost
[ -x "$modelhost" ] || fail "$modelhost is not an executable"
[ -f "$pcdir/modelhost.pc" ] || fail "$pcdir/modelhost.pc does not exist"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/modelhost-bigram.XXXXXX") ||
	fail "cannot create a temporary directory"
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

for f in bigram.c mkbigram.c Makefile README.md; do
	cp "$exdir/$f" "$tmp/" || fail "cannot copy $exdir/$f"
done

echo "$me: building bigram.so and the toy model in $tmp against $pcdir"
PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
export PKG_CONFIG_PATH
# build as a user would, not with the flags of the make that runs us
unset MAKEFLAGS MFLAGS MAKELEVEL
(cd "$tmp" && ${MAKE:-make} all model) >"$tmp/build.log" 2>&1 || {
	cat "$tmp/build.log" >&2
	fail "make in the copied example failed (log above)"
}
[ -f "$tmp/bigram.so" ] || fail "make did not produce bigram.so"
[ -f "$tmp/toy/model.safetensors" ] || fail "make model did not produce toy/model.safetensors"

MODELHOST_PLUGIN_PATH=$tmp
export MODELHOST_PLUGIN_PATH

echo "$me: checking that 'modelhost plugins' lists bigram as active"
out=$("$modelhost" plugins 2>"$tmp/plugins.err") || {
	status=$?
	cat "$tmp/plugins.err" >&2
	fail "'modelhost plugins' exited with status $status"
}
printf '%s\n' "$out" | sed 's/^/    /'
# the line of our copy (its path holds the temporary directory's unique name;
# a bigram.so installed system-wide must not be the one in use)
printf '%s\n' "$out" | grep 'bigram' | grep -w 'active' |
	grep -F "$(basename "$tmp")" >/dev/null ||
	fail "no line of 'modelhost plugins' lists $tmp/bigram.so as active"

check_generate() { # DIR EXPECTED
	echo "$me: checking 'modelhost generate -m $1 --ids 1 -n 5 --temp 0' prints '$2'"
	got=$("$modelhost" generate -m "$1" --ids 1 -n 5 --temp 0 2>"$tmp/gen.err") || {
		status=$?
		cat "$tmp/gen.err" >&2
		fail "'modelhost generate' on $1 exited with status $status"
	}
	# stdout holds the new ids only (not the prompt); compare them as
	# words, whatever the spacing
	got_words=$(printf '%s\n' "$got" | tr -s ' \t\n' '   ' | sed 's/^ //; s/ $//')
	echo "    $got_words"
	[ "$got_words" = "$2" ] || {
		cat "$tmp/gen.err" >&2
		fail "expected '$2' on stdout from $1, got '$got_words'"
	}
}

check_generate "$tmp/toy" "2 3 4 5 6"

# the same table stored as BF16 and F16: converted by the host's services
for t in bf16 f16; do
	"$tmp/mkbigram" -t $t "$tmp/toy-$t" || fail "mkbigram -t $t failed"
	check_generate "$tmp/toy-$t" "2 3 4 5 6"
done

echo "$me: PASS"
