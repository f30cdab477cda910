// Package docker runs agent instances as containers on a Docker engine.
//
// One container per agent, named after the instance, labelled with
// providers.Labels plus the configured extra labels. Containers are never
// auto-removed: the scaler reads the exit code, then calls Delete, which
// removes the container with its anonymous volumes and its secret files.
//
// The engine is reached through github.com/docker/docker/client, and only
// from this package, so that moving to its successor module touches nothing
// else. The API version is negotiated (Debian's docker.io 20.10 speaks 1.41),
// and every engine call carries a deadline.
//
// Secrets (spec.Secrets, the agent token) go to the container as environment
// variables by default, which is what the stock agent images read; anyone who
// can run docker inspect on the host sees them. With Options.TokenFile each
// secret is instead copied, inside the request body of the engine's archive
// API, into a file under SecretDir in the created container before it starts,
// and the environment carries only <NAME>_FILE=<path>: the value is in no
// command line, no inspect output and no host directory of ours, and it goes
// away with the container.
//
// Create is idempotent on the name across processes: a name conflict returns
// the existing container, and a container that exists but was never started
// (its creator failed between create and start) is set up and started by the
// next Create of its name. A conflict whose holder is not there when looked
// up (the engine still registers it for another process, or it was removed)
// makes Create try again, and at worst report a retryable conflict. Within
// one process, creates of one name are serialized.
package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/client"

	"github.com/agentscaler/agentscaler/internal/retry"
	"github.com/agentscaler/agentscaler/providers"
)

// PullPolicy says when Create pulls the image.
type PullPolicy string

const (
	PullAlways  PullPolicy = "always"  // before every create
	PullMissing PullPolicy = "missing" // when the engine does not have it
	PullNever   PullPolicy = "never"   // the image must be on the engine already
)

// SecretDir is where secret files appear in the container with TokenFile.
const SecretDir = "/run/agentscaler"

// MTUEnv is the variable through which the agent learns the MTU for the job
// networks it creates.
const MTUEnv = "AGENT_DOCKER_MTU_VALUE"

// Defaults of the Options that leave them zero.
const (
	DefaultNetwork     = "host"
	DefaultCallTimeout = 30 * time.Second
	DefaultPullTimeout = 15 * time.Minute
)

// Options configure a Provider. The zero value uses the engine of the
// environment (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH) with host
// networking and pull policy missing.
type Options struct {
	// Host is the engine address, such as unix:///var/run/docker.sock or
	// tcp://docker.example.com:2376. Empty means the environment's:
	// DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH, DOCKER_API_VERSION.
	Host string
	// TLSCertPath is a directory with ca.pem, cert.pem and key.pem for a
	// tcp:// Host; the engine's certificate is verified against ca.pem.
	TLSCertPath string
	// Network is host, none, bridge or a user network. Default host.
	Network string
	// Pull is the pull policy. Default PullMissing.
	Pull PullPolicy
	// Auth, when set, is sent for every pull to the image's registry.
	Auth *Auth
	// DockerConfig, when set, is the path of a .docker/config.json whose
	// "auths" entries are matched by the image's registry host. It is read
	// at each pull, so rotated credentials apply without a restart.
	DockerConfig string
	// Mounts are added to every container.
	Mounts []Mount
	// Labels are added to every container; the agentscaler.io/ labels of
	// the instance take precedence.
	Labels map[string]string
	// TokenFile passes secrets as files under SecretDir (see the package doc).
	TokenFile bool
	// MTU, when above 0, is passed to the agent as AGENT_DOCKER_MTU_VALUE.
	MTU int
	// CallTimeout bounds each engine call. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// PullTimeout bounds a pull or an import. A pull goes on when the Create
	// that started it gives up, so that a later Create finds the image.
	// Default DefaultPullTimeout.
	PullTimeout time.Duration
	// Logger receives pull progress and setup failures; nil logs nothing.
	Logger *slog.Logger
}

// Auth is a registry user name and password (or token). Its String never
// shows the password.
type Auth struct {
	Username string
	Password string
}

func (a Auth) String() string   { return fmt.Sprintf("{Username:%s Password:[redacted]}", a.Username) }
func (a Auth) GoString() string { return "docker.Auth" + a.String() }

// Mount is a host path or a named volume mounted into every container.
type Mount struct {
	Source   string // absolute host path, or a volume name
	Target   string // absolute path in the container
	ReadOnly bool
}

