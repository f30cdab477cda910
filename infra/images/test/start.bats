#!/usr/bin/env bats
# The Linux image's start script (infra/images/linux/start.sh) against
# stand-ins for the agent's config.sh, run.sh and bin/Agent.Listener
# (config.sh, run.sh and listener.sh beside this file), which record their
# arguments and environment and exit as told.
# They stand in for the real agent, which needs Azure DevOps to register.
# shellcheck disable=SC2030,SC2031 # each test runs in a subshell of its own: its exports are meant to stay there

TOKEN=tok-4f1b9c2e-never-print-me
SECRET=sp-secret-7d3a-never-print-me

setup() {
	here="$BATS_TEST_DIRNAME"
	start="$here/../linux/start.sh"
	export STANDIN_DIR="$BATS_TEST_TMPDIR/record"
	export AZP_AGENT_HOME="$BATS_TEST_TMPDIR/agent"
	mkdir -p "$STANDIN_DIR" "$AZP_AGENT_HOME/bin"
	: >"$STANDIN_DIR/calls"
	ln -s "$here/config.sh" "$AZP_AGENT_HOME/config.sh"
	ln -s "$here/run.sh" "$AZP_AGENT_HOME/run.sh"
	ln -s "$here/listener.sh" "$AZP_AGENT_HOME/bin/Agent.Listener"

	export AZP_URL=https://dev.azure.com/contoso
	export AZP_TOKEN="$TOKEN"
	export AZP_POOL=linux-pool
	export AZP_AGENT_NAME=linux-r42
	export AZP_RETRY_DELAY=0
	unset AZP_TOKEN_FILE AZP_WORK AZP_CLIENTID AZP_TENANTID AZP_CLIENTSECRET VSO_AGENT_IGNORE
}

calls() { cat "$STANDIN_DIR/calls"; }

# env_of N SCRIPT: the environment the Nth call (a line of calls) ran with.
env_of() { cat "$STANDIN_DIR/$1.$2.env"; }

# env_lacks N SCRIPT TEXT: the Nth call's environment does not hold TEXT.
env_lacks() {
	if grep -F -- "$3" "$STANDIN_DIR/$1.$2.env"; then
		echo "call $1 ($2) had that in its environment"
		return 1
	fi
}

# no_secret_anywhere: neither secret is in what start.sh printed, nor on any
# command line it ran.
no_secret_anywhere() {
	for s in "$TOKEN" "$SECRET"; do
		if [[ $output == *"$s"* ]]; then
			echo "a secret was printed: $output"
			return 1
		fi
		if grep -qF -- "$s" "$STANDIN_DIR/calls"; then
			echo "a secret was on a command line:"
			calls
			return 1
		fi
	done
}

# start_bg: start.sh in the background as job $pid, with job control on so it
# does not inherit the ignored SIGINT of background jobs, output in files.
start_bg() {
	set -m
	"$start" >"$BATS_TEST_TMPDIR/out" 2>&1 &
	pid=$!
	set +m
}

