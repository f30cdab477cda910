// Package testagent is a small stand-in for the Azure Pipelines agent, for
// tests and `agentscaler demo`. It keeps the agent container contract
// (docs/architecture.md) and makes the agent's REST calls against Azure
// DevOps, or anything serving the same calls such as internal/demo/adoemu: it
// registers with `config --replace` semantics, opens a session, long-polls
// for a job, takes exactly one (as `run --once` does), reports it started
// and finished, closes the session and unregisters. It runs no steps: it
// holds the job for the run time the job message names (variable
// agentscaler.emulator.runSeconds, which the emulator sets from the job's
// Duration; 0 when absent) and reports it succeeded.
//
// Main reads its configuration through getenv:
//
//	AZP_URL                 organization URL, http or https (required)
//	AZP_TOKEN_FILE          a file holding the PAT, read and trimmed; wins over AZP_TOKEN
//	AZP_TOKEN               the PAT, when AZP_TOKEN_FILE is not set
//	AZP_POOL                agent pool name (default "Default")
//	AZP_AGENT_NAME          agent name (default: the host name)
//	AZP_WORK                work folder, created when missing (default "_work")
//	AZP_AGENT_VERSION       the Agent.Version to report (default 4.275.0)
//	AZP_AGENT_IDLE_TIMEOUT  how long to wait for a job before unregistering
//	                        and exiting 0 (Go duration, default 10m), so an
//	                        agent never given a job does not run forever
//	VSO_AGENT_IGNORE        comma-separated variable names not to report as
//	                        capabilities
//
// The system capabilities are the process environment, as the agent reports
// it, minus AZP_TOKEN, AZP_TOKEN_FILE, AZP_CLIENTSECRET and what
// VSO_AGENT_IGNORE names, plus Agent.Name, Agent.OS, Agent.OSArchitecture
// and Agent.Version. A service principal (AZP_CLIENTID) is not supported.
//
// Progress goes to stdout as structured log lines (registered, session
// opened, job received, started, finished, session closed, unregistered);
// a failure is one line on stderr. Neither ever holds the token. Every call
// has a deadline. Transient failures of the message poll are retried until
// the idle timeout; any other failure ends the run, after unregistering.
//
// Exit codes: 0 when the job ran (or no job came within the idle timeout);
// 1 on an error; 2 when ctx was cancelled (SIGTERM in the command), after
// reporting a running job canceled, closing the session and unregistering.
package testagent

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	// defaultAgentVersion is config.DefaultAgentVersion, the agent version
	// the autoscaler declares for a pool by default, so that Agent.Version
	// demands match the pool and its agents alike. It is copied, not
	// imported: this package keeps to the standard library, so that it
	// builds as a small static binary for a FROM scratch image.
	defaultAgentVersion = "4.275.0"
	defaultPool         = "Default"
	defaultWork         = "_work"
	defaultIdleTimeout  = 10 * time.Minute

	// runSecondsVariable names the job's run time in the job message.
	runSecondsVariable = "agentscaler.emulator.runSeconds"
	// jobMessageType is the message type of a pipeline job.
	jobMessageType = "PipelineAgentJobRequest"
)

const (
	exitOK          = 0
	exitError       = 1
	exitInterrupted = 2
)

// errSessionGone marks a session the server no longer knows: the
// registration was replaced or removed, so it is not ours to unregister.
var errSessionGone = errors.New("the session was closed by the server")

type config struct {
	orgURL      string // without a trailing slash
	token       string
	tokenName   string // how messages name the token's source
	pool        string
	name        string
	work        string
	version     string
	idleTimeout time.Duration
	ignore      string // VSO_AGENT_IGNORE
}

// Main runs the test agent and returns the process exit code. See the
// package doc for the environment it reads and the codes it returns.
func Main(ctx context.Context, getenv func(string) string, stdout, stderr io.Writer) int {
	if jitMode(getenv) { // a GitHub just-in-time runner (jitrunner.go)
		return runJIT(ctx, getenv, stdout, stderr)
	}
	if getenv("RUNNER_UUID") != "" { // a Bitbucket runner (runner.go)
		return runRunner(ctx, getenv, stdout, stderr)
	}
	return run(ctx, getenv, os.Environ(), stdout, stderr)
}

// run is Main with the environment the capabilities are taken from.
func run(ctx context.Context, getenv func(string) string, environ []string, stdout, stderr io.Writer) int {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fail(stderr, "", err)
	}
	if err := os.MkdirAll(cfg.work, 0o755); err != nil {
		return fail(stderr, cfg.token, fmt.Errorf("AZP_WORK: cannot create the work folder: %w", err))
	}
	a := &agent{
		cfg:  cfg,
		caps: systemCapabilities(environ, cfg),
		srv:  newServer(cfg),
		log:  slog.New(slog.NewTextHandler(stdout, nil)),
	}
	code, err := a.run(ctx)
	if err != nil {
		fail(stderr, cfg.token, err)
	}
	return code
}

