package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Users with a static token, besides the admin: authenticated, in no group
// but system:authenticated, so RBAC alone decides what they may do.
var Users = []string{"kubetest-user-1", "kubetest-user-2"}

// AdminUser is in system:masters: everything is allowed.
const AdminUser = "kubetest-admin"

// ControlPlane is a running etcd, kube-apiserver and kube-controller-manager
// on loopback.
type ControlPlane struct {
	// URL is the API server, https://127.0.0.1:<port>.
	URL string
	// CA is the PEM certificate that the API server's certificate chains to.
	CA []byte
	// Started is how long the start took (binaries already built).
	Started time.Duration

	tokens  map[string]string // user -> bearer token
	etcdURL string
	dir     string
	procs   []*process     // in start order
	stops   []func() error // run first by stop (the node's clean-up)
}

var shared struct {
	main bool // Main is in charge of stopping
	once sync.Once
	cp   *ControlPlane
	err  error
}

// Main runs the tests and then stops the shared control plane, if a test
// started one. A test binary that calls Start needs
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
//
// m is usually the *testing.M; a package that shares other test
// environments too passes a Run that starts those.
func Main(m interface{ Run() int }) int {
	shared.main = true
	code := m.Run()
	if shared.cp != nil {
		if err := shared.cp.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "kubetest:", err)
		}
	}
	return code
}

// Start returns the control plane shared by every test of this binary,
// starting it on first use (building the binaries first if the cache is
// cold: run ./tools/kubebins beforehand so go test's timeout
// is not spent on that). It fails the test when etcd is not installed.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	if !shared.main {
		t.Fatal("kubetest.Start: TestMain must call kubetest.Main(m), which stops the control plane when the tests end")
	}
	shared.once.Do(func() {
		shared.cp, shared.err = start()
		if shared.err == nil {
			t.Logf("kubetest: control plane %s at %s started in %v", Version, shared.cp.URL, shared.cp.Started.Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.cp
}

func start() (_ *ControlPlane, err error) {
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		return nil, fmt.Errorf("kubetest: etcd is not installed; install it with `apt-get install etcd-server` (Debian): %w", err)
	}
	// A cold build blocks here; ctx only bounds a hung one.
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	bins, err := Build(ctx, os.Stderr)
	if err != nil {
		return nil, err
	}

	begin := time.Now()
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, fmt.Errorf("kubetest: %w", err)
	}
	cp := &ControlPlane{dir: dir, tokens: map[string]string{}}
	defer func() {
		if err != nil {
			_ = cp.stop()
		}
	}()
	if err := cp.startEtcd(ctx, etcd); err != nil {
		return nil, err
	}
	if err := cp.startAPIServer(ctx, bins.APIServer); err != nil {
		return nil, err
	}
	if err := cp.startControllerManager(ctx, bins.ControllerManager); err != nil {
		return nil, err
	}
	cp.Started = time.Since(begin)
	return cp, nil
}

func (cp *ControlPlane) startEtcd(ctx context.Context, bin string) error {
	client, peer := freePort(), freePort()
	if client == 0 || peer == 0 {
		return errors.New("kubetest: no free loopback port for etcd")
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
	p, err := cp.run("etcd", bin,
		"--name=kubetest",
		"--data-dir="+filepath.Join(cp.dir, "etcd"),
		"--listen-client-urls="+clientURL, "--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL,
		"--logger=zap", "--log-level=warn",
	)
	if err != nil {
		return err
	}
	cp.etcdURL = clientURL
	return p.await(ctx, time.Minute, func(ctx context.Context) error {
		return probe(ctx, http.DefaultClient, clientURL+"/health", "", `"health":"true"`)
	})
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, bin string) error {
	certFile, keyFile, caPEM, err := servingCert(cp.dir)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	saKey, saPub, err := serviceAccountKeys(cp.dir)
	if err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	var tokens bytes.Buffer
	for _, u := range append([]string{AdminUser}, Users...) {
		tok, err := randomToken()
		if err != nil {
			return fmt.Errorf("kubetest: %w", err)
		}
		cp.tokens[u] = tok
		groups := "system:authenticated"
		if u == AdminUser {
			groups = "system:masters,system:authenticated"
		}
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", tok, u, u, groups)
	}
	tokenFile := filepath.Join(cp.dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		return fmt.Errorf("kubetest: %w", err)
	}
	port := freePort()
	if port == 0 {
		return errors.New("kubetest: no free loopback port for kube-apiserver")
	}
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	cp.CA = caPEM
	p, err := cp.run("kube-apiserver", bin,
		"--etcd-servers="+cp.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--tls-cert-file="+certFile, "--tls-private-key-file="+keyFile,
		"--token-auth-file="+tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPub, "--service-account-signing-key-file="+saKey,
		// Only allocated, never routed: no kube-proxy runs.
		"--service-cluster-ip-range=10.0.0.0/24",
		// The kubernetes Service endpoint would be 127.0.0.1, which
		// Endpoints refuse; nothing here needs it.
		"--endpoint-reconciler-type=none",
		"--cert-dir="+filepath.Join(cp.dir, "apiserver-certs"),
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	hc, err := cp.httpClient()
	if err != nil {
		return err
	}
	return p.await(ctx, 2*time.Minute, func(ctx context.Context) error {
		return probe(ctx, hc, cp.URL+"/readyz", cp.tokens[AdminUser], "ok")
	})
}

func (cp *ControlPlane) startControllerManager(ctx context.Context, bin string) error {
	kubeconfig := filepath.Join(cp.dir, "controller-manager.kubeconfig")
	if err := cp.WriteKubeconfig(kubeconfig, AdminUser, "kubetest"); err != nil {
		return err
	}
	port := freePort()
	if port == 0 {
		return errors.New("kubetest: no free loopback port for kube-controller-manager")
	}
	p, err := cp.run("kube-controller-manager", bin,
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--leader-elect=false",
		// Jobs make pods, the collector removes what a deleted Job owned,
		// the TTL controller removes finished Jobs, pods need their
		// namespace's default service account, namespaces get deleted.
		"--controllers=job-controller,garbage-collector-controller,ttl-after-finished-controller,serviceaccount-controller,namespace-controller",
		"--use-service-account-credentials=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(cp.dir, "controller-manager-certs"),
		"--profiling=false",
	)
	if err != nil {
		return err
	}
	// Its own serving certificate is self-signed in cert-dir; only whether
	// it answers matters here.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return p.await(ctx, time.Minute, func(ctx context.Context) error {
		return probe(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(port)+"/healthz", "", "ok")
	})
}

// Config returns a client configuration that authenticates as user (AdminUser
// or one of Users) with its static token.
func (cp *ControlPlane) Config(user string) *rest.Config {
	tok, ok := cp.tokens[user]
	if !ok {
		panic(fmt.Sprintf("kubetest: no static token for user %q (have %s and %s)", user, AdminUser, strings.Join(Users, ", ")))
	}
	return cp.TokenConfig(tok)
}

// TokenConfig returns a client configuration that authenticates with the
// bearer token (a service account token, for instance).
func (cp *ControlPlane) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CA},
		QPS:             100,
		Burst:           200,
		UserAgent:       "kubetest",
	}
}

