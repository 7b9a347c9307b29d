// Package faultproxy is a fault-injecting HTTP proxy for tests that talk to
// an S3 server over loopback. A Proxy listens on 127.0.0.1 and forwards
// every request to one S3 endpoint, injecting faults chosen at runtime:
// added latency, 503 SlowDown and 500 InternalError answers (with S3's XML
// error body), connections dropped before the request reaches the server,
// after the server handled it (the response is lost: the client cannot
// tell whether a write happened), or in the middle of a response body; a
// partition switch that resets every connection and every new one; and a
// pause switch that holds every request and response, as a network that
// drops packets does while TCP connections survive, until it is lifted.
//
// One proxy per client (per mounted host) makes "partition one host" simply
// "partition its proxy".
//
// Signatures: SigV4 signs the Host header. A client pointed at the proxy
// signs for the proxy's address, and the proxy forwards with that Host
// header unchanged, so the server verifies the signature the client made.
// (versitygw and MinIO check the signature against the Host header they
// receive, not against their own address; faultproxy's tests verify this
// against the test server.)
//
// Randomness is seeded (New's seed), so a run's fault decisions are
// reproducible up to the order in which concurrent requests arrive.
package faultproxy

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Faults say what a proxy does to the requests it forwards. Probabilities
// are per request, in [0, 1], and are drawn in the order listed: at most
// one of SlowDown, InternalError, DropBefore, DropAfter and DropMidBody
// happens to one request.
type Faults struct {
	// Latency is added before each request is forwarded (or failed), plus a
	// uniformly random extra in [0, Jitter).
	Latency time.Duration
	Jitter  time.Duration

	// SlowDown answers 503 SlowDown without forwarding the request.
	SlowDown float64
	// InternalError answers 500 InternalError without forwarding.
	InternalError float64
	// DropBefore closes the client's connection without forwarding the
	// request and without any response.
	DropBefore float64
	// DropAfter forwards the request, lets the server handle it, and then
	// closes the client's connection without a response: a write has
	// happened but the client sees a broken connection.
	DropAfter float64
	// DropMidBody forwards the request and relays the response headers and
	// about half of a non-empty response body, then closes the connection.
	DropMidBody float64
}

// Stats count what a proxy did.
type Stats struct {
	Requests      int64 // requests received (including those failed)
	Forwarded     int64 // requests the server answered
	SlowDowns     int64
	InternalErrs  int64
	DropsBefore   int64
	DropsAfter    int64
	DropsMidBody  int64
	Refused       int64 // connections or requests refused while partitioned
	Held          int64 // requests or responses held by a pause
	UpstreamFails int64 // requests the proxy could not forward (server down)
}

func (s Stats) String() string {
	return fmt.Sprintf("requests=%d forwarded=%d 503=%d 500=%d drop-before=%d drop-after=%d drop-mid-body=%d refused=%d held=%d upstream-failures=%d",
		s.Requests, s.Forwarded, s.SlowDowns, s.InternalErrs, s.DropsBefore, s.DropsAfter, s.DropsMidBody, s.Refused, s.Held, s.UpstreamFails)
}

type stats struct {
	requests, forwarded, slowDowns, internalErrs, dropsBefore, dropsAfter, dropsMidBody, refused, held, upstreamFails atomic.Int64
}

// Proxy is one running fault-injecting proxy.
type Proxy struct {
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	client *http.Transport

	mu          sync.Mutex
	faults      Faults
	rng         *rand.Rand
	partitioned bool
	paused      chan struct{} // closed when the pause is lifted; nil when not paused
	conns       map[net.Conn]struct{}

	st     stats
	closed atomic.Bool
	done   chan struct{}
}

