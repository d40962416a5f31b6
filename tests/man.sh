#!/bin/sh
# SPDX-License-Identifier: MIT
# man.sh - modelhost(1) in step with the program: every command that
# `modelhost --help` lists has a ".SS modelhost COMMAND" section, every long
# option a command's --help prints is named in its section (or among the
# options every command takes), and the common options, --version included,
# are in OPTIONS.  A command added without its page fails here.
set -u
B=${MODELHOST_BUILDDIR:-.}
MH="$B/modelhost"
PAGE="$B/man/modelhost.1"
[ -f "$PAGE" ] || { echo "FAIL: $PAGE not built (make check builds it)"; exit 1; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
bad() { fail=$((fail + 1)); echo "FAIL: $1"; }

# the page as plain words: roff's \- is a -, \fB..\fR fonts go
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' "$PAGE" >"$T/page"
# section TITLE: the lines from ".SS TITLE" (or ".SH TITLE") to the next heading
section() {
	awk -v want="$1" '/^\.S[SH] /{ on = (substr($0, 5) == want); next } on' "$T/page"
}
# long options in a help text, one per line
longopts() { grep -o -- '--[a-z][a-z0-9-]*' | sort -u; }

"$MH" --help >"$T/help" || { echo "FAIL: modelhost --help exits non-zero"; exit 1; }
cmds=$(sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\) .*/\1/p' "$T/help")
[ -n "$cmds" ] || { echo "FAIL: no commands found in modelhost --help"; exit 1; }
section OPTIONS >"$T/common"
sed -n '/^Options every command takes:/,/^$/p' "$T/help" | longopts >"$T/commonopts"
grep -q -- '--version' "$T/help" || bad "--version is not in modelhost --help"
for o in $(cat "$T/commonopts") --version; do
	grep -q -- "$o\\b" "$T/common" || bad "modelhost.1 OPTIONS does not name $o"
done
n=0
for c in $cmds; do
	n=$((n + 1))
	section "modelhost $c" >"$T/sec"
	if [ ! -s "$T/sec" ]; then
		bad "modelhost.1 has no '.SS modelhost $c' section (man/modelhost.1.in)"
		continue
	fi
	"$MH" "$c" --help >"$T/chelp" 2>&1 || { bad "modelhost $c --help exits non-zero"; continue; }
	for o in $(longopts <"$T/chelp"); do
		[ "$o" = --help ] && continue
		grep -q -- "$o\\b" "$T/sec" || grep -q -- "$o\\b" "$T/common" ||
			bad "modelhost.1, 'modelhost $c': option $o (from '$c --help') is not described"
	done
done
# and no section for a command the program does not have
for s in $(sed -n 's/^\.SS modelhost \([a-z-]*\).*/\1/p' "$T/page"); do
	echo "$cmds" | grep -qx "$s" || bad "modelhost.1 describes '$s', which --help does not list"
done
echo "$n commands checked, $fail problems"
[ "$fail" -eq 0 ]
