package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"k8s.io/klog/v2"
)

// DefaultDriverName is the CSI driver name (the CSIDriver object's name
// and the StorageClass provisioner).
const DefaultDriverName = "csi.s3gfs.io"

// Server serves the CSI identity service and either the controller or the
// node service on a unix socket, with call logging and metrics.
type Server struct {
	Name, Version string
	grpc          *grpc.Server
	registry      *prometheus.Registry
	calls         *prometheus.CounterVec
	durations     *prometheus.HistogramVec
	inFlight      *prometheus.GaugeVec
	service       string
}

// NewControllerServer returns a Server for the controller service.
func NewControllerServer(name, version string, cfg ControllerConfig) *Server {
	s := newServer(name, version, "controller")
	g := newGuard()
	csi.RegisterIdentityServer(s.grpc, &identityServer{name: s.Name, version: s.Version})
	csi.RegisterControllerServer(s.grpc, newControllerServer(cfg, g))
	return s
}

// NewNodeServer returns a Server for the node service. It rediscovers the
// volumes a previous run of the plugin staged.
func NewNodeServer(name, version string, cfg NodeConfig) (*Server, error) {
	s := newServer(name, version, "node")
	ns, err := newNodeServer(cfg, newGuard())
	if err != nil {
		return nil, err
	}
	csi.RegisterIdentityServer(s.grpc, &identityServer{name: s.Name, version: s.Version})
	csi.RegisterNodeServer(s.grpc, ns)
	return s, nil
}

func newServer(name, version, service string) *Server {
	if name == "" {
		name = DefaultDriverName
	}
	if version == "" {
		version = "dev"
	}
	s := &Server{Name: name, Version: version, service: service, registry: prometheus.NewRegistry()}
	s.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "s3gfs_csi_operations_total", Help: "CSI calls served, by method and gRPC code.",
		ConstLabels: prometheus.Labels{"service": service},
	}, []string{"method", "code"})
	s.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "s3gfs_csi_operation_duration_seconds", Help: "Time to serve a CSI call, by method.",
		ConstLabels: prometheus.Labels{"service": service},
		Buckets:     []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"method"})
	s.inFlight = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "s3gfs_csi_operations_in_flight", Help: "CSI calls being served, by method.",
		ConstLabels: prometheus.Labels{"service": service},
	}, []string{"method"})
	s.registry.MustRegister(s.calls, s.durations, s.inFlight,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	s.grpc = grpc.NewServer(grpc.UnaryInterceptor(s.intercept))
	return s
}

// quiet methods are called every few seconds or minutes by probes and the
// kubelet's volume statistics; they are logged at verbosity 5 only. Every
// other call is logged, with its request, at the default verbosity.
var quiet = map[string]bool{"Probe": true, "GetPluginInfo": true, "GetPluginCapabilities": true,
	"NodeGetCapabilities": true, "ControllerGetCapabilities": true, "NodeGetInfo": true, "NodeGetVolumeStats": true}

// intercept logs each call with its secrets stripped, maps its error to a
// gRPC status (with every secret value scrubbed from the message) and
// records metrics.
func (s *Server) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod[strings.LastIndexByte(info.FullMethod, '/')+1:]
	var secrets []string
	logged := "<not a proto message>"
	if m, ok := req.(proto.Message); ok {
		secrets = secretValues(m)
		logged = sanitize(m)
	}
	lv := klog.Level(0)
	if quiet[method] {
		lv = 5
	}
	klog.V(lv).InfoS("call", "method", method, "request", logged)
	s.inFlight.WithLabelValues(method).Inc()
	start := time.Now()
	resp, err := func() (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				klog.ErrorS(nil, "panic in handler", "method", method, "panic", fmt.Sprint(r))
				err = fmt.Errorf("internal error: %v", r)
			}
		}()
		return handler(ctx, req)
	}()
	d := time.Since(start)
	s.inFlight.WithLabelValues(method).Dec()
	err = toStatus(err, secrets)
	c := status.Code(err)
	s.calls.WithLabelValues(method, c.String()).Inc()
	s.durations.WithLabelValues(method).Observe(d.Seconds())
	if err != nil {
		klog.InfoS("call failed", "method", method, "code", c.String(), "err", status.Convert(err).Message(), "duration", d)
	} else {
		klog.V(lv).InfoS("call done", "method", method, "duration", d)
	}
	return resp, err
}

// walkSecrets calls f for every field marked csi_secret in m.
func walkSecrets(m protoreflect.Message, f func(m protoreflect.Message, fd protoreflect.FieldDescriptor)) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if opts := fd.Options(); opts != nil && proto.GetExtension(opts, csi.E_CsiSecret).(bool) {
			f(m, fd)
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkSecrets(l.Get(i).Message(), f)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkSecrets(mv.Message(), f)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkSecrets(v.Message(), f)
		}
		return true
	})
}

// secretValues returns the values of every secret field of m.
func secretValues(m proto.Message) []string {
	var out []string
	walkSecrets(m.ProtoReflect(), func(pm protoreflect.Message, fd protoreflect.FieldDescriptor) {
		v := pm.Get(fd)
		switch {
		case fd.IsMap():
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				out = append(out, mv.String())
				return true
			})
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, v.String())
		}
	})
	return out
}

// sanitize renders m with every secret value replaced (map keys stay, so
// the log shows which secrets were passed).
func sanitize(m proto.Message) string {
	c := proto.Clone(m)
	walkSecrets(c.ProtoReflect(), func(pm protoreflect.Message, fd protoreflect.FieldDescriptor) {
		switch {
		case fd.IsMap():
			mp := pm.Mutable(fd).Map()
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				mp.Set(k, protoreflect.ValueOfString(redacted))
				return true
			})
		case fd.Kind() == protoreflect.StringKind:
			pm.Set(fd, protoreflect.ValueOfString(redacted))
		}
	})
	return fmt.Sprintf("%v", c)
}

// Serve listens on endpoint (unix:///path/csi.sock or unix:/path) and
// serves until Stop. A stale socket file is replaced.
func (s *Server) Serve(endpoint string) error {
	l, err := Listen(endpoint)
	if err != nil {
		return err
	}
	klog.InfoS("serving", "service", s.service, "driver", s.Name, "version", s.Version, "endpoint", endpoint)
	return s.grpc.Serve(l)
}

// Listen opens the unix socket an --endpoint names.
func Listen(endpoint string) (net.Listener, error) {
	path, ok := strings.CutPrefix(endpoint, "unix://")
	if !ok {
		path, ok = strings.CutPrefix(endpoint, "unix:")
	}
	if !ok || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("endpoint %q: want unix:///absolute/path/csi.sock", endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return net.Listen("unix", path)
}

// Stop stops serving (calls in progress finish). Mounts are not touched.
func (s *Server) Stop() { s.grpc.GracefulStop() }

// MetricsHandler serves the Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry})
}

// Registry is the server's Prometheus registry (to add collectors to).
func (s *Server) Registry() *prometheus.Registry { return s.registry }
