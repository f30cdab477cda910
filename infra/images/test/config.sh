#!/usr/bin/env bash
# Stand-in for the agent's config.sh, for start.bats. It records its arguments
# (one line in $STANDIN_DIR/calls) and its whole environment (a file per call),
# prints nothing, and exits as told:
#   STANDIN_CONFIG_EXIT  exit status of a configure call (default 0)
#   STANDIN_REMOVE_FAIL  how many remove calls fail (exit 1) before one
#                        succeeds; "always" for all of them (default 0)
set -u
dir=${STANDIN_DIR:?STANDIN_DIR must name the directory the stand-ins record into}
n=$(($(wc -l <"$dir/calls" 2>/dev/null || echo 0) + 1))
{
	printf 'config.sh'
	printf ' %s' "$@"
	printf '\n'
} >>"$dir/calls"
env >"$dir/$n.config.env"

if [[ ${1:-} == remove ]]; then
	fail=${STANDIN_REMOVE_FAIL:-0}
	[[ $fail == always ]] && exit 1
	removes=$(grep -c '^config.sh remove' "$dir/calls")
	((removes > fail)) || exit 1
	exit 0
fi
exit "${STANDIN_CONFIG_EXIT:-0}"
