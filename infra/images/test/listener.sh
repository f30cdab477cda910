#!/usr/bin/env bash
# Stand-in for the agent's bin/Agent.Listener, for start.bats, run by the
# run.sh stand-in. It prints nothing and:
#   STANDIN_RUN_EXITS  exit statuses of successive runs, space-separated; the
#                      last one repeats (default 0)
#   STANDIN_RUN_BLOCK  when 1, writes $STANDIN_DIR/running and waits for TERM
#                      or INT (two minutes at most), records "agent got SIGNAL"
#                      in $STANDIN_DIR/calls and exits 0, as the agent does
#                      when it is stopped
set -u
dir=${STANDIN_DIR:?STANDIN_DIR must name the directory the stand-ins record into}
if [[ ${STANDIN_RUN_BLOCK:-0} == 1 ]]; then
	trap 'echo "agent got TERM" >>"$dir/calls"; exit 0' TERM
	trap 'echo "agent got INT" >>"$dir/calls"; exit 0' INT
	: >"$dir/running"
	for ((i = 0; i < 120; i++)); do
		sleep 1 &
		wait $!
	done
	echo "agent was never stopped" >>"$dir/calls"
	exit 1
fi
read -r -a exits <<<"${STANDIN_RUN_EXITS:-0}"
runs=$(grep -c '^run.sh' "$dir/calls")
if ((runs > ${#exits[@]})); then runs=${#exits[@]}; fi
exit "${exits[runs - 1]}"