# wait_exit: waits for job $pid to end, for at most a minute, and sets status
# to its exit status; kills it when it does not end.
wait_exit() {
	local i
	for ((i = 0; i < 600; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			status=0
			wait "$pid" || status=$?
			output=$(cat "$BATS_TEST_TMPDIR/out")
			return 0
		fi
		sleep 0.1
	done
	kill -KILL -- "-$pid"
	echo "start.sh did not end within a minute of the signal"
	return 1
}

# wait_for FILE: until FILE exists, for at most a minute.
wait_for() {
	local i
	for ((i = 0; i < 600; i++)); do
		[[ -e $1 ]] && return 0
		sleep 0.1
	done
	echo "timed out waiting for $1"
	return 1
}

@test "registers unattended with --replace, runs --once, then unregisters" {
	run "$start"
	[ "$status" -eq 0 ]
	mapfile -t lines <"$STANDIN_DIR/calls"
	[ "${#lines[@]}" -eq 3 ]
	[ "${lines[0]}" = "config.sh --unattended --agent linux-r42 --url https://dev.azure.com/contoso --pool linux-pool --work _work --replace --acceptTeeEula --auth PAT" ]
	[ "${lines[1]}" = "run.sh --once" ]
	[ "${lines[2]}" = "config.sh remove --unattended --auth PAT" ]
	no_secret_anywhere
}

@test "the token reaches config.sh in its environment only, never run.sh" {
	run "$start"
	[ "$status" -eq 0 ]
	env_of 1 config | grep -qx "VSTS_AGENT_INPUT_TOKEN=$TOKEN"
	env_of 3 config | grep -qx "VSTS_AGENT_INPUT_TOKEN=$TOKEN"
	env_lacks 2 run "$TOKEN"
	env_lacks 1 config AZP_TOKEN=
	no_secret_anywhere
}

@test "the token variables are ignored as capabilities, after the user's own" {
	export VSO_AGENT_IGNORE=MY_VAR
	run "$start"
	[ "$status" -eq 0 ]
	env_of 2 run | grep -qx 'VSO_AGENT_IGNORE=MY_VAR,AZP_TOKEN,AZP_TOKEN_FILE,AZP_CLIENTSECRET,AZP_CLIENTSECRET_FILE,VSTS_AGENT_INPUT_TOKEN,VSTS_AGENT_INPUT_CLIENTSECRET'
}

@test "AZP_TOKEN_FILE wins over AZP_TOKEN, trimmed" {
	printf '  %s\n\n' "$TOKEN" >"$BATS_TEST_TMPDIR/token"
	export AZP_TOKEN_FILE="$BATS_TEST_TMPDIR/token"
	export AZP_TOKEN=the-other-token
	run "$start"
	[ "$status" -eq 0 ]
	env_of 1 config | grep -qx "VSTS_AGENT_INPUT_TOKEN=$TOKEN"
	env_lacks 2 run AZP_TOKEN_FILE=
	no_secret_anywhere
}

@test "a service principal registers with --auth SP, the secret in the environment only" {
	unset AZP_TOKEN
	export AZP_CLIENTID=11111111-2222-3333-4444-555555555555
	export AZP_TENANTID=66666666-7777-8888-9999-000000000000
	export AZP_CLIENTSECRET="$SECRET"
	run "$start"
	[ "$status" -eq 0 ]
	mapfile -t lines <"$STANDIN_DIR/calls"
	[ "${lines[0]}" = "config.sh --unattended --agent linux-r42 --url https://dev.azure.com/contoso --pool linux-pool --work _work --replace --acceptTeeEula --auth SP --clientid $AZP_CLIENTID --tenantid $AZP_TENANTID" ]
	[ "${lines[2]}" = "config.sh remove --unattended --auth SP --clientid $AZP_CLIENTID --tenantid $AZP_TENANTID" ]
	env_of 1 config | grep -qx "VSTS_AGENT_INPUT_CLIENTSECRET=$SECRET"
	env_lacks 2 run "$SECRET"
	no_secret_anywhere
}

@test "a missing AZP_URL fails before anything runs, saying so" {
	unset AZP_URL
	run "$start"
	[ "$status" -eq 1 ]
	[[ $output == *"AZP_URL is not set"* ]]
	[ ! -s "$STANDIN_DIR/calls" ]
}

@test "a missing token fails before anything runs, saying what to set" {
	unset AZP_TOKEN
	run "$start"
	[ "$status" -eq 1 ]
	[[ $output == *"AZP_TOKEN is not set"*"AZP_TOKEN_FILE"* ]]
	[ ! -s "$STANDIN_DIR/calls" ]
}

@test "an empty or missing token file fails, naming AZP_TOKEN_FILE" {
	: >"$BATS_TEST_TMPDIR/empty"
	AZP_TOKEN_FILE="$BATS_TEST_TMPDIR/empty" run "$start"
	[ "$status" -eq 1 ]
	[[ $output == *"AZP_TOKEN_FILE="*"the file is empty"* ]]
	AZP_TOKEN_FILE="$BATS_TEST_TMPDIR/nothing-here" run "$start"
	[ "$status" -eq 1 ]
	[[ $output == *"AZP_TOKEN_FILE="*"no readable file"* ]]
	[ ! -s "$STANDIN_DIR/calls" ]
	no_secret_anywhere
}

@test "a token and a service principal together are refused" {
	export AZP_CLIENTID=id AZP_TENANTID=tenant AZP_CLIENTSECRET="$SECRET"
	run "$start"
	[ "$status" -eq 1 ]
	[[ $output == *"not both"* ]]
	no_secret_anywhere
}

@test "a failed registration exits with config.sh's status and runs nothing else" {
	export STANDIN_CONFIG_EXIT=7
	run "$start"
	[ "$status" -eq 7 ]
	[[ $output == *"config.sh failed with exit status 7"* ]]
	[ "$(calls)" = "config.sh --unattended --agent linux-r42 --url https://dev.azure.com/contoso --pool linux-pool --work _work --replace --acceptTeeEula --auth PAT" ]
	no_secret_anywhere
}

@test "the agent's exit status is the script's, after unregistering" {
	export STANDIN_RUN_EXITS=2
	run "$start"
	[ "$status" -eq 2 ]
	[ "$(calls | tail -n 1)" = "config.sh remove --unattended --auth PAT" ]
}

@test "an agent that updated itself (exit 4) is started again for its job" {
	export STANDIN_RUN_EXITS="4 0"
	run "$start"
	[ "$status" -eq 0 ]
	[ "$(calls | grep -c '^run.sh --once$')" -eq 2 ]
	[ "$(calls | grep -c '^config.sh remove')" -eq 1 ]
	[[ $output == *"updated itself"* ]]
}

@test "an agent that keeps updating (exit 3) is restarted a bounded number of times" {
	export STANDIN_RUN_EXITS=3
	run "$start"
	[ "$status" -eq 3 ]
	[ "$(calls | grep -c '^run.sh')" -eq 4 ]
	[[ $output == *"exited for an update 4 times in a row"* ]]
	[ "$(calls | tail -n 1)" = "config.sh remove --unattended --auth PAT" ]
}

@test "a failing unregister is retried until it succeeds" {
	export STANDIN_REMOVE_FAIL=2
	run "$start"
	[ "$status" -eq 0 ]
	[ "$(calls | grep -c '^config.sh remove')" -eq 3 ]
	[[ $output == *"unregistered linux-r42"* ]]
}

@test "unregistering gives up after five attempts and keeps the agent's status" {
	export STANDIN_REMOVE_FAIL=always STANDIN_RUN_EXITS=0
	run "$start"
	[ "$status" -eq 0 ]
	[ "$(calls | grep -c '^config.sh remove')" -eq 5 ]
	[[ $output == *"could not unregister linux-r42 after 5 attempts"* ]]
	no_secret_anywhere
}

@test "TERM reaches the running agent, then the agent is unregistered and the script exits 143" {
	export STANDIN_RUN_BLOCK=1
	start_bg
	wait_for "$STANDIN_DIR/running"
	kill -TERM "$pid"
	wait_exit
	[ "$status" -eq 143 ]
	mapfile -t lines <"$STANDIN_DIR/calls"
	[ "${lines[1]}" = "run.sh --once" ]
	[ "${lines[2]}" = "agent got TERM" ]
	[ "${lines[3]}" = "config.sh remove --unattended --auth PAT" ]
	[ "${#lines[@]}" -eq 4 ]
	no_secret_anywhere
}

@test "INT reaches the running agent, then the agent is unregistered and the script exits 130" {
	export STANDIN_RUN_BLOCK=1
	start_bg
	wait_for "$STANDIN_DIR/running"
	kill -INT "$pid"
	wait_exit
	[ "$status" -eq 130 ]
	calls | grep -qx 'agent got INT'
	[ "$(calls | tail -n 1)" = "config.sh remove --unattended --auth PAT" ]
}

@test "arguments go to run.sh after --once; an absolute AZP_WORK is created" {
	export AZP_WORK="$BATS_TEST_TMPDIR/work/deep"
	run "$start" --diag
	[ "$status" -eq 0 ]
	calls | grep -qx 'run.sh --once --diag'
	calls | grep -q -- "--work $AZP_WORK "
	[ -d "$AZP_WORK" ]
}
