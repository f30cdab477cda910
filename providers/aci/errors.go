package aci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/agentscaler/agentscaler/providers"
)

// CapacityRetryAfter is the retry hint of a region capacity error that
// brings no Retry-After: ACI says the resources are not available "at this
// moment", which passes in minutes rather than seconds.
const CapacityRetryAfter = 30 * time.Second

// quotaRE finds the quota ACI names in its message: "container group quota
// 'StandardCores' exceeded in region 'eastus'".
var quotaRE = regexp.MustCompile(`quota '([^']+)'`)

// maxMessage bounds the service message carried in an error.
const maxMessage = 400

// failure classifies err for the scaler (see providers.Error) and makes sure
// its text holds none of secrets. The original error stays reachable with
// errors.As for callers that want the SDK's details.
func failure(op, name string, err error, secrets []string) error {
	pe := &providers.Error{Op: op, Name: name}
	text := err.Error()
	var re *azcore.ResponseError
	var authErr *azidentity.AuthenticationFailedError
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		pe.Reason = "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		pe.Retryable, pe.Reason = true, "timeout"
	case errors.As(err, &re):
		text = classifyResponse(pe, re)
	case errors.As(err, &authErr):
		pe.Reason = "auth"
	case isNonRetriable(err):
		// The SDK marks what it will not retry outside a response: in
		// practice the credential failing to get a token.
		pe.Reason = "auth"
	case errors.As(err, &netErr):
		pe.Retryable, pe.Reason = true, "network"
	default:
		pe.Retryable, pe.Reason = true, "unknown"
	}
	pe.Err = &scrubbed{text: scrub(text, secrets), err: err}
	return pe
}

// classifyResponse fills pe from an ARM error response and returns the text
// for it: status, code and the service's message.
func classifyResponse(pe *providers.Error, re *azcore.ResponseError) string {
	code, msg := re.ErrorCode, armMessage(re.RawResponse)
	after := retryAfter(re.RawResponse)
	lcode, lmsg := strings.ToLower(code), strings.ToLower(msg)
	status := re.StatusCode
	switch {
	case status == http.StatusTooManyRequests:
		pe.Retryable, pe.Reason, pe.RetryAfter = true, "throttled", after
	case strings.Contains(lcode, "quota") || strings.Contains(lmsg, "quota"):
		// Quotas lift only when raised or when groups go; reconciles
		// try again on their own schedule.
		name := code
		if m := quotaRE.FindStringSubmatch(msg); m != nil {
			name = m[1]
		}
		pe.Reason = "quota:" + name
	case code == "ServiceUnavailable" || strings.Contains(lcode, "capacity") || strings.Contains(lmsg, "not available in the location"):
		// Region capacity: transient by ACI's own words, so retryable,
		// but not within seconds.
		pe.Retryable, pe.Reason, pe.RetryAfter = true, "capacity", max(after, CapacityRetryAfter)
	case status == http.StatusUnauthorized || status == http.StatusForbidden || strings.Contains(lcode, "authorization") || strings.Contains(lcode, "authentication"):
		pe.Reason = "auth"
	case code == "MissingSubscriptionRegistration":
		pe.Reason = "not_registered"
	case status == http.StatusConflict:
		// Another operation on the group is still running (a delete, a
		// create from another process); it settles.
		pe.Retryable, pe.Reason, pe.RetryAfter = true, "conflict", after
	case status == http.StatusRequestTimeout || status >= 500:
		pe.Retryable, pe.Reason, pe.RetryAfter = true, "server_error", after
	case strings.Contains(lcode, "image") || strings.Contains(lcode, "registry"):
		pe.Reason = "image"
	case status == http.StatusNotFound:
		pe.Reason = "not_found"
	case status < 400:
		// An operation that failed after ARM accepted it, for a reason
		// not matched above.
		pe.Reason = "provisioning_failed"
	default:
		pe.Reason = "invalid_request"
	}
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	if status < 400 {
		text = "operation failed"
	}
	if code != "" {
		text += ": " + code
	}
	if msg != "" {
		text += ": " + msg
	}
	return text
}

// armMessage reads the message of an ARM error body: {"error": {"code",
// "message", "details": [...]}}, also inside a failed operation's status.
func armMessage(resp *http.Response) string {
	if resp == nil {
		return ""
	}
	body, err := runtime.Payload(resp)
	if err != nil || len(body) == 0 {
		return ""
	}
	type detail struct {
		Message string   `json:"message"`
		Details []detail `json:"details"`
	}
	var wrapped struct {
		Error *detail `json:"error"`
		detail
	}
	if json.Unmarshal(body, &wrapped) != nil {
		return ""
	}
	d := wrapped.detail
	if wrapped.Error != nil {
		d = *wrapped.Error
	}
	parts := []string{}
	if d.Message != "" {
		parts = append(parts, d.Message)
	}
	for _, sub := range d.Details {
		if sub.Message != "" && sub.Message != d.Message {
			parts = append(parts, sub.Message)
		}
	}
	msg := strings.Join(parts, "; ")
	if len(msg) > maxMessage {
		msg = msg[:maxMessage] + "..."
	}
	return msg
}

// retryAfter reads the server's retry hint the way the SDK does:
// retry-after-ms, x-ms-retry-after-ms, then Retry-After in seconds or as a date.
func retryAfter(resp *http.Response) time.Duration {
	if resp == nil {
		return 0
	}
	for _, h := range []string{"retry-after-ms", "x-ms-retry-after-ms"} {
		if ms, err := strconv.Atoi(resp.Header.Get(h)); err == nil && ms > 0 {
			return time.Duration(ms) * time.Millisecond
		}
	}
	v := resp.Header.Get("Retry-After")
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// statusOf is the HTTP status of an ARM error response, 0 for other errors.
func statusOf(err error) int {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// isNonRetriable reports whether the SDK marked err as not worth a retry
// (its errorinfo.NonRetriable marker).
func isNonRetriable(err error) bool {
	var nr interface{ NonRetriable() }
	return errors.As(err, &nr)
}

// scrubbed carries err with a text cleaned of secrets.
type scrubbed struct {
	text string
	err  error
}

func (s *scrubbed) Error() string { return s.text }
func (s *scrubbed) Unwrap() error { return s.err }

func scrub(text string, secrets []string) string {
	for _, s := range secrets {
		if s != "" {
			text = strings.ReplaceAll(text, s, "[redacted]")
		}
	}
	return text
}
