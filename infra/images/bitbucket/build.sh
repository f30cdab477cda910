#!/bin/sh
# Builds the Bitbucket runner image that reads its secret from a file:
# FROM the runner image (the Dockerfile's RUNNER_IMAGE unless given), whose
# own entrypoint and command become the command secret-env.sh runs. Needs
# docker and jq.
#
#   build.sh [-t TAG] [RUNNER_IMAGE]
set -eu

usage="usage: build.sh [-t TAG] [RUNNER_IMAGE]"
dir=$(dirname "$0")
tag=bitbucket-runner:agentscaler
if [ "${1:-}" = "-t" ]; then
  [ "$#" -ge 2 ] || { echo "build.sh: -t needs a tag; $usage" >&2; exit 2; }
  tag=$2
  shift 2
fi
[ "$#" -le 1 ] || { echo "build.sh: unexpected arguments: $*; $usage" >&2; exit 2; }
base=${1:-$(sed -n 's/^ARG RUNNER_IMAGE=//p' "$dir/Dockerfile")}

docker image inspect "$base" >/dev/null 2>&1 || docker pull "$base"
config=$(docker image inspect -f '{{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$base")
cmd=$(printf '%s' "$config" | jq -cs '(.[0] // []) + (.[1] // [])')
if [ "$cmd" = "[]" ]; then
  echo "build.sh: $base has neither an ENTRYPOINT nor a CMD to run" >&2
  exit 1
fi
{ cat "$dir/Dockerfile"; printf 'CMD %s\n' "$cmd"; } | docker build --network none --build-arg "RUNNER_IMAGE=$base" -t "$tag" -f - "$dir"
echo "build.sh: $tag runs $cmd after reading OAUTH_CLIENT_SECRET_FILE"
