// Package testenv gives tests a real S3 server: one server process per test
// binary, keeping its data in a temporary directory, and a fresh bucket
// (with an s3store.Store for it) per test.
//
// Use it from a test package like this:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		store := testenv.NewBucket(t) // skips if the server is not installed
//		...
//	}
//
// S3GFS_S3_SERVER selects the server implementation:
//
//   - "versitygw" (the default, also when unset or empty): versitygw serving
//     a posix backend. The binary is found through, in order:
//     $S3GFS_VERSITYGW (a path), $S3GFS_TOOLS/bin/versitygw-<pinned version>
//     (S3GFS_TOOLS defaults to $HOME/.cache/s3gfs-tools, where `make tools` /
//     scripts/install-tools.sh put it), then versitygw on $PATH.
//   - "minio": a single-drive MinIO server. The binary is found through
//     $S3GFS_MINIO (a path), then $S3GFS_TOOLS/bin/minio-<pinned version>
//     (`scripts/install-tools.sh minio` or `make test-minio` put it there).
//
// Without the binary, tests that need S3 are skipped, or fail when
// S3GFS_REQUIRE_S3=1. Any other S3GFS_S3_SERVER value fails them.
//
// Main kills the server and removes its directory when the tests end. A
// test binary that does not use Main, or dies, still takes the server down
// with it on Linux (the server gets SIGKILL when its parent dies), but leaves
// its directory (s3gfs-testenv-*) in the temporary directory.
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

// VersitygwVersion is the pinned versitygw release; scripts/install-tools.sh
// installs the same one.
const VersitygwVersion = "v1.8.0"

// MinioVersion is the pinned MinIO version (a Go pseudo-version: MinIO has
// no semver tags); scripts/install-tools.sh installs the same one.
const MinioVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// Server implementations S3GFS_S3_SERVER selects.
const (
	Versitygw = "versitygw" // the default
	Minio     = "minio"
)

// Region is the region the test server signs and answers in.
const Region = "us-east-1"

// Server is a running S3 server.
type Server struct {
	Impl      string // Versitygw or Minio
	Endpoint  string // e.g. "http://127.0.0.1:40123"
	AccessKey string
	SecretKey string
	Region    string
	// Dir is the server's data directory: for versitygw the posix
	// backend's root (one directory per bucket, one file per object); for
	// MinIO its single drive, in MinIO's own format.
	Dir string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	log  *syncBuffer   // the process's stdout and stderr
}

var (
	startOnce sync.Once
	shared    *Server
	startErr  error
	tmpRoot   string // removed by Main
)

// S3 returns the test binary's S3 server, starting it on first use. It skips
// the test (or fails it, with S3GFS_REQUIRE_S3=1) when the selected server
// (see the package comment) is not installed, and fails it when the server
// does not start or S3GFS_S3_SERVER names no known server.
func S3(t testing.TB) *Server {
	t.Helper()
	startOnce.Do(func() { shared, startErr = start() })
	if startErr != nil {
		var nf *notFoundError
		if errors.As(startErr, &nf) && os.Getenv("S3GFS_REQUIRE_S3") != "1" {
			t.Skip(startErr)
		}
		t.Fatal(startErr)
	}
	return shared
}

// Main runs the tests and then stops the S3 server, if one was started.
// Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}

// Stop kills the S3 server and removes its data. Main calls it; call it
// yourself only from a TestMain that cannot use Main.
func Stop() {
	if shared != nil {
		shared.kill()
	}
	if tmpRoot != "" {
		os.RemoveAll(tmpRoot)
	}
}

// Config returns an s3store configuration for bucket on this server.
func (s *Server) Config(bucket string) s3store.Config {
	return s3store.Config{
		Bucket:    bucket,
		Endpoint:  s.Endpoint,
		Region:    s.Region,
		AccessKey: s.AccessKey,
		SecretKey: s.SecretKey,
	}
}

