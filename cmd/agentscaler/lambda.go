package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/agentscaler/agentscaler/functions"
)

// lambdaRuntimeEnv is set by AWS Lambda (and its emulators) to the Runtime
// API address; its presence means this process is a Lambda function.
const lambdaRuntimeEnv = "AWS_LAMBDA_RUNTIME_API"

// initErrorTimeout bounds the report of a failed start to the Runtime API.
const initErrorTimeout = 5 * time.Second

// runLambda serves Lambda invocations until the runtime stops the process.
// Configuration comes as for `serve`: the file AGENTSCALER_CONFIG names, or
// environment variables alone; secrets are environment variables that the
// deployment resolves from SSM or Secrets Manager. Logs follow the
// function's logging configuration (AWS_LAMBDA_LOG_FORMAT and _LEVEL).
func runLambda(ctx context.Context, stderr io.Writer, getenv func(string) string) error {
	a, err := load(ctx, lambdaLogging(getenv), stderr, getenv, deps{})
	if err != nil {
		// Reported so that Lambda shows why the function failed to start,
		// instead of a bare exit.
		if rerr := reportInitError(ctx, getenv(lambdaRuntimeEnv), err); rerr != nil {
			return fmt.Errorf("%w (and reporting it to the Lambda Runtime API failed: %v)", err, rerr)
		}
		return err
	}
	a.log.Info("serving Lambda invocations", "version", version, "pools", len(a.cfg.Pools))
	l := &functions.Lambda{
		Handler:    a.handler(),
		Reconciler: a.scaler,
		Pending:    a.scaler,
		Logger:     a.log,
	}
	// Answered as JSON: lambda.Start sends a json.RawMessage as it is.
	lambda.Start(func(ctx context.Context, ev json.RawMessage) (json.RawMessage, error) {
		out, err := l.Invoke(ctx, ev)
		if a.pusher != nil {
			// Lambda freezes the process once this returns, so the
			// background pusher would never run: push now, within the
			// invocation's deadline.
			if perr := a.pusher.Push(ctx); perr != nil {
				a.log.Warn("metrics push failed", "pushgateway", a.pusher.String(), "error", perr)
			}
		}
		return out, err
	})
	return nil // not reached: lambda.Start exits the process when the runtime loop ends
}

// lambdaLogging maps the function's logging configuration onto the flags
// every command has: JSON or text, and the level (Lambda's TRACE and FATAL
// become debug and error).
func lambdaLogging(getenv func(string) string) common {
	c := common{logLevel: "info", logFormat: "text"}
	if strings.EqualFold(getenv("AWS_LAMBDA_LOG_FORMAT"), "json") {
		c.logFormat = "json"
	}
	switch lvl := strings.ToLower(getenv("AWS_LAMBDA_LOG_LEVEL")); lvl {
	case "trace", "debug":
		c.logLevel = "debug"
	case "warn", "error":
		c.logLevel = lvl
	case "fatal":
		c.logLevel = "error"
	}
	return c
}

// reportInitError posts a start failure to the Runtime API's init/error
// endpoint, as a custom runtime must. The message names configuration keys,
// never secret values.
func reportInitError(ctx context.Context, api string, cause error) error {
	body, err := json.Marshal(map[string]any{
		"errorMessage": cause.Error(),
		"errorType":    "Runtime.ConfigurationError",
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, initErrorTimeout)
	defer cancel()
	url := "http://" + api + "/2018-06-01/runtime/init/error"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Lambda-Runtime-Function-Error-Type", "Runtime.ConfigurationError")
	// Never through a proxy from the environment: the Runtime API is local.
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}