// fail writes err as one line on w, the token blanked out should it ever
// appear, and returns exitError.
func fail(w io.Writer, token string, err error) int {
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if token != "" {
		msg = strings.ReplaceAll(msg, token, "[token]")
	}
	fmt.Fprintln(w, "testagent: "+msg)
	return exitError
}

func loadConfig(getenv func(string) string) (config, error) {
	cfg := config{
		pool:    strings.TrimSpace(getenv("AZP_POOL")),
		name:    strings.TrimSpace(getenv("AZP_AGENT_NAME")),
		work:    getenv("AZP_WORK"),
		version: strings.TrimSpace(getenv("AZP_AGENT_VERSION")),
		ignore:  getenv("VSO_AGENT_IGNORE"),
	}
	var err error
	if cfg.orgURL, err = orgURL(getenv("AZP_URL")); err != nil {
		return cfg, err
	}
	if cfg.token, cfg.tokenName, err = token(getenv); err != nil {
		return cfg, err
	}
	if cfg.pool == "" {
		cfg.pool = defaultPool
	}
	if cfg.name == "" {
		if cfg.name, err = os.Hostname(); err != nil || cfg.name == "" {
			return cfg, fmt.Errorf("AZP_AGENT_NAME is not set and the host name is unknown (%v): set AZP_AGENT_NAME", err)
		}
	}
	if cfg.work == "" {
		cfg.work = defaultWork
	}
	if cfg.version == "" {
		cfg.version = defaultAgentVersion
	}
	cfg.idleTimeout = defaultIdleTimeout
	if v := strings.TrimSpace(getenv("AZP_AGENT_IDLE_TIMEOUT")); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("AZP_AGENT_IDLE_TIMEOUT %q: want a positive duration such as 10m or 90s", v)
		}
		cfg.idleTimeout = d
	}
	return cfg, nil
}

const orgURLExample = "https://dev.azure.com/<organization>"

// orgURL checks AZP_URL and returns it without a trailing slash.
func orgURL(raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", fmt.Errorf("AZP_URL is not set: set it to the organization URL, such as %s", orgURLExample)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil && strings.Contains(raw, "@"):
		return "", errors.New("AZP_URL is not a URL, and may hold a credential: set it to the organization URL, such as " + orgURLExample)
	case err != nil:
		return "", fmt.Errorf("AZP_URL %q is not a URL: set it to the organization URL, such as %s", raw, orgURLExample)
	case u.User != nil:
		// Not echoed: the URL holds a credential.
		return "", errors.New("AZP_URL must not carry credentials: put the token in AZP_TOKEN or AZP_TOKEN_FILE")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return "", fmt.Errorf("AZP_URL %q is not an http(s) URL: set it to the organization URL, such as %s", raw, orgURLExample)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("AZP_URL %q has a query or fragment: set it to the organization URL alone, such as %s", raw, orgURLExample)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// token reads the PAT and says where it came from, for messages.
func token(getenv func(string) string) (tok, source string, err error) {
	if f := strings.TrimSpace(getenv("AZP_TOKEN_FILE")); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", "", fmt.Errorf("AZP_TOKEN_FILE: cannot read the token file: %w", err)
		}
		if tok = strings.TrimSpace(string(b)); tok == "" {
			return "", "", fmt.Errorf("AZP_TOKEN_FILE %s is empty: write the PAT into it", f)
		}
		return tok, "the token in AZP_TOKEN_FILE", nil
	}
	if tok = strings.TrimSpace(getenv("AZP_TOKEN")); tok != "" {
		return tok, "AZP_TOKEN", nil
	}
	if getenv("AZP_CLIENTID") != "" {
		return "", "", errors.New("AZP_CLIENTID is set, but the test agent supports only a PAT: set AZP_TOKEN or AZP_TOKEN_FILE")
	}
	return "", "", errors.New("AZP_TOKEN is not set: set AZP_TOKEN, or AZP_TOKEN_FILE to a file holding it (a PAT with scope Agent Pools (read, manage))")
}

// agent is one run: register, one job, unregister.
type agent struct {
	cfg  config
	caps map[string]string
	srv  *server
	log  *slog.Logger
}

// run returns the exit code, and the error to report.
func (a *agent) run(ctx context.Context) (int, error) {
	err := a.runOnce(ctx)
	switch {
	case ctx.Err() != nil:
		return exitInterrupted, nil
	case err != nil:
		return exitError, err
	}
	return exitOK, nil
}

