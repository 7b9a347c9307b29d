package driver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"k8s.io/klog/v2"
)

// The mounter protocol: JSON over HTTP on a unix socket that only root can
// open (the node plugin and the mounter share it through a directory of
// the node pod). POST /mount with a MountSpec answers {"pid": N}; POST
// /unmount with {"target": ..., "pid": N} answers {}; GET /healthz answers
// 200 (the mounter's health check, ProbeMounter). A failure answers
// {"code": <gRPC code>, "error": "..."} with a non-200 status. The
// credentials in a MountSpec cross only this socket.

type mountReply struct {
	PID   int    `json:"pid,omitempty"`
	Code  uint32 `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
}

type unmountRequest struct {
	Target string `json:"target"`
	PID    int    `json:"pid,omitempty"`
}

// MounterServer serves a Mounter (normally a Supervisor) on a unix socket.
type MounterServer struct {
	Mounter Mounter
	srv     *http.Server
}

// Serve listens on the unix socket path (replacing a stale socket file)
// and serves until Shutdown.
func (s *MounterServer) Serve(path string) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /mount", s.mount)
	mux.HandleFunc("POST /unmount", s.unmount)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err = s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops serving requests (the mounts stay).
func (s *MounterServer) Shutdown(ctx context.Context) error {
	if s.srv == nil {
		return nil
	}
	return s.srv.Shutdown(ctx)
}

func (s *MounterServer) mount(w http.ResponseWriter, r *http.Request) {
	var spec MountSpec
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
		reply(w, 0, fmt.Errorf("%w: mount request: %v", ErrInvalid, err))
		return
	}
	if !strings.HasPrefix(spec.Target, "/") || !strings.HasPrefix(spec.URL, "s3://") {
		reply(w, 0, fmt.Errorf("%w: mount request: want an s3:// URL and an absolute target", ErrInvalid))
		return
	}
	start := time.Now()
	pid, err := s.Mounter.Mount(r.Context(), spec)
	klog.InfoS("mount", "spec", spec.String(), "pid", pid, "err", err, "duration", time.Since(start))
	reply(w, pid, err)
}

func (s *MounterServer) unmount(w http.ResponseWriter, r *http.Request) {
	var req unmountRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || !strings.HasPrefix(req.Target, "/") {
		reply(w, 0, fmt.Errorf("%w: unmount request: want an absolute target", ErrInvalid))
		return
	}
	err := s.Mounter.Unmount(r.Context(), req.Target, req.PID)
	klog.InfoS("unmount", "target", req.Target, "err", err)
	reply(w, 0, err)
}

func reply(w http.ResponseWriter, pid int, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(mountReply{Code: uint32(code(err)), Error: err.Error()})
		return
	}
	json.NewEncoder(w).Encode(mountReply{PID: pid})
}

// RemoteMounter is the node plugin's client of a MounterServer.
type RemoteMounter struct {
	Socket string
	client *http.Client
}

// NewRemoteMounter returns a client of the mounter serving on socket.
func NewRemoteMounter(socket string) *RemoteMounter {
	return &RemoteMounter{Socket: socket, client: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}
}

func (m *RemoteMounter) call(ctx context.Context, path string, body any) (mountReply, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return mountReply{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://mounter"+path, strings.NewReader(string(b)))
	if err != nil {
		return mountReply{}, err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return mountReply{}, fmt.Errorf("%w: mounter at %s: %v", errMounterDown, m.Socket, err)
	}
	defer resp.Body.Close()
	var rep mountReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&rep); err != nil {
		return mountReply{}, fmt.Errorf("mounter at %s: bad reply: %v", m.Socket, err)
	}
	if rep.Error != "" {
		return rep, &codedError{code: codes.Code(rep.Code), msg: rep.Error}
	}
	return rep, nil
}

func (m *RemoteMounter) Mount(ctx context.Context, spec MountSpec) (int, error) {
	rep, err := m.call(ctx, "/mount", spec)
	return rep.PID, err
}

func (m *RemoteMounter) Unmount(ctx context.Context, target string, pid int) error {
	// The pid is the mounter's (another pid namespace): it finds its own.
	_, err := m.call(ctx, "/unmount", unmountRequest{Target: target})
	return err
}

// errMounterDown: the mounter process cannot be reached.
var errMounterDown = errors.New("mounter unavailable")

// codedError carries a gRPC code across the mounter socket.
type codedError struct {
	code codes.Code
	msg  string
}

func (e *codedError) Error() string { return e.msg }
