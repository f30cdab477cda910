package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/agentscaler/agentscaler/providers"
)

// fail classifies an API error of the call that did verb on resource for
// operation op on name (an instance, or a pool for list).
func (p *Provider) fail(op, name, verb, resource string, err error) error {
	e := &providers.Error{Op: op, Name: name, Err: err}
	code := 0
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		code = int(status.Status().Code)
	}
	switch {
	case errors.Is(err, context.Canceled):
		e.Reason = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		e.Retryable, e.Reason = true, "timeout"
	case apierrors.IsForbidden(err):
		p.forbidden(e, verb, resource)
	case apierrors.IsUnauthorized(err):
		e.Reason = "unauthorized"
		e.Err = fmt.Errorf("the API server does not accept the provider's credentials (the kubeconfig user, or the service account token): %w", err)
	case apierrors.IsTooManyRequests(err):
		e.Retryable, e.Reason = true, "throttled"
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		e.Reason = "invalid"
	case apierrors.IsNotFound(err):
		e.Reason = "not_found"
		e.Err = fmt.Errorf("%s %s: does namespace %q exist? %w", verb, resource, p.opt.Namespace, err)
	case apierrors.IsConflict(err):
		e.Retryable, e.Reason = true, "conflict"
	case apierrors.IsServerTimeout(err), apierrors.IsTimeout(err):
		e.Retryable, e.Reason = true, "timeout"
	case code >= http.StatusInternalServerError:
		e.Retryable, e.Reason = true, "server_error"
	case code != 0:
		e.Reason = "api_error"
	default: // no answer: refused, reset, TLS, DNS
		e.Retryable, e.Reason = true, "unreachable"
	}
	if s, ok := apierrors.SuggestsClientDelay(err); ok && e.Retryable {
		e.RetryAfter = time.Duration(s) * time.Second
	}
	return e
}

// forbidden tells an RBAC denial, which names what to grant, from the
// admission refusals that also answer 403.
func (p *Provider) forbidden(e *providers.Error, verb, resource string) {
	msg := e.Err.Error()
	switch {
	case strings.Contains(msg, "exceeded quota"):
		e.Reason = "quota"
	case strings.Contains(msg, "is being terminated"):
		e.Reason = "namespace_terminating"
	default:
		e.Reason = "forbidden: " + verb + " " + resource
		e.Err = fmt.Errorf("RBAC does not let the provider's identity %s %s in namespace %s; add the verb to its Role (see infra/kubernetes/rbac.yaml): %w",
			verb, resource, p.opt.Namespace, e.Err)
	}
}
