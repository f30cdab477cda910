#!/usr/bin/env bash
# Creates the Azure DevOps service hook subscription that posts "Run job state changed" events
# (ms.vss-pipelines.job-state-changed-event) of one project to agentscaler's webhook, with basic auth. Run it again
# and it updates the subscription it made before (same project, same URL) instead of adding a second one, so a
# changed webhook password is rolled out by running it again.
#
# Everything comes from the environment:
#   AZP_URL                       organization URL: https://dev.azure.com/<org>
#   AZDO_PROJECT                  the project whose pipelines use the pool (name or id); run once per project
#   AGENTSCALER_HOOK_URL          the webhook: https://<function app>.azurewebsites.net/api/webhook/azuredevops
#   AZP_TOKEN                     a PAT with the scopes Service Hooks (Read & write) and Project and Team (Read)
#   AGENTSCALER_WEBHOOK_PASSWORD  the password agentscaler expects
#   AGENTSCALER_WEBHOOK_USERNAME  the user name it expects (default azdo)
#
# The secrets never reach a command line (where ps and /proc show them) and are never printed: curl reads the PAT
# from a config on a file descriptor, jq reads the password from its environment, and the request body goes to curl
# on standard input. Needs bash, curl and jq.
set -euo pipefail

readonly api_version=7.1
readonly event_type=ms.vss-pipelines.job-state-changed-event

die() {
	printf 'create-service-hook: %s\n' "$*" >&2
	exit 1
}

require() {
	local name=$1 what=$2
	[[ -n ${!name:-} ]] || die "$name is not set: $what"
}

for tool in curl jq; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is required; install it (Debian: apt-get install $tool)"
done

require AZP_URL "the organization URL, such as https://dev.azure.com/contoso"
require AZDO_PROJECT "the project (name or id) whose pipeline jobs should start agents"
require AGENTSCALER_HOOK_URL "the webhook URL, such as https://<app>.azurewebsites.net/api/webhook/azuredevops (the deployment's webhookUrl output)"
require AZP_TOKEN "a PAT with Service Hooks (Read & write) and Project and Team (Read)"
require AGENTSCALER_WEBHOOK_PASSWORD "the webhook password agentscaler checks (the one in its Key Vault or Secret)"
export AGENTSCALER_WEBHOOK_USERNAME=${AGENTSCALER_WEBHOOK_USERNAME:-azdo}
export AGENTSCALER_HOOK_URL AGENTSCALER_WEBHOOK_PASSWORD

org=${AZP_URL%/}
# Plain http would send the PAT in the clear; it is accepted only on this machine (tests, an SSH tunnel).
case $org in
https://*) ;;
http://127.0.0.1[:/]* | http://localhost[:/]* | http://\[::1\][:/]*) ;;
*) die "AZP_URL must be an https:// URL (got a value starting with ${org%%://*}://)" ;;
esac
case $AGENTSCALER_HOOK_URL in
https://* | http://127.0.0.1[:/]* | http://localhost[:/]*) ;;
*) die "AGENTSCALER_HOOK_URL must be an https:// URL: Azure DevOps would send the webhook password in the clear" ;;
esac

# The curl config line holding the PAT, as basic auth with an empty user. Inside double quotes curl unescapes \\ and \".
auth_config() {
	local token=${AZP_TOKEN//\\/\\\\}
	token=${token//\"/\\\"}
	printf 'user = ":%s"\n' "$token"
}

# api METHOD PATH [BODY]: calls the REST API and prints the response body; fails naming the call and Azure DevOps'
# own message. printf is a shell builtin, so the PAT passes through the process substitution without an exec.
api() {
	local method=$1 path=$2 body=${3:-} out status msg
	local url="$org/_apis/$path"
	local args=(--silent --show-error --max-time 30 --request "$method" --header 'Accept: application/json'
		--write-out '\n%{http_code}')
	# The process substitution stays on curl's own command: bash closes its descriptor when that command ends.
	if [[ -n $body ]]; then
		args+=(--header 'Content-Type: application/json' --data-binary @-)
		out=$(curl "${args[@]}" --config <(auth_config) "$url" <<<"$body") || die "$method $url: curl failed (see above)"
	else
		out=$(curl "${args[@]}" --config <(auth_config) "$url") || die "$method $url: curl failed (see above)"
	fi
	status=${out##*$'\n'}
	out=${out%$'\n'*}
	case $status in
	2[0-9][0-9])
		# Azure DevOps answers a refused PAT with 203 and a sign-in page.
		if [[ $status == 203 ]] || ! jq -e . >/dev/null 2>&1 <<<"$out"; then
			die "$method $url: HTTP $status without JSON: the PAT was refused; check AZP_TOKEN and its scopes"
		fi
		printf '%s\n' "$out"
		;;
	401 | 403) die "$method $url: HTTP $status: the PAT may not do this; it needs Service Hooks (Read & write) and Project and Team (Read)" ;;
	*)
		msg=$(jq -r '.message // empty' 2>/dev/null <<<"$out" || true)
		msg=${msg//"$AZP_TOKEN"/<redacted>}
		msg=${msg//"$AGENTSCALER_WEBHOOK_PASSWORD"/<redacted>}
		die "$method $url: HTTP $status${msg:+: $msg}"
		;;
	esac
}

project=$(jq -rn '$ENV.AZDO_PROJECT | @uri')
project_id=$(api GET "projects/$project?api-version=$api_version" | jq -r '.id // empty')
[[ -n $project_id ]] || die "project $AZDO_PROJECT has no id in the answer of $org; check AZDO_PROJECT"
export project_id

# The subscription agentscaler needs; Minimal resource details are enough, it asks the REST API for the rest.
body=$(jq -n --arg event "$event_type" '{
	publisherId: "pipelines",
	eventType: $event,
	resourceVersion: "5.1-preview.1",
	consumerId: "webHooks",
	consumerActionId: "httpRequest",
	publisherInputs: {projectId: $ENV.project_id},
	consumerInputs: {
		url: $ENV.AGENTSCALER_HOOK_URL,
		basicAuthUsername: $ENV.AGENTSCALER_WEBHOOK_USERNAME,
		basicAuthPassword: $ENV.AGENTSCALER_WEBHOOK_PASSWORD,
		resourceDetailsToSend: "minimal",
		messagesToSend: "none",
		detailedMessagesToSend: "none"
	}
}')

existing=$(api GET "hooks/subscriptions?publisherId=pipelines&eventType=$event_type&consumerId=webHooks&consumerActionId=httpRequest&api-version=$api_version" |
	jq -r '[.value[]? | select(.publisherInputs.projectId == $ENV.project_id and .consumerInputs.url == $ENV.AGENTSCALER_HOOK_URL) | .id] | first // empty')

if [[ -n $existing ]]; then
	id=$(api PUT "hooks/subscriptions/$existing?api-version=$api_version" "$(jq --arg id "$existing" '. + {id: $id}' <<<"$body")" | jq -r .id)
	printf 'updated service hook subscription %s: %s events of project %s to %s\n' "$id" "$event_type" "$AZDO_PROJECT" "$AGENTSCALER_HOOK_URL"
else
	id=$(api POST "hooks/subscriptions?api-version=$api_version" "$body" | jq -r .id)
	printf 'created service hook subscription %s: %s events of project %s to %s\n' "$id" "$event_type" "$AZDO_PROJECT" "$AGENTSCALER_HOOK_URL"
fi
