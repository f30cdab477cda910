#!/bin/sh
# Runs Atlassian's Bitbucket Pipelines runner with its OAuth client secret
# read from the file agentscaler's Docker provider copies into the container
# (OAUTH_CLIENT_SECRET_FILE): the runner reads OAUTH_CLIENT_SECRET from its
# environment, and a variable handed to `docker create` shows in `docker
# inspect`, to anyone with the engine's socket and so to every step. Read
# here, the secret is only in this process's environment and the runner's.
# The arguments are the runner image's own command (build.sh sets them).
set -eu

if [ -n "${OAUTH_CLIENT_SECRET_FILE:-}" ]; then
  if [ ! -r "$OAUTH_CLIENT_SECRET_FILE" ] || [ ! -s "$OAUTH_CLIENT_SECRET_FILE" ]; then
    echo "secret-env: OAUTH_CLIENT_SECRET_FILE names no readable, non-empty file; check the pool's Docker token_file delivery" >&2
    exit 1
  fi
  OAUTH_CLIENT_SECRET=$(cat "$OAUTH_CLIENT_SECRET_FILE")
  export OAUTH_CLIENT_SECRET
fi
unset OAUTH_CLIENT_SECRET_FILE
if [ "$#" -eq 0 ]; then
  echo "secret-env: no command to run; build the image with build.sh, which passes the runner image's own" >&2
  exit 1
fi
exec "$@"
