package ociimage

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3gfs/s3gfs/internal/testenv"
)

// TestContainerdSmoke runs the images the way a kubelet would, through a
// real containerd (Debian's containerd and runc) started privately for the
// test: it imports the tarballs with `ctr images import`, formats a volume
// on the test S3 server with the reaper image, runs `s3gfs reaper` from it
// (as the non-root user, serving metrics), and mounts the volume with FUSE
// from the node image (privileged, no fusermount), seen live by
// `s3gfs hosts`. Not part of `make test` (it needs containerd installed):
// `make images-smoke` runs it, with S3GFS_IMAGE_SMOKE=1.
func TestContainerdSmoke(t *testing.T) {
	if os.Getenv("S3GFS_IMAGE_SMOKE") != "1" {
		t.Skip("set S3GFS_IMAGE_SMOKE=1 (make images-smoke): needs root, containerd, ctr and runc")
	}
	for _, tool := range []string{"containerd", "ctr", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (apt-get install containerd runc): %v", tool, err)
		}
	}
	bins := buildBinaries(t)
	work, err := os.MkdirTemp("", "s3gfs-image-smoke-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	out := filepath.Join(work, "images")
	os.MkdirAll(out, 0o755)
	var tarballs []string
	for _, spec := range Images {
		p, err := Write(spec, Options{BinDir: bins, CAFile: "/etc/ssl/certs/ca-certificates.crt", Version: testVersion}, out)
		if err != nil {
			t.Fatal(err)
		}
		tarballs = append(tarballs, p)
	}

	ctr := startContainerd(t, work)
	for _, p := range tarballs {
		ctr.run(t, "images", "import", p)
	}
	listed := ctr.run(t, "images", "ls", "-q")
	for _, spec := range Images {
		if !strings.Contains(listed, spec.Name+":"+testVersion) {
			t.Fatalf("%s:%s not imported; images:\n%s", spec.Name, testVersion, listed)
		}
	}

	srv := testenv.S3(t)
	vol := "s3://" + testenv.BucketName(t) + "/vol"
	env := []string{"--env", "AWS_ACCESS_KEY_ID=" + srv.AccessKey, "--env", "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey, "--env", "AWS_REGION=" + srv.Region}
	image := func(i int) string { return Images[i].Name + ":" + testVersion }

	// The reaper image formats the volume (creating its bucket).
	o := ctr.run(t, append(append([]string{"run", "--rm", "--net-host"}, env...), image(2), "smoke-format",
		BinDir+"/s3gfs", "format", "--endpoint", srv.Endpoint, vol)...)
	if !strings.Contains(o, "formatted "+vol) {
		t.Fatalf("format from the image: %s", o)
	}

	// `s3gfs reaper` from the image, as the chart runs it: non-root,
	// serving metrics.
	port := freePort(t)
	ctr.run(t, append(append([]string{"run", "-d", "--net-host"}, env...), image(2), "smoke-reaper",
		BinDir+"/s3gfs", "reaper", "--endpoint", srv.Endpoint, "--interval", "1m", "--metrics-addr", "127.0.0.1:"+port, vol)...)
	defer ctr.stop(t, "smoke-reaper")
	pid := ctr.pid(t, "smoke-reaper")
	if uid := procUID(t, pid); uid != "65532" {
		t.Errorf("the reaper runs as uid %s, want the image's 65532", uid)
	}
	metrics := waitHTTP(t, "http://127.0.0.1:"+port+"/metrics")
	if !strings.Contains(metrics, "s3gfs_reaper") {
		t.Errorf("reaper metrics without s3gfs_reaper series:\n%.2000s", metrics)
	}

	// The node image mounts the volume with FUSE, privileged, as the mounter
	// does: mount(2) directly, no fusermount in the image.
	mnt := filepath.Join(work, "mnt")
	os.MkdirAll(mnt, 0o755)
	ctr.run(t, append(append([]string{"run", "-d", "--privileged", "--net-host",
		"--mount", "type=bind,src=" + work + ",dst=" + work + ",options=rbind:rw"}, env...), image(1), "smoke-mount",
		BinDir+"/s3gfs", "mount", "--allow-other", "--endpoint", srv.Endpoint, "--node-name", "image-smoke", vol, mnt)...)
	defer ctr.stop(t, "smoke-mount")
	mpid := ctr.pid(t, "smoke-mount")
	deadline := time.Now().Add(60 * time.Second)
	for {
		mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", mpid))
		if strings.Contains(string(mi), " "+mnt+" ") && strings.Contains(string(mi), "fuse.s3gfs") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no fuse.s3gfs mount at %s in the node container; its mountinfo:\n%s", mnt, mi)
		}
		time.Sleep(200 * time.Millisecond)
	}
	hosts := exec.Command(filepath.Join(bins, "s3gfs"), "hosts", "--endpoint", srv.Endpoint, vol)
	hosts.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+srv.AccessKey, "AWS_SECRET_ACCESS_KEY="+srv.SecretKey, "AWS_REGION="+srv.Region)
	ho, err := hosts.CombinedOutput()
	if err != nil || !strings.Contains(string(ho), "image-smoke") || !strings.Contains(string(ho), "live") {
		t.Errorf("s3gfs hosts does not show the node container's mount live: %v\n%s", err, ho)
	}
}

func TestMain(m *testing.M) { testenv.Main(m) }

type ctrClient struct{ sock string }

func (c ctrClient) cmd(args ...string) *exec.Cmd {
	return exec.Command("ctr", append([]string{"-a", c.sock, "-n", "s3gfs-image-smoke"}, args...)...)
}

func (c ctrClient) run(t *testing.T, args ...string) string {
	t.Helper()
	cmd := c.cmd(args...)
	timer := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c ctrClient) pid(t *testing.T, id string) int {
	t.Helper()
	out := c.run(t, "tasks", "ls")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == id {
			if f[2] != "RUNNING" {
				t.Fatalf("task %s is %s", id, f[2])
			}
			pid, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatalf("no task %s:\n%s", id, out)
	return 0
}

// stop ends a task with SIGTERM (SIGKILL after 30s) and removes it.
func (c ctrClient) stop(t *testing.T, id string) {
	c.cmd("tasks", "kill", "-s", "SIGTERM", id).Run()
	for i := 0; i < 150; i++ {
		out, _ := c.cmd("tasks", "ls").Output()
		running := false
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			running = running || (len(f) >= 3 && f[0] == id && f[2] == "RUNNING")
		}
		if !running {
			break
		}
		if i == 149 {
			c.cmd("tasks", "kill", "-s", "SIGKILL", id).Run()
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.cmd("tasks", "rm", "-f", id).Run()
	c.cmd("containers", "rm", id).Run()
}

// startContainerd starts a containerd of the test's own (its own root,
// state and socket, without the CRI plugin) and stops it at cleanup.
func startContainerd(t *testing.T, work string) ctrClient {
	t.Helper()
	dir := filepath.Join(work, "containerd")
	os.MkdirAll(dir, 0o755)
	sock := filepath.Join(dir, "sock")
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("containerd log:\n%s", lastLines(string(b), 40))
		}
	})
	c := ctrClient{sock: sock}
	for i := 0; ; i++ {
		if err := c.cmd("version").Run(); err == nil {
			return c
		}
		if i == 150 {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("containerd did not start:\n%s", lastLines(string(b), 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func procUID(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Uid:" {
			return f[1]
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return ""
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func waitHTTP(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
