package driver

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// ServeMetrics serves h at addr/metrics in the background ("" = not at all),
// and /healthz: check (nil: always 200), as ServeHealth.
func ServeMetrics(addr string, h http.Handler, check func(context.Context) error) {
	if addr == "" {
		return
	}
	if check == nil {
		check = func(context.Context) error { return nil }
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	mux.Handle("/healthz", healthHandler(check))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "metrics server stopped", "addr", addr)
			os.Exit(1)
		}
	}()
}

// RunUntilSignal runs serve until it fails or SIGINT/SIGTERM arrives, then
// calls stop and waits for serve to return.
func RunUntilSignal(serve func() error, stop func()) error {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	errc := make(chan error, 1)
	go func() { errc <- serve() }()
	select {
	case err := <-errc:
		return err
	case sig := <-sigs:
		klog.InfoS("signal received; stopping", "signal", sig.String())
		stop()
		return <-errc
	}
}

// ShutdownContext is a context for a bounded clean shutdown.
func ShutdownContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 2*time.Minute)
}