func (a *agent) runOnce(ctx context.Context) error {
	poolID, err := a.srv.poolID(ctx, a.cfg.pool)
	if err != nil {
		return err
	}
	agentID, err := a.register(ctx, poolID)
	if err != nil {
		return err
	}
	err = a.session(ctx, poolID, agentID)
	if !errors.Is(err, errSessionGone) {
		a.unregister(ctx, poolID, agentID)
	}
	return err
}

// register adds the agent, or replaces the one registered under its name
// (keeping its id), and returns the id.
func (a *agent) register(ctx context.Context, poolID int) (int, error) {
	key, err := newPublicKey()
	if err != nil {
		return 0, err
	}
	body := taskAgent{
		Name: a.cfg.name, Version: a.cfg.version, OSDescription: osDescription(), Enabled: true, MaxParallelism: 1,
		Authorization: &agentAuthorization{PublicKey: key}, SystemCapabilities: a.caps,
	}
	// Twice at most: another registration under the name may land between
	// the look-up and the add, and is then replaced.
	for attempt := 0; ; attempt++ {
		existing, err := a.srv.agentByName(ctx, poolID, a.cfg.name)
		if err != nil {
			return 0, err
		}
		if existing != nil {
			got, err := a.srv.replaceAgent(ctx, poolID, existing.ID, body)
			if err != nil {
				return 0, err
			}
			a.log.Info("registered", "agent", a.cfg.name, "id", got.ID, "pool", a.cfg.pool, "replaced", true)
			return got.ID, nil
		}
		got, err := a.srv.addAgent(ctx, poolID, body)
		if status(err) == http.StatusConflict && attempt == 0 {
			continue
		}
		if err != nil {
			return 0, err
		}
		a.log.Info("registered", "agent", a.cfg.name, "id", got.ID, "pool", a.cfg.pool, "replaced", false)
		return got.ID, nil
	}
}

// unregister removes the agent, even when ctx is cancelled: an ephemeral
// agent leaves nothing behind.
func (a *agent) unregister(ctx context.Context, poolID, agentID int) {
	if err := a.srv.deleteAgent(context.WithoutCancel(ctx), poolID, agentID); err != nil {
		a.log.Error("unregister failed", "agent", a.cfg.name, "id", agentID, "error", err)
		return
	}
	a.log.Info("unregistered", "agent", a.cfg.name, "id", agentID)
}

// session opens a session, waits for a job, runs it, and closes the
// session, even when ctx is cancelled.
func (a *agent) session(ctx context.Context, poolID, agentID int) error {
	owner, err := os.Hostname()
	if err != nil || owner == "" {
		owner = a.cfg.name
	}
	s, err := a.srv.createSession(ctx, poolID, taskAgentSession{
		OwnerName: owner,
		Agent:     agentRef{ID: agentID, Name: a.cfg.name, Version: a.cfg.version, OSDescription: osDescription()},
		// The agent sends its capabilities with every session.
		SystemCapabilities: a.caps,
	})
	if err != nil {
		return err
	}
	a.log.Info("session opened", "session", s.SessionID)
	err = a.takeOneJob(ctx, poolID, s.SessionID)
	if errors.Is(err, errSessionGone) {
		return fmt.Errorf("agent %q was replaced or removed from pool %q, so it is not unregistered: %w",
			a.cfg.name, a.cfg.pool, err)
	}
	if cerr := a.srv.deleteSession(context.WithoutCancel(ctx), poolID, s.SessionID); cerr != nil {
		a.log.Error("closing the session failed", "session", s.SessionID, "error", cerr)
	} else {
		a.log.Info("session closed", "session", s.SessionID)
	}
	return err
}

func (a *agent) takeOneJob(ctx context.Context, poolID int, sessionID string) error {
	msg, err := a.waitForJob(ctx, poolID, sessionID)
	switch {
	case err != nil:
		return err
	case msg == nil && ctx.Err() == nil:
		a.log.Info("no job within the idle timeout", "idle_timeout", a.cfg.idleTimeout)
		return nil
	case msg == nil:
		return nil
	}
	return a.runJob(ctx, poolID, sessionID, msg)
}

