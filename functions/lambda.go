package functions

// The AWS Lambda host. Lambda hands the process one event at a time as JSON
// and freezes it between events. Two event shapes reach us:
//
//   - HTTP, from a Lambda function URL or an API Gateway HTTP API (payload
//     format 2.0, the same shape for both): it becomes an *http.Request for
//     the shared handler, and the recorded response goes back as the 2.0
//     response object. Only the routes under /api/ are forwarded, as the
//     Functions host forwards only its HTTP-trigger functions: /reconcile is
//     the timer's, and a public URL must not let anyone trigger reconciles.
//   - an EventBridge "Scheduled Event" (a rule with source aws.events, or
//     EventBridge Scheduler with that payload as input): a reconcile of every
//     pool, failing the invocation when any pool failed.
//
// Because Lambda freezes the process once an invocation returns, work a
// request started in the background (a webhook's triggered reconcile) would
// stall until some later invocation thawed it. The adapter therefore waits
// for that work after the handler has answered, bounded by the invocation's
// deadline less a margin to post the answer.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	pathpkg "path"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"

	"github.com/agentscaler/agentscaler/internal/logsafe"
)

// DefaultLambdaMargin is what Lambda.Invoke keeps back from the invocation
// deadline to post its answer to the Runtime API.
const DefaultLambdaMargin = time.Second

// maxLambdaResponse bounds a recorded response body. Lambda refuses a
// synchronous response payload over 6 MB, and a binary body grows by a third
// in base64; stay well below.
const maxLambdaResponse = 4 << 20

// lambdaRoutePrefix is the part of the route table reachable over HTTP.
const lambdaRoutePrefix = "/api/"

// Pending is what Lambda needs to hold an invocation open until the work a
// request started in the background is done (*scaler.Scaler has it).
type Pending interface {
	WaitIdle(ctx context.Context) error
}

// Lambda serves Lambda invocations with the shared handler. Its Invoke
// method has the signature of lambda.Handler, so lambda.Start can run it.
type Lambda struct {
	// Handler serves HTTP events, normally NewHandler's.
	Handler http.Handler
	// Reconciler runs scheduled events; nil makes them fail.
	Reconciler Reconciler
	// Pending is waited for after each HTTP event; nil waits for nothing.
	Pending Pending
	// Logger receives scheduled passes, failed pools, and background work
	// cut off by the deadline; nil discards.
	Logger *slog.Logger
	// ReconcileTimeout bounds a scheduled reconcile; 0 means
	// DefaultReconcileTimeout. The invocation deadline bounds it too.
	ReconcileTimeout time.Duration
	// Margin is kept back from the invocation deadline; 0 means
	// DefaultLambdaMargin.
	Margin time.Duration
}

// lambdaEvent holds the fields that tell the event shapes apart.
type lambdaEvent struct {
	DetailType     string `json:"detail-type"`
	Source         string `json:"source"`
	RequestContext struct {
		HTTP struct {
			Method string `json:"method"`
		} `json:"http"`
	} `json:"requestContext"`
}

// scheduledResult is the answer to a scheduled event: each pool's outcome,
// "ok" or the error, in pool order.
type scheduledResult struct {
	Pools []poolOutcome `json:"pools"`
}

// poolOutcome is one pool's line of a scheduledResult.
type poolOutcome struct {
	Pool   string `json:"pool"`
	Result string `json:"result"`
}

// Invoke handles one invocation payload and returns the JSON answer. An error
// makes Lambda record the invocation as failed.
func (l *Lambda) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	var ev lambdaEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("lambda event: not a JSON object: %w", err)
	}
	switch {
	case ev.RequestContext.HTTP.Method != "":
		resp, err := l.serveHTTP(ctx, payload)
		if err != nil {
			return nil, err
		}
		return json.Marshal(resp)
	case ev.DetailType == "Scheduled Event" && (ev.Source == "aws.events" || ev.Source == "aws.scheduler"):
		res, err := l.scheduled(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(res)
	}
	return nil, fmt.Errorf(`lambda event: unknown shape (detail-type %q, source %q): want an HTTP event `+
		`from a function URL or an API Gateway HTTP API with payload format 2.0 (requestContext.http), `+
		`or an EventBridge "Scheduled Event" (source aws.events or aws.scheduler)`, logsafe.Clip(ev.DetailType), logsafe.Clip(ev.Source))
}