// Provider runs agents as containers. It is safe for concurrent use.
type Provider struct {
	cli  *client.Client
	opts Options
	log  *slog.Logger

	// ctx bounds work that outlives a call (pulls); Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	names nameLocks

	// lostName, when set (by tests), runs after a create lost the name to
	// another container and before that container is looked up.
	lostName func(name string)

	mu    sync.Mutex
	pulls map[string]*pullCall // in flight, by image reference
}

var _ providers.Provider = (*Provider)(nil)

// Op names of providers.Error.
const (
	opCreate = "create"
	opList   = "list"
	opDelete = "delete"
	opPull   = "pull"
	opImport = "import"
)

// New returns a provider for the engine the options name. It does not
// contact the engine: the first call does, and negotiates the API version.
func New(opts Options) (*Provider, error) {
	opts.Network = cmp.Or(opts.Network, DefaultNetwork)
	opts.Pull = cmp.Or(opts.Pull, PullMissing)
	opts.CallTimeout = cmp.Or(opts.CallTimeout, DefaultCallTimeout)
	opts.PullTimeout = cmp.Or(opts.PullTimeout, DefaultPullTimeout)
	if !slices.Contains([]PullPolicy{PullAlways, PullMissing, PullNever}, opts.Pull) {
		return nil, fmt.Errorf("docker: pull policy %q: use always, missing or never", opts.Pull)
	}
	for _, m := range opts.Mounts {
		if m.Source == "" || !path.IsAbs(m.Target) {
			return nil, fmt.Errorf("docker: mount %s:%s: needs a source and an absolute target", m.Source, m.Target)
		}
	}
	if opts.DockerConfig != "" {
		// Fail at start on a file that cannot serve any pull.
		if _, err := readDockerConfig(opts.DockerConfig); err != nil {
			return nil, fmt.Errorf("docker: registry config file: %w", err)
		}
	}
	// A configured host takes nothing from the environment: mixing one
	// engine's address with another's certificates helps nobody.
	clientOpts := []client.Opt{client.FromEnv}
	if opts.Host != "" {
		clientOpts = []client.Opt{client.WithHost(opts.Host)}
	}
	if opts.TLSCertPath != "" {
		clientOpts = append(clientOpts, client.WithTLSClientConfig(
			filepath.Join(opts.TLSCertPath, "ca.pem"), filepath.Join(opts.TLSCertPath, "cert.pem"), filepath.Join(opts.TLSCertPath, "key.pem")))
	}
	clientOpts = append(clientOpts, client.WithAPIVersionNegotiation())
	cli, err := client.NewClientWithOpts(clientOpts...)
	if err != nil {
		return nil, fmt.Errorf("docker: engine client: %w", err)
	}
	p := &Provider{cli: cli, opts: opts, log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)), pulls: map[string]*pullCall{}}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p, nil
}

// Close stops pulls in flight and releases the engine connection.
func (p *Provider) Close() error {
	p.cancel()
	return p.cli.Close()
}

// call bounds one engine call.
func (p *Provider) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, p.opts.CallTimeout)
}

// secretNameRE keeps secret names usable as variable and file names.
var secretNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *Provider) checkSpec(spec providers.AgentSpec) error {
	bad := func(reason string, err error) error {
		return &providers.Error{Op: opCreate, Name: spec.Name, Reason: reason, Err: err}
	}
	if err := providers.ValidateName(spec.Name); err != nil {
		return bad("invalid_name", err)
	}
	if spec.Pool == "" {
		return bad("invalid_pool", errors.New("the spec has no pool"))
	}
	if _, err := reference.ParseNormalizedNamed(spec.Image); err != nil {
		return bad("invalid_image", fmt.Errorf("image reference %q: %w; use a reference such as registry.example.com/azp-agent:linux", spec.Image, err))
	}
	for name := range spec.Secrets {
		if !secretNameRE.MatchString(name) {
			return bad("invalid_secret", fmt.Errorf("secret name %q: use letters, digits and _ (it becomes a variable and a file name)", name))
		}
	}
	return nil
}

// Create starts the agent's container, or returns the existing one of that
// name. See the package doc for idempotency and secrets.
func (p *Provider) Create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if err := p.checkSpec(spec); err != nil {
		return providers.Instance{}, err
	}
	unlock, err := p.names.lock(ctx, spec.Name)
	if err != nil {
		return providers.Instance{}, p.fail(opCreate, spec.Name, err, spec.Secrets)
	}
	defer unlock()
	in, err := p.create(ctx, spec)
	if err != nil {
		return providers.Instance{}, p.fail(opCreate, spec.Name, err, spec.Secrets)
	}
	return in, nil
}

