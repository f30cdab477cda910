package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus/push"
)

// PushJob is the job label of pushes to a Pushgateway unless
// PushOptions.Job names another.
const PushJob = "agentscaler"

const (
	// defaultPushTimeout bounds a push whose context carries no deadline,
	// so a dead Pushgateway cannot hold a reconcile or a shutdown.
	defaultPushTimeout = 10 * time.Second
	// deleteTimeout bounds the delete at the end of Run: shutdown must
	// finish before the host kills the process.
	deleteTimeout = 5 * time.Second
	// DefaultPushGather is how long Run waits after a request before
	// pushing, unless PushOptions.Gather says otherwise: the other pools of
	// the same pass are in the same push, and a stream of reconciles costs
	// at most about one push a second.
	DefaultPushGather = time.Second
)

// Pusher keeps one group on a Pushgateway current, for hosts that no scraper
// reaches (serverless instances come and go). The group is job=<job>
// (agentscaler unless set), instance=<instance>; scrape the gateway with
// honor_labels: true so these labels survive.
//
// Reconciles ask for a push with Request, which never blocks; Run makes the
// pushes on its own goroutine, so a slow or dead gateway costs a log line,
// never a reconcile. Push pushes at once, for runs too short for Run.
type Pusher struct {
	m        *Metrics
	url      string        // without credentials: fit for logs and errors
	user     *url.Userinfo // basic auth, or nil
	job      string
	instance string
	log      *slog.Logger
	gather   time.Duration
	kick     chan struct{} // holds one pending request; more collapse into it
}

// PushOptions says where a Pusher pushes.
type PushOptions struct {
	// URL is the gateway's base URL. Credentials in it
	// (https://user:pass@host) are sent as basic auth and never appear in
	// an error or a log.
	URL      string
	Job      string // the group's job label; "" is PushJob
	Instance string // the group's instance label: this process's own name
	// Gather is how long Run waits after a request before it pushes; 0 is
	// DefaultPushGather.
	Gather time.Duration
	Log    *slog.Logger // receives push failures; nil discards them
}

// NewPusher returns a Pusher for the group o names. For a nil Metrics the
// Pusher pushes nothing.
func (m *Metrics) NewPusher(o PushOptions) (*Pusher, error) {
	if o.Instance == "" {
		return nil, errors.New("push metrics: the instance is empty; give each process its own name")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse errors quote the input, which may hold a password.
		return nil, errors.New("push metrics: the Pushgateway URL is not an absolute http(s) URL; write it like http://pushgateway:9091")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Job == "" {
		o.Job = PushJob
	}
	if o.Gather <= 0 {
		o.Gather = DefaultPushGather
	}
	user := u.User
	u.User = nil
	return &Pusher{
		m: m, url: u.String(), user: user, job: o.Job, instance: o.Instance,
		log: o.Log, gather: o.Gather, kick: make(chan struct{}, 1),
	}, nil
}

// String is the gateway's URL without credentials and the instance, for logs.
func (p *Pusher) String() string { return p.url + " instance=" + p.instance }

// Request asks Run for a push soon and returns at once. Requests made before
// that push starts are all answered by it.
func (p *Pusher) Request() {
	select {
	case p.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Run pushes after each Request, waiting a moment first so that requests
// close together make one push, until ctx ends. Then it deletes the group
// (within a few seconds) so that a stopped instance leaves no stale values
// behind. A failed push is logged with the gateway's address, never its
// credentials, and the next request tries again.
func (p *Pusher) Run(ctx context.Context) {
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deleteTimeout)
		defer cancel()
		if err := p.Delete(dctx); err != nil {
			p.log.Warn("metrics push: could not delete this instance's group", "pushgateway", p.url, "error", err)
			return
		}
		p.log.Info("metrics push: deleted this instance's group", "pushgateway", p.url, "instance", p.instance)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.gather):
		}
		// This push answers the requests made so far.
		select {
		case <-p.kick:
		default:
		}
		err := p.Push(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			p.log.Warn("metrics push failed", "pushgateway", p.url, "error", err)
		case err == nil:
			p.log.Debug("metrics pushed", "pushgateway", p.url, "instance", p.instance)
		}
	}
}

// Push replaces the group on the gateway with the registry's current values.
func (p *Pusher) Push(ctx context.Context) error {
	if p.m == nil {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := p.pusher(ctx).PushContext(ctx); err != nil {
		return fmt.Errorf("push metrics to %s as instance %q: %w", p.url, p.instance, err)
	}
	return nil
}

// Delete removes the group from the gateway. Deleting a group that does not
// exist is not an error.
func (p *Pusher) Delete(ctx context.Context) error {
	if p.m == nil {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := p.pusher(ctx).Delete(); err != nil {
		return fmt.Errorf("delete pushed metrics of instance %q from %s: %w", p.instance, p.url, err)
	}
	return nil
}

// pusher builds the library's Pusher for one call, bound to ctx.
func (p *Pusher) pusher(ctx context.Context) *push.Pusher {
	pp := push.New(p.url, p.job).
		Gatherer(p.m.reg).
		Grouping("instance", p.instance).
		Client(ctxDoer{ctx: ctx, client: http.DefaultClient})
	if p.user != nil {
		pass, _ := p.user.Password()
		pp = pp.BasicAuth(p.user.Username(), pass)
	}
	return pp
}

// ctxDoer binds every request to ctx: push.Pusher.Delete builds its request
// without a context, and this is how its deadline still applies.
type ctxDoer struct {
	ctx    context.Context
	client *http.Client
}

func (d ctxDoer) Do(req *http.Request) (*http.Response, error) {
	return d.client.Do(req.WithContext(d.ctx))
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, defaultPushTimeout)
}
