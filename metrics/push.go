package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus/push"
)

// PushJob is the job label of every push to a Pushgateway.
const PushJob = "agentscaler"

// defaultPushTimeout bounds a push whose context carries no deadline, so a
// dead Pushgateway cannot hold a reconcile or a shutdown.
const defaultPushTimeout = 10 * time.Second

// Push replaces this instance's group on the Pushgateway at pushURL with the
// registry's current values, for hosts that no scraper reaches (serverless
// instances come and go). The group is job="agentscaler",
// instance=<instance>; scrape the gateway with honor_labels: true so these
// labels survive. Credentials may be given in the URL (https://user:pass@host);
// they are sent as basic auth and never appear in an error.
func (m *Metrics) Push(ctx context.Context, pushURL, instance string) error {
	if m == nil {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	p, where, err := m.pusher(ctx, pushURL, instance)
	if err != nil {
		return err
	}
	if err := p.PushContext(ctx); err != nil {
		return fmt.Errorf("push metrics to %s as instance %q: %w", where, instance, err)
	}
	return nil
}

// DeletePush removes this instance's group from the Pushgateway, so a
// stopped instance leaves no stale gauges behind. Deleting a group that does
// not exist is not an error.
func (m *Metrics) DeletePush(ctx context.Context, pushURL, instance string) error {
	if m == nil {
		return nil
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	p, where, err := m.pusher(ctx, pushURL, instance)
	if err != nil {
		return err
	}
	if err := p.Delete(); err != nil {
		return fmt.Errorf("delete pushed metrics of instance %q from %s: %w", instance, where, err)
	}
	return nil
}

// pusher builds the Pusher for one call, and the gateway's address with any
// credentials removed, fit for logs and errors.
func (m *Metrics) pusher(ctx context.Context, pushURL, instance string) (*push.Pusher, string, error) {
	if instance == "" {
		return nil, "", errors.New("push metrics: instance is empty")
	}
	u, err := url.Parse(pushURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse errors quote the input, which may hold a password.
		return nil, "", errors.New("push metrics: the Pushgateway URL is not an absolute http(s) URL")
	}
	user := u.User
	u.User = nil
	where := u.Redacted()

	p := push.New(u.String(), PushJob).
		Gatherer(m.reg).
		Grouping("instance", instance).
		Client(ctxDoer{ctx: ctx, client: http.DefaultClient})
	if user != nil {
		pass, _ := user.Password()
		p = p.BasicAuth(user.Username(), pass)
	}
	return p, where, nil
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