// nameAttempts bounds the creates of one Create that lose the name to a
// container which is then not there: one still being registered by the
// engine for another process, or removed since.
const nameAttempts = 4

// errNameVanished says the container that held the name could not be found
// a moment later. Another try either creates the name or finds its holder.
var errNameVanished = errors.New("the container holding the name is gone")

func (p *Provider) create(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if p.opts.Pull == PullAlways {
		if err := p.pull(ctx, spec.Image); err != nil {
			return providers.Instance{}, err
		}
	}
	var in providers.Instance
	err := retry.Do(ctx, retry.Policy{
		Retries: nameAttempts - 1, Base: 20 * time.Millisecond, Max: 160 * time.Millisecond,
		// A holder the engine is still registering shows up in a moment.
		Retryable: func(err error) (bool, time.Duration) { return errors.Is(err, errNameVanished), 0 },
	}, func(ctx context.Context) (err error) {
		in, err = p.createOnce(ctx, spec)
		return err
	})
	if errors.Is(err, errNameVanished) && ctx.Err() == nil {
		return providers.Instance{}, retryable("conflict", 0, fmt.Errorf(
			"container name %s: in use by another container at each of %d creates, and that container gone each time it was looked up: %w",
			spec.Name, nameAttempts, err))
	}
	return in, err
}

// createOnce creates and starts the container, or adopts the one holding
// its name.
func (p *Provider) createOnce(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	id, err := p.containerCreate(ctx, spec)
	if isNoSuchImage(err) && p.opts.Pull == PullMissing {
		if err := p.pull(ctx, spec.Image); err != nil {
			return providers.Instance{}, err
		}
		id, err = p.containerCreate(ctx, spec)
	}
	switch {
	case cerrdefs.IsConflict(err):
		return p.adopt(ctx, spec)
	case isNoSuchImage(err):
		// The engine checks the image before the name: an instance of this
		// name may exist although its image is gone.
		c, ierr := p.inspect(ctx, spec.Name)
		if ierr == nil {
			return p.adoptContainer(ctx, spec, c)
		}
		if !cerrdefs.IsNotFound(ierr) {
			return providers.Instance{}, ierr
		}
		return providers.Instance{}, permanent("image_not_found", fmt.Errorf(
			"image %s is not on the engine and the pull policy is %s; load it there, or set pull to missing or always", spec.Image, p.opts.Pull))
	case err != nil:
		return providers.Instance{}, err
	}
	if err := p.start(ctx, spec, id); err != nil {
		return providers.Instance{}, err
	}
	c, err := p.inspect(ctx, id)
	if err != nil {
		return providers.Instance{}, err
	}
	return instanceOf(c), nil
}

// adopt returns the existing container of spec's name after a conflict.
// The engine answers a conflict while it still registers the winner's
// container, and the winner may remove it again: a container not found
// from here on is errNameVanished, never a permanent not_found.
func (p *Provider) adopt(ctx context.Context, spec providers.AgentSpec) (providers.Instance, error) {
	if p.lostName != nil {
		p.lostName(spec.Name)
	}
	c, err := p.inspect(ctx, spec.Name)
	if err == nil {
		var in providers.Instance
		in, err = p.adoptContainer(ctx, spec, c)
		if err == nil {
			return in, nil
		}
	}
	if cerrdefs.IsNotFound(err) {
		return providers.Instance{}, fmt.Errorf("%w: %w", errNameVanished, err)
	}
	return providers.Instance{}, err
}

func (p *Provider) adoptContainer(ctx context.Context, spec providers.AgentSpec, c container.InspectResponse) (providers.Instance, error) {
	var in providers.Instance
	if c.Config == nil || !providers.FromLabels(c.Config.Labels, &in) || in.Pool != spec.Pool {
		return providers.Instance{}, permanent("name_taken", fmt.Errorf(
			"a container named %s exists and is not an agentscaler instance of pool %s; rename or remove it", spec.Name, spec.Pool))
	}
	if neverStarted(c) {
		// Its creator stopped between create and start: finish the job.
		if err := p.start(ctx, spec, c.ID); err != nil {
			return providers.Instance{}, err
		}
		started, err := p.inspect(ctx, c.ID)
		if err != nil {
			return providers.Instance{}, err
		}
		c = started
	}
	in = instanceOf(c)
	in.Existed = true
	return in, nil
}

