package s3store

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
)

// bodyConn is a connection of the Store's HTTP transport that writes a
// request body held in memory (an uploadBody) with one write, from the
// caller's slice.
//
// net/http sends a body of known length as io.Copy(conn,
// io.LimitReader(body, ContentLength)) (past the first few KiB, which go
// through its buffered writer): the LimitReader hides the body's WriterTo,
// so a *net.TCPConn copies it through a 32 KiB buffer with a write(2)
// each, 128 copies and calls for a 4 MiB extent. ReadFrom sees the
// LimitReader: when it wraps an uploadBody that holds exactly the bytes
// it allows, the body writes them itself, in one Write (the kernel still
// copies them into the socket). Anything else goes the usual way.
type bodyConn struct{ net.Conn }

func (c bodyConn) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); ok {
		if ub, ok := lr.R.(uploadBody); ok && int64(ub.Len()) == lr.N {
			n, err := ub.WriteTo(c.Conn)
			lr.N -= n
			return n, err
		}
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r) // *net.TCPConn: sendfile, splice, or a copy
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// uploadBody is a request body in memory that a bodyConn writes whole. It
// is its own ReadCloser, so that net/http (which unwraps one layer around
// a body) passes it to ReadFrom as it is, not inside an io.NopCloser.
type uploadBody struct{ *bytes.Reader }

func (uploadBody) Close() error { return nil }

// newUploadRequest is http.NewRequestWithContext for a body in memory,
// sent by a bodyConn with one write. Like a *bytes.Reader body, it sets
// ContentLength and GetBody (which net/http uses to send the request
// again on a fresh connection when a reused one turns out dead).
func newUploadRequest(ctx context.Context, method, url string, body []byte) (*http.Request, error) {
	if len(body) == 0 {
		return http.NewRequestWithContext(ctx, method, url, http.NoBody)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, uploadBody{bytes.NewReader(body)})
	if err != nil {
		return nil, err
	}
	req.ContentLength = int64(len(body))
	req.GetBody = func() (io.ReadCloser, error) { return uploadBody{bytes.NewReader(body)}, nil }
	return req, nil
}

// dialBodyConns makes t's connections bodyConns.
func dialBodyConns(t *http.Transport) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return bodyConn{c}, nil
	}
}
