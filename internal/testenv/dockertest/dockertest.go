// Package dockertest gives tests a real Docker engine of their own: a
// private dockerd (Debian's docker.io) with its own data root, exec root,
// pidfile and socket under a temporary directory, no bridge and no
// iptables, so containers use host or no networking and nothing outside
// loopback. It also builds the waiter, a static program packaged FROM
// scratch that stands in for an agent in a container.
//
// A package shares one engine between its tests (startup costs seconds):
//
//	func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }
//
//	func TestX(t *testing.T) { host := dockertest.Shared(t).Host; ... }
//
// Start gives one test an engine of its own instead. With
// AGENTSCALER_DOCKER_HOST set, both return that engine and start nothing.
//
// dockerd needs root. Engines are stopped by PID (TERM, then KILL), their
// leftover processes and mounts removed with them; the directories of an
// earlier test process that was killed are cleaned up by the next start.
package dockertest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvHost names an existing engine to use instead of starting one.
const EnvHost = "AGENTSCALER_DOCKER_HOST"

// Bounds of the engine's life; generous, the machine is shared.
const (
	startTimeout = 90 * time.Second
	stopTimeout  = 30 * time.Second
	apiTimeout   = 30 * time.Second
)

// ownerFile, in an engine's directory, holds the PID of the test process
// that started it; a directory whose owner is gone is left over.
const ownerFile = "agentscaler-dockertest-owner"

// Engine is a Docker engine for tests.
type Engine struct {
	// Host is the engine's address in DOCKER_HOST form, unix:///tmp/dk.../d.sock.
	Host string

	dir    string // empty for an engine given by EnvHost
	socket string
	cmd    *exec.Cmd
	exited chan struct{} // closed when dockerd has exited
}

var shared struct {
	main bool
	once sync.Once
	eng  *Engine
	err  error
}

// Main runs the package's tests, then stops the engine Shared started, if
// any. Call it from TestMain.
func Main(m interface{ Run() int }) int {
	shared.main = true
	code := m.Run()
	if shared.eng != nil {
		if err := shared.eng.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "dockertest:", err)
			code = max(code, 1)
		}
	}
	return code
}

// Shared returns the package's engine, starting it on first use. It fails
// the test when the engine cannot start, and when TestMain does not call
// Main, which stops it.
func Shared(t testing.TB) *Engine {
	t.Helper()
	if !shared.main {
		t.Fatal("dockertest.Shared needs the package's TestMain to call dockertest.Main, which stops the engine: func TestMain(m *testing.M) { os.Exit(dockertest.Main(m)) }")
	}
	shared.once.Do(func() { shared.eng, shared.err = start() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.eng
}

// Start starts an engine for this test alone, stopped when the test ends.
func Start(t testing.TB) *Engine {
	t.Helper()
	e, err := start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.stop(); err != nil {
			t.Errorf("dockertest: %v", err)
		}
	})
	return e
}

// dockerdPaths are tried in turn: PATH often lacks /usr/sbin.
var dockerdPaths = []string{"dockerd", "/usr/sbin/dockerd"}

func start() (*Engine, error) {
	if host := os.Getenv(EnvHost); host != "" {
		return &Engine{Host: host}, nil
	}
	var bin string
	for _, name := range dockerdPaths {
		if path, err := exec.LookPath(name); err == nil {
			bin = path
			break
		}
	}
	if bin == "" {
		return nil, fmt.Errorf("dockerd is not installed: install the engine with `apt-get install docker.io` (or `make deps`), or set %s to the address of a running engine", EnvHost)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("dockerd needs root: run the tests as root, or set %s to the address of a running engine", EnvHost)
	}
	sweep()

	dir, err := os.MkdirTemp(tempBase(), "dk")
	if err != nil {
		return nil, fmt.Errorf("dockertest: %w", err)
	}
	if err := writeOwner(dir); err != nil {
		return nil, errors.Join(err, os.RemoveAll(dir))
	}
	e := &Engine{dir: dir, socket: filepath.Join(dir, "d.sock"), exited: make(chan struct{})}
	e.Host = "unix://" + e.socket
	if err := e.run(bin); err != nil {
		return nil, errors.Join(err, e.stop())
	}
	return e, nil
}

