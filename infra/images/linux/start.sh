#!/usr/bin/env bash
# start.sh: the command of the agent image. It registers the Azure Pipelines
# agent baked into the image, runs it for one job (--once), and unregisters it
# on the way out, whatever ends the run. The environment it reads is the agent
# container contract (docs/architecture.md, docs/images.md):
#
#   AZP_URL            organization URL (required)
#   AZP_TOKEN          PAT or Entra token with Agent Pools (read, manage), or
#   AZP_TOKEN_FILE     a file holding it (wins over AZP_TOKEN)
#   AZP_CLIENTID, AZP_TENANTID, AZP_CLIENTSECRET (or AZP_CLIENTSECRET_FILE)
#                      a service principal instead of a token (--auth SP)
#   AZP_POOL           agent pool (default Default)
#   AZP_AGENT_NAME     agent name (default the host name)
#   AZP_WORK           work folder (default _work, under the agent)
#   AZP_AGENT_HOME     where the agent is (default /azp/agent)
#   AZP_RETRY_DELAY    seconds between unregister attempts, and before starting
#                      an agent that updated itself (default 5)
#
# Arguments are passed to run.sh after --once.
#
# Secrets never reach a command line: config.sh reads them from the agent's
# VSTS_AGENT_INPUT_TOKEN / VSTS_AGENT_INPUT_CLIENTSECRET variables, set only in
# its own environment (the agent removes them from its environment on start),
# and the token variables are unset before anything else runs. Never add
# `set -x` here: it would print them.
#
# Exit status: the agent's, or 128+n after signal n (TERM 143, INT 130); 1 when
# the environment is wrong, with a line on stderr saying which variable.
set -uo pipefail

# Job control puts every child in a process group of its own, so that a
# forwarded signal reaches run.sh and the agent it started, and so that
# children do not inherit the ignored SIGINT of background jobs.
set -m

readonly unregister_attempts=5
readonly update_restarts=3
readonly update_wait=60

log() { printf 'start.sh: %s\n' "$*"; }
die() {
	printf 'start.sh: error: %s\n' "$*" >&2
	exit 1
}

