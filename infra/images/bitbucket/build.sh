#!/bin/sh
# Builds the Bitbucket runner image that reads its secret from a file:
# FROM the runner image (Atlassian's unless given), whose own entrypoint and
# command become the command secret-env.sh runs. Needs docker and jq.
#
#   build.sh [-t TAG] [RUNNER_IMAGE]
set -eu

tag=bitbucket-runner:agentscaler
if [ "${1:-}" = "-t" ]; then
  tag=${2:?build.sh: -t needs a tag}
  shift 2
fi
base=${1:-docker-public.packages.atlassian.com/sox/atlassian/bitbucket-pipelines-runner:1}
dir=$(dirname "$0")

docker image inspect "$base" >/dev/null 2>&1 || docker pull "$base"
cmd=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$base" | jq -cs '(.[0] // []) + (.[1] // [])')
if [ "$cmd" = "[]" ]; then
  echo "build.sh: $base has neither an ENTRYPOINT nor a CMD to run" >&2
  exit 1
fi
{ cat "$dir/Dockerfile"; printf 'CMD %s\n' "$cmd"; } | docker build --network none --build-arg "RUNNER_IMAGE=$base" -t "$tag" -f - "$dir"
echo "build.sh: $tag runs $cmd after reading OAUTH_CLIENT_SECRET_FILE"
