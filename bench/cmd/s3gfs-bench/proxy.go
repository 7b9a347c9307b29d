package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Request classes the counting proxy tells apart.
const (
	reqPut = iota
	reqGet
	reqHead
	reqList
	reqDelete
	reqPost // multipart uploads, multi-object delete
	reqOther
	nReq
)

var reqNames = [nReq]string{"PUT", "GET", "HEAD", "LIST", "DELETE", "POST", "other"}

// counts is a snapshot of the proxy's counters.
type counts [nReq]int64

func (c counts) sub(o counts) counts {
	for i := range c {
		c[i] -= o[i]
	}
	return c
}

func (c counts) total() int64 {
	var n int64
	for _, v := range c {
		n += v
	}
	return n
}

// countingProxy forwards every request to one S3 endpoint unchanged (the
// Host header too, so SigV4 signatures made for the proxy's address still
// verify at the server) and counts them by class.
type countingProxy struct {
	ln  net.Listener
	srv *http.Server
	n   [nReq]atomic.Int64

	// With a trace file, every request is logged with the workload
	// running at the time (label), its status and its latency.
	traceMu sync.Mutex
	trace   io.Writer
	label   atomic.Pointer[string]
}

// setLabel names the workload that requests from now on belong to.
func (p *countingProxy) setLabel(s string) {
	if p != nil {
		p.label.Store(&s)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush lets the reverse proxy stream bodies.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func newCountingProxy(target string, trace io.Writer) (*countingProxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{ln: ln, trace: trace}
	p.setLabel("-")
	bufs := &bufferPool{}
	rp := &httputil.ReverseProxy{
		Director: func(r *http.Request) {
			r.URL.Scheme = u.Scheme
			r.URL.Host = u.Host
			// r.Host stays what the client sent and signed.
		},
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     60 * time.Second,
			DisableCompression:  true,
		},
		BufferPool: bufs,
		ErrorLog:   log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			class := classify(r)
			p.n[class].Add(1)
			if p.trace == nil {
				rp.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			rp.ServeHTTP(sw, r)
			d := time.Since(start)
			p.traceMu.Lock()
			fmt.Fprintf(p.trace, "%s %s %s %d %.2fms %s\n", start.Format("15:04:05.000000"), *p.label.Load(),
				reqNames[class], sw.status, float64(d.Microseconds())/1000, r.URL.RequestURI())
			p.traceMu.Unlock()
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go p.srv.Serve(ln)
	return p, nil
}

func (p *countingProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *countingProxy) snapshot() counts {
	var c counts
	for i := range c {
		c[i] = p.n[i].Load()
	}
	return c
}

func (p *countingProxy) Close() { p.srv.Close() }

// classify sorts a path-style S3 request into a class.
func classify(r *http.Request) int {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucketOnly := !strings.Contains(strings.TrimSuffix(path, "/"), "/")
	q := r.URL.Query()
	switch r.Method {
	case http.MethodPut:
		return reqPut
	case http.MethodGet:
		if bucketOnly || q.Has("list-type") {
			return reqList
		}
		return reqGet
	case http.MethodHead:
		return reqHead
	case http.MethodDelete:
		return reqDelete
	case http.MethodPost:
		return reqPost
	}
	return reqOther
}

type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return *v.(*[]byte)
	}
	return make([]byte, 256<<10)
}

func (b *bufferPool) Put(v []byte) { b.p.Put(&v) }
