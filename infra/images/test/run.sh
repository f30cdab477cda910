#!/usr/bin/env bash
# Stand-in for the agent's run.sh, for start.bats. Like the real one it has no
# traps and runs bin/Agent.Listener (here listener.sh) in the foreground, so a
# signal sent to this script alone would leave the listener running. It
# records its arguments (one line in $STANDIN_DIR/calls) and its whole
# environment (a file per call), prints nothing, and exits with the listener's
# status.
set -u
dir=${STANDIN_DIR:?STANDIN_DIR must name the directory the stand-ins record into}
n=$(($(wc -l <"$dir/calls" 2>/dev/null || echo 0) + 1))
{
	printf 'run.sh'
	printf ' %s' "$@"
	printf '\n'
} >>"$dir/calls"
env >"$dir/$n.run.env"
"$(dirname "$0")/bin/Agent.Listener" run "$@"