// neverStarted reports a container created and not yet started, nor refused
// to start.
func neverStarted(c container.InspectResponse) bool {
	return c.State != nil && c.State.Status == container.StateCreated && c.State.Error == "" && parseTime(c.State.StartedAt).IsZero()
}

func (p *Provider) containerCreate(ctx context.Context, spec providers.AgentSpec) (string, error) {
	env := maps.Clone(spec.Env)
	if env == nil {
		env = map[string]string{}
	}
	if p.opts.MTU > 0 {
		env[MTUEnv] = strconv.Itoa(p.opts.MTU)
	}
	for name, value := range spec.Secrets {
		if p.opts.TokenFile {
			env[name+"_FILE"] = secretPath(name)
		} else {
			env[name] = value
		}
	}
	envList := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		envList = append(envList, k+"="+env[k])
	}
	labels := maps.Clone(p.opts.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, providers.Labels(spec))
	cfg := &container.Config{Image: spec.Image, Env: envList, Labels: labels}
	hc := &container.HostConfig{
		NetworkMode:   container.NetworkMode(p.opts.Network),
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		AutoRemove:    false, // the scaler reads the exit code before it deletes
		Resources: container.Resources{
			NanoCPUs: int64(spec.CPU * 1e9),
			Memory:   spec.MemoryMB << 20,
		},
	}
	for _, m := range p.opts.Mounts {
		mt := mount.Mount{Type: mount.TypeVolume, Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly}
		if path.IsAbs(m.Source) {
			mt.Type = mount.TypeBind
		}
		hc.Mounts = append(hc.Mounts, mt)
	}
	ctx, cancel := p.call(ctx)
	defer cancel()
	resp, err := p.cli.ContainerCreate(ctx, cfg, hc, nil, nil, spec.Name)
	return resp.ID, err
}

// start copies the secret files in (with TokenFile) and starts the
// container. A container the engine refuses to run is kept, so that it lists
// as failed and the scaler's failure backoff applies instead of a retry loop;
// one whose secrets could not be copied is removed.
func (p *Provider) start(ctx context.Context, spec providers.AgentSpec, id string) error {
	if p.opts.TokenFile && len(spec.Secrets) > 0 {
		if err := p.copySecrets(ctx, id, spec.Secrets); err != nil {
			p.removeQuietly(id, spec.Name)
			return fmt.Errorf("copy the secret files: %w", err)
		}
	}
	sctx, cancel := p.call(ctx)
	defer cancel()
	err := p.cli.ContainerStart(sctx, id, container.StartOptions{})
	if err == nil {
		return nil
	}
	if c, ierr := p.inspect(ctx, id); ierr == nil && c.State != nil && c.State.Error != "" {
		p.log.Warn("container did not start", "name", spec.Name, "image", spec.Image, "error", c.State.Error)
		return permanent("start", fmt.Errorf("the engine could not start the container: %w", err))
	}
	return fmt.Errorf("start: %w", err)
}

// removeQuietly removes a container Create gave up on, on a context of its
// own: the caller's may be what ended.
func (p *Provider) removeQuietly(id, name string) {
	ctx, cancel := p.call(context.Background())
	defer cancel()
	if err := p.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true, RemoveVolumes: true}); err != nil && !cerrdefs.IsNotFound(err) {
		p.log.Warn("could not remove a container left half set up; the scaler removes it after startup_timeout", "name", name, "error", err)
	}
}

func (p *Provider) inspect(ctx context.Context, idOrName string) (container.InspectResponse, error) {
	ctx, cancel := p.call(ctx)
	defer cancel()
	return p.cli.ContainerInspect(ctx, idOrName)
}

// listParallelism bounds the inspects of one List.
const listParallelism = 8

// List returns the pool's instances, sorted by name. The state, exit code
// and times come from inspecting each container: the list call has neither.
func (p *Provider) List(ctx context.Context, pool string) ([]providers.Instance, error) {
	lctx, cancel := p.call(ctx)
	defer cancel()
	f := filters.NewArgs(
		filters.Arg("label", providers.LabelManaged+"=true"),
		filters.Arg("label", providers.LabelPool+"="+pool),
	)
	cs, err := p.cli.ContainerList(lctx, container.ListOptions{All: true, Filters: f})
	if err != nil {
		return nil, p.fail(opList, pool, err, nil)
	}
	out := make([]providers.Instance, len(cs))
	keep := make([]bool, len(cs))
	errs := make([]error, len(cs))
	sem := make(chan struct{}, listParallelism)
	var wg sync.WaitGroup
	for i, s := range cs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c, err := p.inspect(ctx, s.ID)
			switch {
			case cerrdefs.IsNotFound(err): // removed since the list
			case err != nil:
				errs[i] = err
			default:
				out[i], keep[i] = instanceOf(c), true
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, p.fail(opList, pool, err, nil)
	}
	ins := make([]providers.Instance, 0, len(cs))
	for i, in := range out {
		if keep[i] && in.Pool == pool {
			ins = append(ins, in)
		}
	}
	slices.SortFunc(ins, func(a, b providers.Instance) int { return strings.Compare(a.Name, b.Name) })
	return ins, nil
}

