// Package deploy holds the checks of the deployment files under infra/: that
// every YAML and JSON file parses; that the Kubernetes manifests, and the
// Helm chart rendered by the real helm CLI with its defaults and with every
// value set, are accepted by a real API server (server-side dry run), run
// what the binary reads and hold no secret; that the app settings of the
// Bicep template and the environment of the SAM template are exactly what
// the binary reads and yield a configuration it accepts; and that
// infra/azure/create-service-hook.sh sends the subscription Azure DevOps
// expects without exposing its secrets. It has no code of its own: the
// checks are its tests.
package deploy
