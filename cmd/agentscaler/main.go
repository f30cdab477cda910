// Command agentscaler starts ephemeral Azure Pipelines agents the moment a
// job is queued and removes them when the job is done. One binary serves
// every host: the Azure Functions custom handler, AWS Lambda (run with no
// arguments where AWS_LAMBDA_RUNTIME_API is set), a plain service, and the
// command line.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `agentscaler: ephemeral Azure Pipelines agents, started when a job is queued.

Usage:
  agentscaler <command> [flags]

Commands:
  serve      serve service hooks, metrics and the reconcile timer over HTTP
  reconcile  run one reconcile pass over every pool (--dry-run to only print the plan)
  simulate   replay a job trace on virtual time: wait and cost per policy (webhook, poll, static)
  demo       the whole loop on this machine: built-in Azure DevOps emulator and agents
  validate   check the configuration and exit
  check-image  check that an image can serve as an agent image (docs/images.md), on a Docker engine
  version    print the version

Configuration comes from --config FILE, else $AGENTSCALER_CONFIG, else from
environment variables alone (AZP_URL, AZP_TOKEN, AZP_POOL, AGENTSCALER_*).
Run "agentscaler <command> --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	if err != nil {
		var st exitStatus
		if !errors.Is(err, flag.ErrHelp) && !errors.As(err, &st) {
			fmt.Fprintln(os.Stderr, "agentscaler:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode is 2 for usage errors, a command's own status when it chose
// one, and 1 for everything else.
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	var st exitStatus
	if errors.As(err, &st) {
		return int(st)
	}
	return 1
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// run is main without the process: tests call it directly.
// Lambda runs the binary (as bootstrap) with no arguments: that, with the
// Runtime API address set, selects the Lambda host.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	if len(args) == 0 && getenv(lambdaRuntimeEnv) != "" {
		return runLambda(ctx, stderr, getenv)
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{"no command given"}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, stdout, stderr, getenv)
	case "reconcile":
		return cmdReconcile(ctx, rest, stdout, stderr, getenv)
	case "simulate":
		return cmdSimulate(ctx, rest, stdout, stderr, getenv)
	case "demo":
		return cmdDemo(ctx, rest, stdout, stderr, getenv)
	case "validate":
		return cmdValidate(ctx, rest, stdout, stderr, getenv)
	case "check-image":
		return cmdCheckImage(ctx, rest, stdout, stderr, getenv)
	case testAgentCommand:
		return cmdTestAgent(ctx, stdout, stderr, getenv)
	case "version", "--version":
		fmt.Fprintf(stdout, "agentscaler %s %s %s/%s\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Sprintf("unknown command %q", cmd)}
}

// common holds the flags every command shares.
type common struct {
	config    string
	logLevel  string
	logFormat string
}

func newFlags(name, summary string, stderr io.Writer, c *common) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: agentscaler %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	fs.StringVar(&c.config, "config", "", "configuration file (default $AGENTSCALER_CONFIG, else environment variables only)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

func (c common) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", c.logLevel)}
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(c.logFormat) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", c.logFormat)}
}

// exitStatus is an error that only carries a process exit code: the command
// has already said what went wrong.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }
