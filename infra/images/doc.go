// Package images holds no code: it is the home of the agent container images
// (linux/, windows/), the start scripts that keep the agent container contract
// (docs/architecture.md, "The agent environment"), and their checks. Its
// tests run shellcheck on every
// shell script of the repository, hadolint on the Dockerfiles when it is
// installed, the start script under bats against stand-ins for the agent, and
// parse every YAML and JSON file of infra/images and infra/pipelines, so that
// `go test ./...` (and `make test`) runs them all.
package images