// Delete removes the container with its anonymous volumes and secret files.
// A missing container is not an error; a container of that name that this
// autoscaler did not make is left alone, with a permanent error.
func (p *Provider) Delete(ctx context.Context, name string) error {
	if err := providers.ValidateName(name); err != nil {
		return &providers.Error{Op: opDelete, Name: name, Reason: "invalid_name", Err: err}
	}
	unlock, err := p.names.lock(ctx, name)
	if err != nil {
		return p.fail(opDelete, name, err, nil)
	}
	defer unlock()
	c, err := p.inspect(ctx, name)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return p.fail(opDelete, name, err, nil)
	}
	var in providers.Instance
	if c.Config == nil || !providers.FromLabels(c.Config.Labels, &in) {
		return &providers.Error{Op: opDelete, Name: name, Reason: "not_managed", Err: fmt.Errorf(
			"container %s is not an agentscaler instance (no %s=true label); not removing it", name, providers.LabelManaged)}
	}
	rctx, cancel := p.call(ctx)
	defer cancel()
	err = p.cli.ContainerRemove(rctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress"):
		// Another process is removing it: the outcome is the same.
		return nil
	}
	return p.fail(opDelete, name, err, nil)
}

// instanceOf reads an instance from an inspected container.
func instanceOf(c container.InspectResponse) providers.Instance {
	in := providers.Instance{Name: strings.TrimPrefix(c.Name, "/")}
	if c.Config != nil {
		providers.FromLabels(c.Config.Labels, &in)
	}
	in.Created = parseTime(c.Created)
	st := c.State
	if st == nil {
		in.State = providers.StatePending
		return in
	}
	in.Started = parseTime(st.StartedAt)
	finished := parseTime(st.FinishedAt)
	ended := false
	switch st.Status {
	case container.StateCreated:
		if st.Error != "" {
			// The engine refused to start it (bad entrypoint, missing network).
			in.State, in.ExitCode, in.Reason = providers.StateFailed, st.ExitCode, st.Error
			in.Finished = finished
			return in
		}
		in.State = providers.StatePending
	case container.StateRunning, container.StatePaused, container.StateRestarting:
		in.State = providers.StateRunning
	case container.StateRemoving:
		in.State = providers.StateRunning
		ended = !finished.IsZero()
	case container.StateDead:
		in.State, in.ExitCode, in.Reason, in.Finished = providers.StateFailed, st.ExitCode, "dead: the engine could not stop or remove it", finished
		return in
	default: // exited
		ended = true
	}
	if !ended {
		return in
	}
	in.ExitCode, in.Finished = st.ExitCode, finished
	switch {
	case st.OOMKilled:
		in.State, in.Reason = providers.StateFailed, "OOMKilled: the container ran out of memory"
	case st.ExitCode != 0:
		in.State, in.Reason = providers.StateFailed, "exited with code "+strconv.Itoa(st.ExitCode)
		if st.Error != "" {
			in.Reason += ": " + st.Error
		}
	default:
		in.State = providers.StateExited
	}
	return in
}

// parseTime reads an engine timestamp; the engine writes the zero time as
// 0001-01-01T00:00:00Z, which parses to the zero time.Time.
func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// nameLocks serializes operations on one instance name within the process.
type nameLocks struct {
	mu sync.Mutex
	m  map[string]*nameLock
}

type nameLock struct {
	ch    chan struct{}
	users int
}

// lock waits for the name, or for ctx.
func (l *nameLocks) lock(ctx context.Context, name string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*nameLock{}
	}
	nl := l.m[name]
	if nl == nil {
		nl = &nameLock{ch: make(chan struct{}, 1)}
		l.m[name] = nl
	}
	nl.users++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if nl.users--; nl.users == 0 {
			delete(l.m, name)
		}
		l.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		release()
		return nil, err
	}
	select {
	case nl.ch <- struct{}{}:
		return func() { <-nl.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