// waitForJob long-polls until a job message comes, ctx is cancelled or the
// idle timeout passes (both: nil message, nil error). Other messages are
// acknowledged and skipped.
func (a *agent) waitForJob(ctx context.Context, poolID int, sessionID string) (*taskAgentMessage, error) {
	idle, cancel := context.WithTimeout(ctx, a.cfg.idleTimeout)
	defer cancel()
	var last int64
	backoff := time.Second
	for {
		msg, err := a.srv.getMessage(idle, poolID, sessionID, last)
		switch {
		case err == nil && msg != nil:
		case idle.Err() != nil:
			return nil, nil
		case status(err) == http.StatusNotFound:
			return nil, fmt.Errorf("%w (%w)", errSessionGone, err)
		case isAuth(err):
			return nil, err
		case err != nil:
			a.log.Warn("message poll failed, retrying", "error", err, "retry_in", backoff)
			sleep(idle, backoff)
			backoff = min(2*backoff, 15*time.Second)
			continue
		default: // the poll timed out empty
			continue
		}
		backoff = time.Second
		last = msg.MessageID
		if strings.EqualFold(msg.MessageType, jobMessageType) {
			return msg, nil
		}
		a.log.Info("message skipped", "message", msg.MessageID, "type", msg.MessageType)
		a.ack(ctx, poolID, sessionID, msg.MessageID)
	}
}

func (a *agent) ack(ctx context.Context, poolID int, sessionID string, messageID int64) {
	if err := a.srv.deleteMessage(context.WithoutCancel(ctx), poolID, sessionID, messageID); err != nil {
		// The next poll passes lastMessageId, which acknowledges it too.
		a.log.Warn("acknowledging a message failed", "message", messageID, "error", err)
	}
}

// runJob acknowledges the job message, reports the job started, holds it
// for its run time and reports the result: succeeded; canceled when ctx
// ends first, even before the start report got through, as the agent does;
// failed when the run time is unreadable. A job the server ended
// meanwhile is not an error.
func (a *agent) runJob(ctx context.Context, poolID int, sessionID string, msg *taskAgentMessage) error {
	a.ack(ctx, poolID, sessionID, msg.MessageID)
	var job jobRequestMessage
	if err := json.Unmarshal([]byte(msg.Body), &job); err != nil || job.RequestID == 0 {
		return fmt.Errorf("job message %d is not a job request (no requestId in its body, or not JSON: %v)", msg.MessageID, err)
	}
	a.log.Info("job received", "job", 1, "request", job.RequestID, "name", job.JobDisplayName, "job_id", job.JobID)
	now := time.Now().UTC()
	err := a.srv.updateRequest(ctx, poolID, jobRequestUpdate{RequestID: job.RequestID, ReceiveTime: &now})
	switch {
	case status(err) == http.StatusConflict:
		a.log.Warn("job ended by the server before it started", "job", 1, "request", job.RequestID, "error", err)
		return nil
	case err != nil && ctx.Err() == nil:
		return fmt.Errorf("report job %d started: %w", job.RequestID, err)
	}
	runTime, rtErr := job.runTime()
	result := "succeeded"
	switch {
	case ctx.Err() != nil:
		result = "canceled"
	case rtErr != nil:
		a.log.Error("job failed", "job", 1, "request", job.RequestID, "error", rtErr)
		result = "failed"
	default:
		a.log.Info("job started", "job", 1, "request", job.RequestID, "run_time", runTime)
		if !sleep(ctx, runTime) {
			result = "canceled"
		}
	}
	now = time.Now().UTC()
	err = a.srv.updateRequest(context.WithoutCancel(ctx), poolID,
		jobRequestUpdate{RequestID: job.RequestID, FinishTime: &now, Result: result})
	switch {
	case status(err) == http.StatusConflict:
		a.log.Warn("job already ended by the server", "job", 1, "request", job.RequestID, "error", err)
	case err != nil:
		return fmt.Errorf("report job %d finished (%s): %w", job.RequestID, result, err)
	default:
		a.log.Info("job finished", "job", 1, "request", job.RequestID, "result", result)
	}
	return nil
}

// runTime is how long to hold the job: the run time variable, 0 without it.
func (j jobRequestMessage) runTime() (time.Duration, error) {
	v, ok := j.Variables[runSecondsVariable]
	if !ok {
		return 0, nil
	}
	s, err := strconv.ParseFloat(strings.TrimSpace(v.Value), 64)
	if err != nil || s < 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return 0, fmt.Errorf("variable %s = %q: want a number of seconds, 0 or more", runSecondsVariable, v.Value)
	}
	return time.Duration(s * float64(time.Second)), nil
}

// sleep waits d, or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newPublicKey makes the RSA key the service wants with a registration.
// The private half is dropped: this agent asks for no encrypted session.
func newPublicKey() (publicKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return publicKey{}, fmt.Errorf("generate the agent key: %w", err)
	}
	return publicKey{
		Exponent: base64.StdEncoding.EncodeToString(big.NewInt(int64(k.E)).Bytes()),
		Modulus:  base64.StdEncoding.EncodeToString(k.N.Bytes()),
	}, nil
}