// New starts a proxy on a free port of 127.0.0.1 forwarding to target, an
// http:// URL whose host must be a loopback address. It starts with no
// faults. seed seeds its fault decisions.
func New(target string, seed uint64) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: target %q: %w", target, err)
	}
	if u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("faultproxy: target %q: want http://HOST:PORT", target)
	}
	if !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("faultproxy: target %q is not a loopback address", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{
		target: &url.URL{Scheme: "http", Host: u.Host},
		rng:    rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		conns:  map[net.Conn]struct{}{},
		done:   make(chan struct{}),
		client: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConns:        64,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true, // pass Accept-Encoding and bodies through untouched
		},
	}
	p.ln = &listener{Listener: ln, p: p}
	p.srv = &http.Server{
		Handler:   p,
		ConnState: p.connState,
		ErrorLog:  discardLogger(),
	}
	go func() {
		p.srv.Serve(p.ln)
		close(p.done)
	}()
	return p, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL is the proxy's endpoint, e.g. "http://127.0.0.1:40123".
func (p *Proxy) URL() string { return "http://" + p.ln.Addr().String() }

// Addr is the proxy's listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetFaults replaces the faults; requests already past their fault
// decision are not affected.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Faults returns the current faults.
func (p *Proxy) Faults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.faults
}

// Partition cuts (on) or heals (off) the proxy. While it is cut, every
// open connection is closed with a reset, and so is every new one as soon
// as it is accepted, so no request gets through in either direction and
// clients fail fast.
func (p *Proxy) Partition(on bool) {
	p.mu.Lock()
	p.partitioned = on
	var cut []net.Conn
	if on {
		for c := range p.conns {
			cut = append(cut, c)
		}
	}
	p.mu.Unlock()
	for _, c := range cut {
		reset(c)
	}
}

// Pause holds (on) every request before it is forwarded and every
// response before it is relayed, without closing any connection, until
// it is lifted (off); then they all go through. A client without request
// timeouts hangs meanwhile; one whose request was held sees it reach the
// server only after the pause, however long after it gave up waiting.
func (p *Proxy) Pause(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.paused == nil:
		p.paused = make(chan struct{})
	case !on && p.paused != nil:
		close(p.paused)
		p.paused = nil
	}
}

// hold waits while the proxy is paused; it returns false if the request
// was abandoned meanwhile.
func (p *Proxy) hold(r *http.Request) bool {
	p.mu.Lock()
	ch := p.paused
	p.mu.Unlock()
	if ch == nil {
		return true
	}
	p.st.held.Add(1)
	select {
	case <-ch:
		return true
	case <-r.Context().Done():
		return false
	}
}

// Partitioned reports whether the proxy is cut.
func (p *Proxy) Partitioned() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.partitioned
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{
		Requests:      p.st.requests.Load(),
		Forwarded:     p.st.forwarded.Load(),
		SlowDowns:     p.st.slowDowns.Load(),
		InternalErrs:  p.st.internalErrs.Load(),
		DropsBefore:   p.st.dropsBefore.Load(),
		DropsAfter:    p.st.dropsAfter.Load(),
		DropsMidBody:  p.st.dropsMidBody.Load(),
		Refused:       p.st.refused.Load(),
		Held:          p.st.held.Load(),
		UpstreamFails: p.st.upstreamFails.Load(),
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	err := p.srv.Close()
	<-p.done
	p.client.CloseIdleConnections()
	return err
}

// listener refuses connections while the proxy is partitioned.
type listener struct {
	net.Listener
	p *Proxy
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.p.Partitioned() {
			l.p.st.refused.Add(1)
			reset(c)
			continue
		}
		return c, nil
	}
}

func (p *Proxy) connState(c net.Conn, s http.ConnState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch s {
	case http.StateNew:
		p.conns[c] = struct{}{}
	case http.StateClosed, http.StateHijacked:
		delete(p.conns, c)
	}
}

// reset closes c so that the peer sees a reset rather than an orderly end.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

type action int

const (
	forward action = iota
	slowDown
	internalError
	dropBefore
	dropAfter
	dropMidBody
)

