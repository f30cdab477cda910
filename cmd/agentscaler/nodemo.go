//go:build nodemo

package main

import (
	"context"
	"errors"
	"io"
)

// The nodemo build tag leaves the demo world (the Azure DevOps emulator and
// the stand-in agent) out of a binary that serves real organizations, such
// as the Functions and Lambda packages.
const testAgentCommand = "test-agent"

var errNoDemo = errors.New("this binary was built with -tags nodemo, which leaves the demo out; build without it to run the demo")

func cmdDemo(context.Context, []string, io.Writer, io.Writer, func(string) string) error {
	return errNoDemo
}

func cmdTestAgent(context.Context, io.Writer, io.Writer, func(string) string) error {
	return errNoDemo
}
