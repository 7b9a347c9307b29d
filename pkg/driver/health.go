package driver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
)

// Health checks, served by the plugins and the mounter themselves for the
// kubelet's probes (instead of the livenessprobe sidecar): /healthz runs a
// check through the same socket the kubelet or the node plugin uses, so a
// process whose socket is gone or whose server hangs fails it.

// healthTimeout bounds one check.
const healthTimeout = 5 * time.Second

// ServeHealth serves /healthz at addr in the background ("" = not at all):
// 200 when check succeeds within healthTimeout, else 503 with its error.
func ServeHealth(addr string, check func(context.Context) error) {
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", healthHandler(check))
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "health server stopped", "addr", addr)
			os.Exit(1)
		}
	}()
}

func healthHandler(check func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		if err := check(ctx); err != nil {
			klog.InfoS("health check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "unhealthy:", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// ProbeCSI is a check that calls the CSI Probe of the plugin serving
// endpoint (unix:///path/csi.sock), as the livenessprobe sidecar would.
func ProbeCSI(endpoint string) (func(context.Context) error, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		path, ok = strings.CutPrefix(endpoint, "unix:")
	}
	if !ok || !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("endpoint %q: want unix:///absolute/path/csi.sock", endpoint)
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	client := csi.NewIdentityClient(conn)
	return func(ctx context.Context) error {
		resp, err := client.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			return fmt.Errorf("CSI Probe on %s: %w", path, err)
		}
		if r := resp.GetReady(); r != nil && !r.GetValue() {
			return fmt.Errorf("CSI Probe on %s: not ready", path)
		}
		return nil
	}, nil
}

// ProbeMounter is a check that asks the mounter serving socket for its
// /healthz, as the node plugin reaches it.
func ProbeMounter(socket string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://mounter/healthz", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("mounter at %s: %w", socket, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("mounter at %s: %s", socket, resp.Status)
		}
		return nil
	}
}