// decide draws the fault for one request.
func (p *Proxy) decide() (time.Duration, action) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.faults
	delay := f.Latency
	if f.Jitter > 0 {
		delay += time.Duration(p.rng.Int64N(int64(f.Jitter)))
	}
	x := p.rng.Float64()
	for _, c := range []struct {
		prob float64
		a    action
	}{{f.SlowDown, slowDown}, {f.InternalError, internalError}, {f.DropBefore, dropBefore}, {f.DropAfter, dropAfter}, {f.DropMidBody, dropMidBody}} {
		if x < c.prob {
			return delay, c.a
		}
		x -= c.prob
	}
	return delay, forward
}

// ServeHTTP forwards one request, or fails it as the faults say.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.st.requests.Add(1)
	if p.Partitioned() {
		p.st.refused.Add(1)
		hangUp(w)
		return
	}
	if !p.hold(r) {
		return
	}
	delay, act := p.decide()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	switch act {
	case slowDown:
		p.st.slowDowns.Add(1)
		io.Copy(io.Discard, r.Body)
		writeS3Error(w, r, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
		return
	case internalError:
		p.st.internalErrs.Add(1)
		io.Copy(io.Discard, r.Body)
		writeS3Error(w, r, http.StatusInternalServerError, "InternalError", "We encountered an internal error. Please try again.")
		return
	case dropBefore:
		p.st.dropsBefore.Add(1)
		io.Copy(io.Discard, r.Body)
		hangUp(w)
		return
	}
	resp, err := p.roundTrip(r)
	if err != nil {
		p.st.upstreamFails.Add(1)
		writeS3Error(w, r, http.StatusBadGateway, "BadGateway", "faultproxy: "+err.Error())
		return
	}
	defer resp.Body.Close()
	if !p.hold(r) {
		return
	}
	if p.Partitioned() {
		// Cut while the request was at the server: its answer is lost.
		p.st.refused.Add(1)
		hangUp(w)
		return
	}
	switch act {
	case dropAfter:
		p.st.dropsAfter.Add(1)
		io.Copy(io.Discard, resp.Body)
		hangUp(w)
		return
	case dropMidBody:
		body, err := io.ReadAll(resp.Body)
		if err == nil && len(body) > 1 && r.Method != http.MethodHead {
			p.st.dropsMidBody.Add(1)
			copyHeader(w.Header(), resp.Header)
			w.WriteHeader(resp.StatusCode)
			w.Write(body[:len(body)/2])
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			panic(http.ErrAbortHandler) // the server closes the connection mid-body
		}
		// Nothing to cut short: answer normally.
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	p.st.forwarded.Add(1)
	copyHeader(w.Header(), resp.Header)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// roundTrip sends r to the target with its Host header (and so its
// signature) unchanged.
func (p *Proxy) roundTrip(r *http.Request) (*http.Response, error) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme = p.target.Scheme
	out.URL.Host = p.target.Host
	out.Host = r.Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	return p.client.RoundTrip(out)
}

// hopHeaders are the hop-by-hop headers a proxy does not forward.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if isHop(k) {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

func isHop(k string) bool {
	for _, h := range hopHeaders {
		if strings.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// hangUp closes the client's connection without a response.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	c, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	reset(c)
}

var requestSeq atomic.Uint64

// writeS3Error answers with an S3 error document (no body for HEAD, as S3).
func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	id := fmt.Sprintf("FAULTPROXY%08X", requestSeq.Add(1))
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("x-amz-request-id", id)
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	if code == "SlowDown" {
		h.Set("Retry-After", "1")
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(status)
		return
	}
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString("<Error><Code>")
	xmlEscape(&b, code)
	b.WriteString("</Code><Message>")
	xmlEscape(&b, msg)
	b.WriteString("</Message><Resource>")
	xmlEscape(&b, r.URL.Path)
	b.WriteString("</Resource><RequestId>")
	b.WriteString(id)
	b.WriteString("</RequestId></Error>")
	h.Set("Content-Length", fmt.Sprint(b.Len()))
	w.WriteHeader(status)
	io.WriteString(w, b.String())
}

func xmlEscape(b *strings.Builder, s string) {
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		case '"':
			b.WriteString("&quot;")
		case '\'':
			b.WriteString("&apos;")
		default:
			b.WriteRune(r)
		}
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
