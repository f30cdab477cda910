#!/usr/bin/env bash
# Starts a single-use GitHub Actions runner from its just-in-time
# configuration: ACTIONS_RUNNER_INPUT_JITCONFIG, or the file that
# ACTIONS_RUNNER_INPUT_JITCONFIG_FILE names (agentscaler's Docker secret
# file). The configuration is a credential: it is never printed, and it
# reaches the runner through its environment (the runner reads
# ACTIONS_RUNNER_INPUT_<flag> for any flag), never on a command line that ps
# would show. The runner takes one job and exits; GitHub removes it.
set -euo pipefail

if [[ -n "${ACTIONS_RUNNER_INPUT_JITCONFIG_FILE:-}" ]]; then
  if [[ ! -r "$ACTIONS_RUNNER_INPUT_JITCONFIG_FILE" ]]; then
    echo "start.sh: ACTIONS_RUNNER_INPUT_JITCONFIG_FILE names no readable file" >&2
    exit 1
  fi
  ACTIONS_RUNNER_INPUT_JITCONFIG="$(<"$ACTIONS_RUNNER_INPUT_JITCONFIG_FILE")"
fi
unset ACTIONS_RUNNER_INPUT_JITCONFIG_FILE
if [[ -z "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" ]]; then
  echo "start.sh: set ACTIONS_RUNNER_INPUT_JITCONFIG or ACTIONS_RUNNER_INPUT_JITCONFIG_FILE" >&2
  exit 1
fi
export ACTIONS_RUNNER_INPUT_JITCONFIG

cd "$(dirname "$0")"
echo "start.sh: starting the just-in-time runner"
exec ./run.sh