func (l *Lambda) log() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Logger
}

// bounded returns ctx cut Margin before its deadline, or ctx unchanged when
// it has none.
func (l *Lambda) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	margin := l.Margin
	if margin <= 0 {
		margin = DefaultLambdaMargin
	}
	return context.WithDeadline(ctx, deadline.Add(-margin))
}

// scheduled reconciles every pool within the invocation deadline.
func (l *Lambda) scheduled(ctx context.Context) (scheduledResult, error) {
	if l.Reconciler == nil {
		return scheduledResult{}, errors.New("scheduled event: no reconciler configured")
	}
	timeout := l.ReconcileTimeout
	if timeout <= 0 {
		timeout = DefaultReconcileTimeout
	}
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	defer cancelTimeout()

	res := scheduledResult{Pools: []poolOutcome{}}
	var errs []error
	for _, r := range runAll(ctx, l.Reconciler) {
		if r.err != nil {
			l.log().Warn("reconcile failed", "pool", r.pool, "error", r.err)
			errs = append(errs, fmt.Errorf("pool %s: %w", r.pool, r.err))
			res.Pools = append(res.Pools, poolOutcome{Pool: r.pool, Result: r.err.Error()})
			continue
		}
		res.Pools = append(res.Pools, poolOutcome{Pool: r.pool, Result: "ok"})
	}
	l.log().Info("scheduled reconcile", "pools", len(res.Pools), "failed", len(errs))
	if len(errs) > 0 {
		return res, fmt.Errorf("scheduled reconcile: %w", errors.Join(errs...))
	}
	return res, nil
}

// serveHTTP runs an HTTP event through the handler, then waits for the work
// it started.
func (l *Lambda) serveHTTP(ctx context.Context, payload []byte) (events.LambdaFunctionURLResponse, error) {
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(payload, &ev); err != nil {
		return events.LambdaFunctionURLResponse{}, fmt.Errorf("lambda HTTP event: %w", err)
	}
	req, err := httpRequest(ctx, &ev)
	if err != nil {
		return events.LambdaFunctionURLResponse{}, err
	}
	rec := newLambdaRecorder()
	if strings.HasPrefix(pathpkg.Clean(req.URL.Path)+"/", lambdaRoutePrefix) {
		l.Handler.ServeHTTP(rec, req)
	} else {
		http.NotFound(rec, req)
	}
	l.settle(ctx)
	return rec.response(l.log(), req)
}

// settle waits for background work until the bounded deadline. Work still
// running then is left to a later invocation or the next scheduled pass.
func (l *Lambda) settle(ctx context.Context) {
	if l.Pending == nil {
		return
	}
	ctx, cancel := l.bounded(ctx)
	defer cancel()
	if err := l.Pending.WaitIdle(ctx); err != nil {
		l.log().Warn("background reconcile still running at the invocation deadline; " +
			"it resumes with the next invocation, and the scheduled pass repairs what it missed")
	}
}