// run starts dockerd and waits until it answers.
func (e *Engine) run(bin string) error {
	// An empty config file keeps the host's /etc/docker/daemon.json out.
	conf := filepath.Join(e.dir, "daemon.json")
	if err := os.WriteFile(conf, []byte("{}\n"), 0o600); err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	logFile, err := os.Create(filepath.Join(e.dir, "dockerd.log"))
	if err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	defer logFile.Close()
	e.cmd = exec.Command(bin,
		"--config-file", conf,
		"--data-root", filepath.Join(e.dir, "data"),
		"--exec-root", filepath.Join(e.dir, "x"),
		"--pidfile", filepath.Join(e.dir, "dockerd.pid"),
		"--host", e.Host,
		"--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
		"--userland-proxy=false",
		"--shutdown-timeout=5",
	)
	e.cmd.Stdout, e.cmd.Stderr = logFile, logFile
	// Should the test process die without cleaning up, the engine follows.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := e.cmd.Start(); err != nil {
		return fmt.Errorf("dockertest: start %s: %w", bin, err)
	}
	go func() {
		_ = e.cmd.Wait()
		close(e.exited)
	}()

	deadline := time.Now().Add(startTimeout)
	pause := 20 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := e.ping(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-e.exited:
			return fmt.Errorf("dockertest: dockerd exited during startup (%v); its log ends:\n%s", e.cmd.ProcessState, e.logTail())
		case <-time.After(pause):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockertest: dockerd did not answer on %s within %v (%v); its log ends:\n%s", e.socket, startTimeout, err, e.logTail())
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// api calls the engine's HTTP API on its socket. The harness speaks it
// directly for the few calls it needs: the engine client library belongs to
// providers/docker alone.
func (e *Engine) api(ctx context.Context, method, path string) ([]byte, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", e.socket)
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, method, "http://dockerd"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// Inspect returns the engine's description of a container, as docker
// inspect prints it.
func (e *Engine) Inspect(ctx context.Context, name string) ([]byte, error) {
	return e.api(ctx, http.MethodGet, "/containers/"+url.PathEscape(name)+"/json")
}

// Created returns the name of every container created since t, in order,
// one entry per container even when a name comes back: the engine's own
// record, which polling the container list misses when a container comes
// and goes between two polls.
func (e *Engine) Created(ctx context.Context, since time.Time) ([]string, error) {
	q := url.Values{
		"since":   {strconv.FormatInt(since.Unix(), 10)},
		"until":   {strconv.FormatInt(time.Now().Unix()+1, 10)},
		"filters": {`{"type":["container"],"event":["create"]}`},
	}
	body, err := e.api(ctx, http.MethodGet, "/events?"+q.Encode())
	if err != nil {
		return nil, err
	}
	var names []string
	dec := json.NewDecoder(bytes.NewReader(body))
	for {
		var ev struct {
			Actor struct {
				Attributes map[string]string `json:"Attributes"`
			} `json:"Actor"`
			TimeNano int64 `json:"timeNano"`
		}
		if err := dec.Decode(&ev); err == io.EOF {
			return names, nil
		} else if err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		if ev.TimeNano >= since.UnixNano() {
			names = append(names, ev.Actor.Attributes["name"])
		}
	}
}

func (e *Engine) ping(ctx context.Context) error {
	_, err := e.api(ctx, http.MethodGet, "/_ping")
	return err
}

// removeContainers force-removes every container, so that none outlives
// the engine in an orphaned shim.
func (e *Engine) removeContainers(ctx context.Context) error {
	body, err := e.api(ctx, http.MethodGet, "/containers/json?all=1")
	if err != nil {
		return err
	}
	var cs []struct {
		ID string `json:"Id"`
	}
	if err := json.Unmarshal(body, &cs); err != nil {
		return fmt.Errorf("container list: %w", err)
	}
	var errs []error
	for _, c := range cs {
		id := c.ID
		if _, err := e.api(ctx, http.MethodDelete, "/containers/"+id+"?force=1&v=1"); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop ends an engine this package started and removes its directory.
func (e *Engine) stop() error {
	if e.dir == "" {
		return nil
	}
	var errs []error
	if e.cmd != nil && e.cmd.Process != nil {
		select {
		case <-e.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), apiTimeout)
			if err := e.removeContainers(ctx); err != nil {
				errs = append(errs, fmt.Errorf("remove containers: %w", err))
			}
			cancel()
			errs = append(errs, e.terminate())
		}
	}
	errs = append(errs, CleanDir(e.dir))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop the engine in %s: %w", e.dir, err)
	}
	return nil
}

// terminate sends TERM to dockerd, and KILL when it has not exited in time.
func (e *Engine) terminate() error {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.exited:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = e.cmd.Process.Kill()
	select {
	case <-e.exited:
		return fmt.Errorf("dockerd did not stop within %v of SIGTERM and was killed", stopTimeout)
	case <-time.After(stopTimeout):
		return fmt.Errorf("dockerd (pid %d) survived SIGKILL for %v", e.cmd.Process.Pid, stopTimeout)
	}
}

func (e *Engine) logTail() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "dockerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// tempBase is where engine directories go: the temporary directory, unless
// its path is so long that the socket's would pass the 108 bytes unix
// sockets allow.
func tempBase() string {
	if base := os.TempDir(); len(base) <= 64 {
		return base
	}
	return "/tmp"
}

func writeOwner(dir string) error {
	tmp := filepath.Join(dir, ownerFile+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ownerFile)); err != nil {
		return fmt.Errorf("dockertest: %w", err)
	}
	return nil
}

// sweep cleans the engine directories of test processes that are gone
// (killed by a test timeout, say). Directories without an owner file are
// not ours, or not written yet, and are left alone.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(tempBase(), "dk*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := CleanDir(dir); err != nil {
			fmt.Fprintf(os.Stderr, "dockertest: cleaning up after an earlier run: %v\n", err)
		}
	}
}

// CleanDir kills what still runs from dir (containerd, shims: whatever
// names dir in its command line), unmounts what is mounted under it, and
// removes it.
func CleanDir(dir string) error {
	var errs []error
	for _, pid := range processesUnder(dir) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill pid %d: %w", pid, err))
		}
	}
	mounts, err := mountsUnder(dir)
	if err != nil {
		errs = append(errs, err)
	}
	for _, m := range mounts {
		// Detach: a mount still busy goes once its last user does.
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// processesUnder returns the processes whose command line names dir: the
// containerd and shims a dockerd under dir started.
func processesUnder(dir string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mountsUnder returns the mount points below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
