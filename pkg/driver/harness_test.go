package driver_test

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/driver"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

func TestMain(m *testing.M) {
	driver.SetupLogging(os.Stderr, envInt("S3GFS_CSI_V", 0))
	testenv.Main(m)
}

func envInt(k string, def int) int {
	v := os.Getenv(k)
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return def
		}
		n = n*10 + int(c-'0')
	}
	if v == "" {
		return def
	}
	return n
}

// plugins is a controller and a node plugin served in this process on
// unix sockets, on the test's S3 server, with real FUSE mounts made by
// detached `s3gfs mount` processes.
type plugins struct {
	dir            string
	controllerSock string
	nodeSock       string
	ctrl           csi.ControllerClient
	node           csi.NodeClient
	s3             *testenv.Server
	secrets        map[string]string
	cs, ns         *driver.Server
}

func startPlugins(t *testing.T) *plugins {
	t.Helper()
	testenv.RequireFUSE(t)
	s3 := testenv.S3(t)
	dir, err := os.MkdirTemp("", "s3gfs-csi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A failed test may leave mounts: detach them before removing.
		data, _ := os.ReadFile("/proc/self/mountinfo")
		lines := strings.Split(string(data), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if f := strings.Fields(lines[i]); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
				syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
		os.RemoveAll(dir)
	})
	p := &plugins{
		dir: dir, s3: s3,
		controllerSock: filepath.Join(dir, "controller.sock"),
		nodeSock:       filepath.Join(dir, "node.sock"),
		secrets: map[string]string{
			driver.SecretAccessKeyID: s3.AccessKey, driver.SecretSecretAccessKey: s3.SecretKey,
			driver.SecretEndpoint: s3.Endpoint, driver.SecretRegion: s3.Region,
		},
	}
	cs := driver.NewControllerServer("", "test", driver.ControllerConfig{})
	ns, err := driver.NewNodeServer("", "test", driver.NodeConfig{
		NodeID: "test-node", StateDir: filepath.Join(dir, "state"),
		Mounter: &driver.DetachedMounter{Binary: testenv.Binary(t)},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.cs, p.ns = cs, ns
	go cs.Serve("unix://" + p.controllerSock)
	go ns.Serve("unix://" + p.nodeSock)
	t.Cleanup(func() { cs.Stop(); ns.Stop() })
	p.ctrl = csi.NewControllerClient(dial(t, p.controllerSock))
	p.node = csi.NewNodeClient(dial(t, p.nodeSock))
	return p
}

func dial(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket %s never served", sock)
		}
		time.Sleep(20 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

var rwx = mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)

// keysOf lists every key of the bucket.
func keysOf(t *testing.T, s3 *testenv.Server, bucket string) []string {
	t.Helper()
	store, err := s3store.New(context.Background(), s3.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	after := ""
	for {
		page, err := store.List(context.Background(), "", after, 0)
		if err != nil {
			if strings.Contains(err.Error(), "bucket does not exist") {
				return nil
			}
			t.Fatal(err)
		}
		for _, o := range page.Objects {
			out = append(out, o.Key)
			after = o.Key
		}
		if !page.Truncated {
			return out
		}
	}
}

// syncBuf is a bytes.Buffer safe for concurrent writers.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