// httpRequest builds the request the 2.0 payload describes.
func httpRequest(ctx context.Context, ev *events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	// An HTTP API stage other than $default prefixes the path with its name.
	if st := ev.RequestContext.Stage; st != "" && st != "$default" {
		if rest, ok := strings.CutPrefix(path, "/"+st); ok && (rest == "" || rest[0] == '/') {
			path = rest
		}
	}
	if path == "" {
		path = "/"
	}
	host := ev.RequestContext.DomainName
	if host == "" {
		host = "lambda-url.invalid"
	}
	raw := "https://" + host + path
	if ev.RawQueryString != "" {
		raw += "?" + ev.RawQueryString
	}
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		return nil, fmt.Errorf("lambda HTTP event: rawPath %q and rawQueryString: %w", logsafe.Clip(path), err)
	}

	body, length := strings.NewReader(ev.Body), int64(len(ev.Body))
	req, err := http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("lambda HTTP event: requestContext.http.method %q: %w", logsafe.Clip(ev.RequestContext.HTTP.Method), err)
	}
	if ev.IsBase64Encoded {
		// Decoded as the handler reads, so the handler's own bound applies.
		req.Body = http.NoBody
		if ev.Body != "" {
			req.Body = io.NopCloser(base64.NewDecoder(base64.StdEncoding, body))
		}
		length = base64Len(ev.Body)
	}
	req.ContentLength = length
	req.Proto, req.ProtoMajor, req.ProtoMinor = "HTTP/1.1", 1, 1
	if p := ev.RequestContext.HTTP.Protocol; p != "" {
		if major, minor, ok := http.ParseHTTPVersion(p); ok {
			req.Proto, req.ProtoMajor, req.ProtoMinor = p, major, minor
		}
	}
	req.RequestURI = u.RequestURI()
	req.Host = host
	// Repeated headers arrive joined with commas, as HTTP allows; keep them
	// so. Host and Content-Length live in their fields, as net/http has them.
	for k, v := range ev.Headers {
		switch {
		case strings.EqualFold(k, "host"):
			req.Host = v
		case strings.EqualFold(k, "content-length"):
		default:
			req.Header.Add(k, v)
		}
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	if ip := ev.RequestContext.HTTP.SourceIP; ip != "" {
		req.RemoteAddr = net.JoinHostPort(ip, "0")
	}
	return req, nil
}

// base64Len is the decoded length of padded standard base64, without decoding.
func base64Len(s string) int64 {
	n := base64.StdEncoding.DecodedLen(len(s))
	for i := len(s) - 1; i >= 0 && i >= len(s)-2 && s[i] == '='; i-- {
		n--
	}
	return int64(max(n, 0))
}

// lambdaRecorder is the ResponseWriter an HTTP event is served with: it
// keeps the status, headers and a bounded body.
type lambdaRecorder struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func newLambdaRecorder() *lambdaRecorder { return &lambdaRecorder{header: http.Header{}} }

func (r *lambdaRecorder) Header() http.Header { return r.header }

func (r *lambdaRecorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *lambdaRecorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(p) > maxLambdaResponse {
		r.overflow = true
		return 0, fmt.Errorf("response body over %d bytes, the most a Lambda response carries here", maxLambdaResponse)
	}
	return r.body.Write(p)
}

// response turns the recording into the 2.0 response object: Set-Cookie
// headers become cookies, other repeated headers are joined with commas, and
// a body that is not UTF-8 text goes base64-encoded.
func (r *lambdaRecorder) response(log *slog.Logger, req *http.Request) (events.LambdaFunctionURLResponse, error) {
	if r.overflow {
		log.Error("response too large for Lambda", "method", req.Method, "path", req.URL.Path, "limit", maxLambdaResponse)
		return events.LambdaFunctionURLResponse{
			StatusCode: http.StatusInternalServerError,
			Headers:    map[string]string{"Content-Type": "text/plain; charset=utf-8"},
			Body:       "internal error: response too large\n",
		}, nil
	}
	status := r.status
	if status == 0 {
		status = http.StatusOK
	}
	body := r.body.Bytes()
	if req.Method == http.MethodHead {
		body = nil
	}
	// As net/http does: sniff a missing Content-Type from the body.
	if _, ok := r.header["Content-Type"]; !ok && len(body) > 0 {
		r.header.Set("Content-Type", http.DetectContentType(body))
	}
	resp := events.LambdaFunctionURLResponse{StatusCode: status, Headers: map[string]string{}}
	for k, vs := range r.header {
		if k == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, vs...)
			continue
		}
		resp.Headers[k] = strings.Join(vs, ",")
	}
	if len(body) == 0 || isText(r.header.Get("Content-Type")) && utf8.Valid(body) {
		resp.Body = string(body)
	} else {
		resp.Body = base64.StdEncoding.EncodeToString(body)
		resp.IsBase64Encoded = true
	}
	return resp, nil
}

// isText reports whether a media type is text the 2.0 response can carry as is.
func isText(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "text/"),
		mt == "application/json", strings.HasSuffix(mt, "+json"),
		mt == "application/xml", strings.HasSuffix(mt, "+xml"),
		mt == "application/javascript", mt == "application/x-www-form-urlencoded":
		return true
	}
	return false
}