# read_secret NAME: sets REPLY to the secret NAME, read from the file named by
# NAME_FILE when that is set, else from NAME; surrounding blanks trimmed.
read_secret() {
	local file_var="${1}_FILE"
	local file="${!file_var:-}"
	if [[ -n $file ]]; then
		[[ -f $file && -r $file ]] || die "$file_var=$file: no readable file there; mount the secret at that path or unset $file_var"
		REPLY=$(<"$file")
		REPLY="${REPLY#"${REPLY%%[![:space:]]*}"}"
		REPLY="${REPLY%"${REPLY##*[![:space:]]}"}"
		[[ -n $REPLY ]] || die "$file_var=$file: the file is empty; write the secret into it"
	else
		REPLY="${!1:-}"
	fi
}

[[ -n ${AZP_URL:-} ]] || die "AZP_URL is not set: set it to the organization URL, e.g. https://dev.azure.com/contoso"
[[ $AZP_URL == https://* || $AZP_URL == http://* ]] || die "AZP_URL=$AZP_URL: must start with https:// (or http:// for Azure DevOps Server)"

if [[ -n ${AZP_CLIENTID:-} ]]; then
	[[ -z ${AZP_TOKEN:-}${AZP_TOKEN_FILE:-} ]] || die "AZP_CLIENTID and AZP_TOKEN (or AZP_TOKEN_FILE) are both set: set a token or a service principal, not both"
	[[ -n ${AZP_TENANTID:-} ]] || die "AZP_TENANTID is not set: a service principal (AZP_CLIENTID) needs its tenant id"
	read_secret AZP_CLIENTSECRET
	[[ -n $REPLY ]] || die "AZP_CLIENTSECRET is not set: a service principal (AZP_CLIENTID) needs its secret, in AZP_CLIENTSECRET or a file named by AZP_CLIENTSECRET_FILE"
	auth=(--auth SP --clientid "$AZP_CLIENTID" --tenantid "$AZP_TENANTID")
	secret_var=VSTS_AGENT_INPUT_CLIENTSECRET
else
	read_secret AZP_TOKEN
	[[ -n $REPLY ]] || die "AZP_TOKEN is not set: set AZP_TOKEN, or AZP_TOKEN_FILE to a file holding it, or AZP_CLIENTID, AZP_TENANTID and AZP_CLIENTSECRET for a service principal"
	auth=(--auth PAT)
	secret_var=VSTS_AGENT_INPUT_TOKEN
fi
secret=$REPLY
unset REPLY AZP_TOKEN AZP_TOKEN_FILE AZP_CLIENTSECRET AZP_CLIENTSECRET_FILE VSTS_AGENT_INPUT_TOKEN VSTS_AGENT_INPUT_CLIENTSECRET
# Belt and braces: should a derived image export them again, the agent still
# does not report them as capabilities.
export VSO_AGENT_IGNORE="${VSO_AGENT_IGNORE:+$VSO_AGENT_IGNORE,}AZP_TOKEN,AZP_TOKEN_FILE,AZP_CLIENTSECRET,AZP_CLIENTSECRET_FILE,VSTS_AGENT_INPUT_TOKEN,VSTS_AGENT_INPUT_CLIENTSECRET"

agent_home="${AZP_AGENT_HOME:-/azp/agent}"
[[ -x $agent_home/config.sh && -x $agent_home/run.sh ]] || die "AZP_AGENT_HOME=$agent_home: no agent there (config.sh and run.sh); build the image with the agent in it, or point AZP_AGENT_HOME at it"
retry_delay="${AZP_RETRY_DELAY:-5}"
[[ $retry_delay =~ ^[0-9]+$ ]] || die "AZP_RETRY_DELAY=$retry_delay: must be a whole number of seconds"
name="${AZP_AGENT_NAME:-$HOSTNAME}"
pool="${AZP_POOL:-Default}"
work="${AZP_WORK:-_work}"
if [[ $work == /* ]]; then
	mkdir -p "$work" || die "AZP_WORK=$work: cannot create the work folder; mount a writable volume there or choose another path"
fi
cd "$agent_home" || die "AZP_AGENT_HOME=$agent_home: cannot enter it"

# The signal that is ending this run (TERM or INT), and the child it goes to.
caught=""
child=0
trapped=0
# shellcheck disable=SC2317 # called by the traps below
on_signal() {
	caught=$1
	trapped=1
	if ((child > 0)); then
		kill -s "$1" -- "-$child" 2>/dev/null || kill -s "$1" "$child" 2>/dev/null
	fi
}
trap 'on_signal TERM' TERM
trap 'on_signal INT' INT

# run CMD...: runs CMD as a job of its own, forwarding TERM and INT to it, and
# returns its exit status.
run() {
	local rc r
	"$@" &
	child=$!
	# A signal that came before child was known has not been forwarded yet.
	[[ -z $caught ]] || kill -s "$caught" -- "-$child" 2>/dev/null
	trapped=0
	wait "$child"
	rc=$?
	# A trapped signal ends wait early; wait again for the child's own status
	# (127: it had already been collected, and rc is it).
	while ((trapped)); do
		trapped=0
		wait "$child"
		r=$?
		((r == 127)) || rc=$r
	done
	child=0
	return "$rc"
}

# agent_config ARGS...: config.sh with the secret in its environment only.
# shellcheck disable=SC2317 # called through run
agent_config() {
	export "$secret_var=$secret"
	exec "$agent_home/config.sh" "$@" "${auth[@]}"
}

# unregister: config.sh remove, a bounded number of times: removal fails while
# the server still sees a job on the agent. What is left behind is an offline
# agent named after the instance, which agentscaler removes.
unregister() {
	local i
	for ((i = 1; i <= unregister_attempts; i++)); do
		log "unregistering $name (attempt $i of $unregister_attempts)"
		if run agent_config remove --unattended; then
			log "unregistered $name"
			return 0
		fi
		((i == unregister_attempts)) || sleep "$retry_delay"
	done
	printf 'start.sh: warning: could not unregister %s after %d attempts; agentscaler removes offline agents of its pools\n' "$name" "$unregister_attempts" >&2
	return 1
}

# finish RC: unregister, then exit with RC, or 128+n after signal n.
finish() {
	# Signals from here on end nothing: the agent is done and unregistering
	# must not be cut short.
	trap '' TERM INT
	unregister
	case $caught in
	TERM) exit 143 ;;
	INT) exit 130 ;;
	esac
	exit "$1"
}

case $caught in TERM) exit 143 ;; INT) exit 130 ;; esac

log "registering $name in pool $pool at $AZP_URL"
run agent_config --unattended --agent "$name" --url "$AZP_URL" --pool "$pool" --work "$work" --replace --acceptTeeEula
rc=$?
if ((rc != 0)); then
	# Stopped half-way, the agent may be registered; failed on its own, it is not.
	[[ -z $caught ]] || finish "$rc"
	printf 'start.sh: error: config.sh failed with exit status %d; its output above says why\n' "$rc" >&2
	exit "$rc"
fi

# Exit status 3 or 4 means the agent received an update and exited for the
# update to replace it, before taking a job (4 is the run-once form; run.sh
# itself restarts once on 4). The job this container was started for is still
# waiting, so start the updated agent again, a bounded number of times, rather
# than exit as if the run were over.
restarts=0
while [[ -z $caught ]]; do
	log "running the agent for one job"
	run "$agent_home/run.sh" --once "$@"
	rc=$?
	[[ -z $caught ]] || break
	[[ $rc == 3 || $rc == 4 ]] || break
	if ((restarts == update_restarts)); then
		printf 'start.sh: error: the agent exited for an update %d times in a row; giving up\n' "$((restarts + 1))" >&2
		break
	fi
	restarts=$((restarts + 1))
	log "the agent updated itself (exit status $rc); starting the new version"
	sleep "$retry_delay"
	for ((i = 0; i < update_wait; i++)); do
		[[ -z $caught && ! -x $agent_home/bin/Agent.Listener ]] || break
		sleep 1
	done
done
finish "$rc"
