package testagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Runner mode: with RUNNER_UUID set, the test agent plays a Bitbucket
// Pipelines runner against internal/demo/bbemu, with the container
// contract of Atlassian's runner image:
//
//	RUNNER_UUID                 the runner's uuid (selects runner mode)
//	OAUTH_CLIENT_ID             its OAuth client id
//	OAUTH_CLIENT_SECRET_FILE    a file holding its OAuth client secret; wins over
//	OAUTH_CLIENT_SECRET         the secret itself
//	WORKING_DIRECTORY           where each step's files go, removed after the step (default /tmp)
//	BITBUCKET_URL               the emulator's base URL (Atlassian's runner knows bitbucket.org)
//	RUNNER_POLL_INTERVAL        how often it asks for a step (default 250ms)
//
// It gets a token with its OAuth client, then polls for a step, runs it
// for the time the step names, reports it finished, and polls again, as
// Atlassian's runner serves step after step. It exits 0 once the emulator
// no longer knows it (the runner was deleted), 2 when ctx ends, 1 on an
// error. Neither output ever holds the secret.
const runnerPollDefault = 250 * time.Millisecond

type runnerConfig struct {
	base, uuid, clientID, secret, work string
	poll                               time.Duration
}

func loadRunnerConfig(getenv func(string) string) (runnerConfig, error) {
	c := runnerConfig{base: strings.TrimRight(getenv("BITBUCKET_URL"), "/"), uuid: getenv("RUNNER_UUID"),
		clientID: getenv("OAUTH_CLIENT_ID"), secret: getenv("OAUTH_CLIENT_SECRET"), work: getenv("WORKING_DIRECTORY"), poll: runnerPollDefault}
	if f := getenv("OAUTH_CLIENT_SECRET_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("OAUTH_CLIENT_SECRET_FILE: %w", err)
		}
		c.secret = strings.TrimSpace(string(b))
	}
	if c.work == "" {
		c.work = "/tmp"
	}
	if s := getenv("RUNNER_POLL_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return c, errors.New("RUNNER_POLL_INTERVAL: not a positive duration")
		}
		c.poll = d
	}
	switch {
	case c.base == "":
		return c, errors.New("BITBUCKET_URL is required in runner mode")
	case c.clientID == "" || c.secret == "":
		return c, errors.New("OAUTH_CLIENT_ID and OAUTH_CLIENT_SECRET (or _FILE) are required")
	}
	return c, nil
}

// errRunnerGone: the emulator no longer knows the runner.
var errRunnerGone = errors.New("the runner was deleted")

type stepRun struct {
	UUID      string `json:"uuid"`
	RunMillis int64  `json:"run_ms"`
}

type bbRunner struct {
	cfg   runnerConfig
	hc    *http.Client
	log   *slog.Logger
	token string
}

// runRunner is runner mode's Main.
func runRunner(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := loadRunnerConfig(getenv)
	if err != nil {
		return fail(stderr, cfg.secret, err)
	}
	r := &bbRunner{cfg: cfg, hc: &http.Client{Timeout: 10 * time.Second}, log: slog.New(slog.NewTextHandler(stdout, nil)).With("runner", cfg.uuid)}
	_, sock := os.Stat("/var/run/docker.sock")
	r.log.Info("runner starting", "engine_socket", sock == nil, "working_directory", cfg.work)
	for {
		err := r.serveOne(ctx)
		switch {
		case errors.Is(err, errRunnerGone):
			r.log.Info("runner deleted; exiting")
			return exitOK
		case ctx.Err() != nil:
			return exitInterrupted
		case err != nil:
			r.log.Warn("poll failed", "error", strings.ReplaceAll(err.Error(), cfg.secret, "[secret]"))
		}
		select {
		case <-ctx.Done():
			return exitInterrupted
		case <-time.After(r.cfg.poll):
		}
	}
}

// serveOne polls once and runs the step it is handed, if any.
func (r *bbRunner) serveOne(ctx context.Context) error {
	var step stepRun
	got, err := r.call(ctx, "/emu/runner/poll", &step)
	if err != nil || !got {
		return err
	}
	r.log.Info("step started", "step", step.UUID)
	dir := filepath.Join(r.cfg.work, strings.Trim(r.cfg.uuid, "{}"))
	if err := os.MkdirAll(dir, 0o700); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "step"), []byte(step.UUID), 0o600)
	}
	// The runner keeps polling while the step runs, which is its heartbeat:
	// a runner that falls silent is offline, and its step fails.
	end := time.After(time.Duration(step.RunMillis) * time.Millisecond)
	beat := time.NewTicker(r.cfg.poll)
	defer beat.Stop()
running:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-end:
			break running
		case <-beat.C:
			if _, err := r.call(ctx, "/emu/runner/poll", &stepRun{}); errors.Is(err, errRunnerGone) {
				return err
			}
		}
	}
	// The next step starts from a clean working directory.
	_ = os.RemoveAll(dir)
	if _, err := r.call(ctx, "/emu/runner/steps/"+url.PathEscape(step.UUID)+"/complete", nil); err != nil {
		return err
	}
	r.log.Info("step finished", "step", step.UUID)
	return nil
}

// call posts to the emulator with the runner's token, getting one first,
// and decodes a 200 answer into out; it reports whether one came.
func (r *bbRunner) call(ctx context.Context, path string, out any) (bool, error) {
	for attempt := 0; attempt < 2; attempt++ {
		if r.token == "" {
			if err := r.authenticate(ctx); err != nil {
				return false, err
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.base+path, nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("Authorization", "Bearer "+r.token)
		resp, err := r.hc.Do(req)
		if err != nil {
			return false, err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusUnauthorized:
			r.token = "" // expired, or the runner is gone: the token call tells
			continue
		case resp.StatusCode == http.StatusNoContent:
			return false, nil
		case resp.StatusCode != http.StatusOK:
			return false, fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		if out != nil {
			return true, json.Unmarshal(body, out)
		}
		return true, nil
	}
	return false, errRunnerGone
}

func (r *bbRunner) authenticate(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.cfg.base+"/site/oauth2/access_token",
		strings.NewReader("grant_type=client_credentials"))
	if err != nil {
		return err
	}
	req.SetBasicAuth(r.cfg.clientID, r.cfg.secret)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := r.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized {
		return errRunnerGone // its OAuth client went with it
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token: HTTP %d", resp.StatusCode)
	}
	r.token = tok.AccessToken
	return nil
}
