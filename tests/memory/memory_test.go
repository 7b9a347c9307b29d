// Package memory checks that a mount's memory stays within its configured
// bounds while large files stream through it: it runs the real s3gfs binary
// against a real S3 server and reads the process's peak RSS (VmHWM).
package memory

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func binary(t *testing.T) string { return testenv.Binary(t) }

func requireFUSE(t *testing.T) { testenv.RequireFUSE(t) }

func isMounted(dir string) bool { return testenv.IsMounted(dir) }

// peakRSS returns a process's peak resident set size in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}

// TestCopyTenTimesBufferStaysBounded copies a file ten times the write-back
// buffer into a mount and reads it back; the mount's peak RSS must stay
// within buffer + cache + a fixed allowance for the Go runtime, FUSE
// request buffers and uploads in flight.
func TestCopyTenTimesBufferStaysBounded(t *testing.T) {
	requireFUSE(t)
	bin := binary(t)
	srv := testenv.S3(t)
	store := srv.NewBucket(t)
	u := volume.URL{Bucket: store.Bucket(), Prefix: "mem"}
	if _, err := volume.Format(t.Context(), store, u, volume.FormatOptions{}); err != nil {
		t.Fatal(err)
	}
	const (
		buffer    = 32 << 20
		cacheSize = 16 << 20
		fileSize  = 10 * buffer
		// The Go runtime, go-fuse's request buffers (1 MiB writes), the
		// encoding of uploads in flight and garbage not yet collected.
		allowance = 96 << 20
	)
	mnt := t.TempDir()
	cmd := exec.Command(bin, "mount", "--endpoint", srv.Endpoint,
		"--buffer-size", strconv.Itoa(buffer), "--cache-size", strconv.Itoa(cacheSize),
		u.String(), mnt)
	cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if isMounted(mnt) {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		cmd.Process.Kill()
	})
	deadline := time.Now().Add(30 * time.Second)
	for !isMounted(mnt) {
		select {
		case err := <-exited:
			t.Fatalf("s3gfs mount exited early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("mount did not become ready")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Stream pseudo-random data in, hashing as we go.
	rng := rand.New(rand.NewPCG(1, 2))
	want := sha256.New()
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	for written := 0; written < fileSize; written += len(chunk) {
		for i := 0; i < len(chunk); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8; j++ {
				chunk[i+j] = byte(v >> (8 * j))
			}
		}
		want.Write(chunk)
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Drop the kernel's page cache of the file so the read goes through s3gfs.
	os.WriteFile("/proc/sys/vm/drop_caches", []byte("1"), 0)
	r, err := os.Open(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, r)
	r.Close()
	if err != nil || n != fileSize {
		t.Fatalf("read back %d bytes: %v", n, err)
	}
	if string(got.Sum(nil)) != string(want.Sum(nil)) {
		t.Fatal("content read back differs from what was written")
	}

	peak := peakRSS(t, cmd.Process.Pid)
	limit := int64(buffer + cacheSize + allowance)
	t.Logf("peak RSS %d MiB for a %d MiB file (buffer %d MiB, cache %d MiB, limit %d MiB)", peak>>20, fileSize>>20, buffer>>20, cacheSize>>20, limit>>20)
	if peak > limit {
		t.Errorf("peak RSS %d MiB exceeds buffer + cache + allowance = %d MiB", peak>>20, limit>>20)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("s3gfs mount exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("s3gfs mount did not exit after SIGTERM")
	}
	if isMounted(mnt) {
		t.Fatal("still mounted after the mount process exited")
	}
}
