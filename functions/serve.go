package functions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// PortEnv is set by the Azure Functions host to the port its custom handler
// must listen on.
const PortEnv = "FUNCTIONS_CUSTOMHANDLER_PORT"

// UnderHost reports whether the Azure Functions host runs this process: it
// sets PortEnv for its custom handler.
func UnderHost(getenv func(string) string) bool { return getenv(PortEnv) != "" }

// Server timeouts. WriteTimeout leaves room for a /reconcile invocation
// (DefaultReconcileTimeout) to finish and answer.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownTimeout bounds the graceful drain once ctx ends; the Functions
	// host and Kubernetes both kill a little after 30 s.
	shutdownTimeout = 20 * time.Second
)

// ServeOptions configures Serve.
type ServeOptions struct {
	// Handler serves every request, normally NewHandler's.
	Handler http.Handler
	// Addr is the listen address when not under the Functions host.
	Addr string
	// Getenv reads the environment; nil means os.Getenv.
	Getenv func(string) string
	// Interval is the period of the built-in timer when not under the
	// Functions host; it must be positive then.
	Interval time.Duration
	// Reconciler is run by the built-in timer; required when not under the
	// Functions host.
	Reconciler Reconciler
	// Logger receives the listen address and timer failures.
	Logger *slog.Logger
	// OnListen, if set, is called with the bound address once listening
	// (useful with port 0).
	OnListen func(addr string)
}

// Serve listens and serves until ctx ends, then shuts down gracefully within
// a bound. Under the Azure Functions host (FUNCTIONS_CUSTOMHANDLER_PORT set)
// it listens on 127.0.0.1 on that port and leaves the timer to the host,
// which posts to /reconcile. Otherwise it listens on Addr and runs
// Reconciler.RunAll itself at start and every Interval, each pass bounded by
// the interval so passes never overlap.
func Serve(ctx context.Context, o ServeOptions) error {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Handler == nil {
		return errors.New("serve: no handler")
	}

	addr := o.Addr
	underHost := UnderHost(getenv)
	if underHost {
		addr = net.JoinHostPort("127.0.0.1", getenv(PortEnv))
	} else {
		if o.Reconciler == nil {
			return errors.New("serve: the built-in timer needs a reconciler")
		}
		if o.Interval <= 0 {
			return fmt.Errorf("serve: timer interval must be positive, got %s", o.Interval)
		}
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w", addr, err)
	}
	bound := ln.Addr().String()
	log.Info("listening", "addr", bound, "functions_host", underHost, "timer", !underHost)
	if o.OnListen != nil {
		o.OnListen(bound)
	}

	srv := &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	var wg sync.WaitGroup
	timerCtx, stopTimer := context.WithCancel(ctx)
	defer stopTimer()
	if !underHost {
		wg.Go(func() { runTimer(timerCtx, o.Reconciler, o.Interval, log) })
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	select {
	case err := <-serveErr:
		stopTimer()
		wg.Wait()
		return fmt.Errorf("serve on %s: %w", bound, err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "addr", bound)
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	shutErr := srv.Shutdown(shutCtx)
	if shutErr != nil {
		// Drain took too long: drop what is left.
		_ = srv.Close()
	}
	<-serveErr // http.ErrServerClosed once Shutdown or Close has run
	wg.Wait()
	if shutErr != nil {
		return fmt.Errorf("serve: shutdown: %w", shutErr)
	}
	return nil
}

// runTimer reconciles every pool now and then every interval until ctx ends.
func runTimer(ctx context.Context, r Reconciler, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		runOnce(ctx, r, interval, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// runOnce waits at most one interval for a pass of every pool. A reconcile
// that fails logs its own error; one still running when the interval is up
// carries on (the next tick's trigger joins it), so that is no failure.
func runOnce(ctx context.Context, r Reconciler, interval time.Duration, log *slog.Logger) {
	passCtx, cancel := context.WithTimeout(ctx, interval)
	defer cancel()
	for _, res := range runAll(passCtx, r) {
		if res.err != nil && ctx.Err() == nil && passCtx.Err() != nil && errors.Is(res.err, passCtx.Err()) {
			log.Info("timer pass still running after one interval; it carries on and nothing is lost", "pool", res.pool, "interval", interval)
		}
	}
}