// NewBucket creates a fresh, empty bucket named after the test and returns
// a Store for it.
func (s *Server) NewBucket(t testing.TB) *s3store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := s3store.New(ctx, s.Config(BucketName(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatal(err)
	}
	return store
}

// NewBucket is S3(t).NewBucket(t): a fresh bucket on the shared server.
func NewBucket(t testing.TB) *s3store.Store {
	t.Helper()
	return S3(t).NewBucket(t)
}

var bucketSeq atomic.Int64

// BucketName returns a bucket name unique within this test binary and
// across runs, derived from the test's name: lowercase letters, digits and
// hyphens, 3 to 63 characters, starting and ending with a letter or digit.
func BucketName(t testing.TB) string {
	var b strings.Builder
	b.WriteString("t-")
	dash := false
	for _, r := range strings.ToLower(t.Name()) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	name := strings.TrimRight(b.String(), "-")
	suffix := fmt.Sprintf("-%d-%s", bucketSeq.Add(1), randomHex(3))
	if len(name)+len(suffix) > 63 {
		name = strings.TrimRight(name[:63-len(suffix)], "-")
	}
	return name + suffix
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// notFoundError says the server's binary is not installed.
type notFoundError struct {
	impl  string // Versitygw or Minio
	tried []string
}

func (e *notFoundError) Error() string {
	if e.impl == Minio {
		return fmt.Sprintf("minio %s not found (tried %s); install it with "+
			"`scripts/install-tools.sh minio` (or run `make test-minio`) or point S3GFS_MINIO at a binary",
			MinioVersion, strings.Join(e.tried, ", "))
	}
	return fmt.Sprintf("versitygw %s not found (tried %s); install it with `make tools` "+
		"(scripts/install-tools.sh) or point S3GFS_VERSITYGW at a binary",
		VersitygwVersion, strings.Join(e.tried, ", "))
}

// Impl returns the server implementation S3GFS_S3_SERVER selects:
// Versitygw (also when it is unset or empty) or Minio.
func Impl() (string, error) {
	switch v := os.Getenv("S3GFS_S3_SERVER"); v {
	case "", Versitygw:
		return Versitygw, nil
	case Minio:
		return Minio, nil
	default:
		return "", fmt.Errorf("S3GFS_S3_SERVER=%q: unknown S3 server (known: %s, %s)", v, Versitygw, Minio)
	}
}

// toolsBin is $S3GFS_TOOLS/bin, S3GFS_TOOLS defaulting to
// $HOME/.cache/s3gfs-tools; "" if neither is known.
func toolsBin() string {
	tools := os.Getenv("S3GFS_TOOLS")
	if tools == "" {
		if home, err := os.UserHomeDir(); err == nil {
			tools = filepath.Join(home, ".cache", "s3gfs-tools")
		}
	}
	if tools == "" {
		return ""
	}
	return filepath.Join(tools, "bin")
}

// VersitygwPath finds the versitygw binary (see the package comment).
func VersitygwPath() (string, error) {
	var tried []string
	if p := os.Getenv("S3GFS_VERSITYGW"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, "$S3GFS_VERSITYGW="+p)
	}
	if bin := toolsBin(); bin != "" {
		p := filepath.Join(bin, "versitygw-"+VersitygwVersion)
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	tried = append(tried, "versitygw on $PATH")
	return "", &notFoundError{impl: Versitygw, tried: tried}
}

// MinioPath finds the minio binary (see the package comment). A minio on
// $PATH is not used: MinIO's behaviour changes from build to build, and the
// tests are meant to run against the pinned one.
func MinioPath() (string, error) {
	var tried []string
	if p := os.Getenv("S3GFS_MINIO"); p != "" {
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, "$S3GFS_MINIO="+p)
	}
	if bin := toolsBin(); bin != "" {
		p := filepath.Join(bin, "minio-"+MinioVersion)
		if isExecutable(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", &notFoundError{impl: Minio, tried: tried}
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// start launches the selected server on free ports and waits until it
// answers. A port taken between choosing and binding it is retried on
// another port.
func start() (*Server, error) {
	impl, err := Impl()
	if err != nil {
		return nil, err
	}
	var bin string
	switch impl {
	case Minio:
		bin, err = MinioPath()
	default:
		bin, err = VersitygwPath()
	}
	if err != nil {
		return nil, err
	}
	tmpRoot, err = os.MkdirTemp("", "s3gfs-testenv-")
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(tmpRoot, "data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		if try > 0 && impl == Minio {
			// A failed MinIO may have formatted its drive for credentials
			// the next attempt does not use: start from an empty one.
			if err := os.RemoveAll(dir); err != nil {
				return nil, err
			}
			if err := os.Mkdir(dir, 0o755); err != nil {
				return nil, err
			}
		}
		s, err := launch(impl, bin, dir)
		if err == nil || try == 2 {
			return s, err
		}
	}
}

func launch(impl, bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Impl:      impl,
		Endpoint:  "http://" + net.JoinHostPort("127.0.0.1", port),
		AccessKey: "s3gfs-test-access",
		SecretKey: "s3gfs-test-secret-" + randomHex(8),
		Region:    Region,
		Dir:       dir,
		done:      make(chan struct{}),
		log:       &syncBuffer{},
	}
	readyPath, readyTimeout := "/", 15*time.Second // versitygw: any answer will do
	switch impl {
	case Minio:
		consolePort, err := freePort()
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(bin, "server", dir,
			"--address", "127.0.0.1:"+port,
			"--console-address", "127.0.0.1:"+consolePort,
			"--quiet") // no startup banner
		s.cmd.Env = append(minioEnv(),
			"MINIO_ROOT_USER="+s.AccessKey,
			"MINIO_ROOT_PASSWORD="+s.SecretKey,
			"MINIO_SITE_REGION="+s.Region,
			// MinIO's test mode, as CI=... would also set: small buffer
			// pool, deletes purged at once, no root-drive checks.
			"MINIO_CI_CD=on",
		)
		// 200 only once the server has initialised its drive and IAM;
		// before that S3 requests get 503 XMinioServerNotInitialized.
		readyPath, readyTimeout = "/minio/health/ready", 30*time.Second
	default:
		s.cmd = exec.Command(bin,
			"--access", s.AccessKey,
			"--secret", s.SecretKey,
			"--region", s.Region,
			"--port", "127.0.0.1:"+port,
			"--keep-alive", // versitygw closes every connection after one request otherwise
			"--quiet",      // no per-request log lines
			"posix", dir)
		s.cmd.Env = cleanEnv()
	}
	s.cmd.Stdout = s.log
	s.cmd.Stderr = s.log
	setPdeathsig(s.cmd)
	// Linux delivers Pdeathsig when the *thread* that started the child
	// exits, and Go ends a thread when a goroutine locked to it returns. So
	// start and wait from a goroutine that holds its thread until the
	// server has exited.
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		if err := s.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		s.cmd.Wait()
		close(s.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	if err := s.waitReady(readyPath, readyTimeout); err != nil {
		s.kill()
		return nil, fmt.Errorf("%s did not start: %w\n%s", impl, err, s.log.String())
	}
	return s, nil
}

// cleanEnv is the environment without versitygw's own settings, so a
// developer's VGW_* or ROOT_* variables cannot change the test server.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VGW_") || strings.HasPrefix(kv, "ROOT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// minioEnv is the environment without MinIO's own settings (MINIO_*), so a
// developer's MinIO configuration cannot change the test server.
func minioEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MINIO_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitReady polls until the server answers a GET of path: with any
// response for "/", and with 200 OK for any other path (a health check).
func (s *Server) waitReady(path string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("process exited: %v", s.cmd.ProcessState)
		default:
		}
		resp, err := client.Get(s.Endpoint + path)
		if err == nil {
			resp.Body.Close()
			if path == "/" || resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer at %s after %v: %w", s.Endpoint+path, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// syncBuffer is a bytes.Buffer safe for the process's two output streams.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // enough to diagnose; drop the rest
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