// Admin returns a clientset for AdminUser.
func (cp *ControlPlane) Admin(t testing.TB) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(cp.Config(AdminUser))
	if err != nil {
		t.Fatalf("kubetest: admin client: %v", err)
	}
	return c
}

// WriteKubeconfig writes a kubeconfig file whose context (named context,
// and current) reaches the API server as user.
func (cp *ControlPlane) WriteKubeconfig(path, user, context string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: cp.URL, CertificateAuthorityData: cp.CA}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: cp.tokens[user]}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: user}
	cfg.CurrentContext = context
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubetest: kubeconfig: %w", err)
	}
	return nil
}

func (cp *ControlPlane) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cp.CA) {
		return nil, errors.New("kubetest: the serving certificate does not parse")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// process is one started program.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it exited
	err  error         // its exit, once done
}

// run starts a program with its output in a log file of the control
// plane's directory. The process is killed if this test binary dies
// without stopping it.
func (cp *ControlPlane) run(name, bin string, args ...string) (*process, error) {
	return cp.runEnv(name, bin, nil, args...)
}

// runEnv is run with variables added to the environment.
func (cp *ControlPlane) runEnv(name, bin string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(cp.dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("kubetest: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	cp.procs = append(cp.procs, p)
	return p, nil
}

// await polls ready until it succeeds, the process exits, or limit passes;
// a failure carries the end of the process's log.
func (p *process) await(ctx context.Context, limit time.Duration, ready func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	pause := 20 * time.Millisecond
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err := ready(pctx)
		pcancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("kubetest: %s exited while starting (%v); end of its log:\n%s", p.name, p.err, tail(p.log))
		case <-ctx.Done():
			return fmt.Errorf("kubetest: %s not ready within %v (last probe: %v); end of its log:\n%s", p.name, limit, err, tail(p.log))
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// stop ends the process: SIGTERM, then SIGKILL if it lingers.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(15 * time.Second):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.cmd.Process.Pid, err)
	}
	<-p.done
	return nil
}

// stop ends the programs in reverse start order and removes their files.
func (cp *ControlPlane) stop() error {
	var errs []error
	for _, stop := range cp.stops {
		errs = append(errs, stop())
	}
	for i := len(cp.procs) - 1; i >= 0; i-- {
		errs = append(errs, cp.procs[i].stop())
	}
	errs = append(errs, os.RemoveAll(cp.dir))
	return errors.Join(errs...)
}

// probe GETs url (with a bearer token when given) and wants 200 and want in
// the body.
func probe(ctx context.Context, c *http.Client, url, token, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("GET %s: %s: %.200s", url, resp.Status, body)
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago, 0 if
// none could be had.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// tail returns the last lines of a log file.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}
