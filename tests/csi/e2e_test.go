// Package csi_test plays the kubelet and the external-provisioner against
// the real plugin binaries: a controller and two node plugins as separate
// processes (two "nodes"), a real S3 server and real FUSE mounts, with
// "pods" (processes) writing and reading through their target paths, a
// snapshot and two volumes restored from it, and both node plugins killed
// (SIGKILL) and restarted while the pods keep using their mounts.
package csi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/s3gfs/s3gfs/internal/testenv"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/objstore/s3store"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// build compiles a command of this module into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, filepath.Base(pkg))
	if b, err := exec.Command("go", "build", "-o", out, "github.com/s3gfs/s3gfs/"+pkg).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  *bytes.Buffer
}

func start(t *testing.T, name string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), log: &bytes.Buffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	// Its own process group: killing the test's group does not reach it,
	// as a container restart would not reach another container.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("--- %s log:\n%s", name, p.log.String())
		}
	})
	return p
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

func connect(t *testing.T, sock string) *grpc.ClientConn {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never served", sock)
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func capability(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
}

// pod runs a shell command as a separate process, like a container would.
func pod(t *testing.T, script string) string {
	t.Helper()
	out, err := exec.Command("sh", "-c", script).CombinedOutput()
	if err != nil {
		t.Fatalf("pod %q: %v: %s", script, err, out)
	}
	return string(out)
}

// eventually retries f until it returns nil or the time is up.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readIs(path, want string) func() error {
	return func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(b) != want {
			return fmt.Errorf("%s holds %q, want %q", path, b, want)
		}
		return nil
	}
}

// workDir is a new directory for one test's sockets, state and mounts;
// whatever is still mounted under it is detached at the end.
func workDir(t *testing.T, pattern string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range s3gfsMounts(dir) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		os.RemoveAll(dir)
	})
	return dir
}

func s3gfsMounts(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// mountProcesses lists the pids of s3gfs mount processes serving a path
// under dir.
func mountProcesses(dir string) []string {
	var out []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && args[1] == "mount" && strings.HasPrefix(args[len(args)-1], dir+"/") {
			st, _ := os.ReadFile(strings.TrimSuffix(f, "cmdline") + "stat")
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				continue
			}
			out = append(out, strings.Split(f, "/")[2])
		}
	}
	return out
}

func TestTwoNodesSnapshotsAndPluginRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	testenv.RequireFUSE(t)
	s3 := testenv.S3(t)
	dir := workDir(t, "s3gfs-csi-e2e-")
	bins := filepath.Join(dir, "bin")
	s3gfsBin := testenv.Binary(t)
	controllerBin := build(t, bins, "cmd/controller")
	nodeBin := build(t, bins, "cmd/node")

	secrets := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey, "endpoint": s3.Endpoint, "region": s3.Region}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	metricsAddr := l.Addr().String()
	l.Close()
	sock := func(n string) string { return filepath.Join(dir, n+".sock") }
	start(t, "controller", controllerBin, "--endpoint", "unix://"+sock("controller"), "--metrics-addr", metricsAddr, "-v", "2")
	nodeAArgs := []string{"--endpoint", "unix://" + sock("node-a"), "--node-id", "node-a", "--state-dir", filepath.Join(dir, "state-a"),
		"--mounter", "detached", "--s3gfs-binary", s3gfsBin, "-v", "2"}
	nodeBArgs := []string{"--endpoint", "unix://" + sock("node-b"), "--node-id", "node-b", "--state-dir", filepath.Join(dir, "state-b"),
		"--mounter", "unix://" + sock("mounter-b"), "-v", "2"}
	nodeA := start(t, "node-a", nodeBin, nodeAArgs...)
	mounterB := start(t, "mounter-b", nodeBin, "mounter", "--socket", sock("mounter-b"), "--s3gfs-binary", s3gfsBin, "-v", "2")
	nodeB := start(t, "node-b", nodeBin, nodeBArgs...)
	ctrl := csi.NewControllerClient(connect(t, sock("controller")))
	nodes := map[string]csi.NodeClient{"a": csi.NewNodeClient(connect(t, sock("node-a"))), "b": csi.NewNodeClient(connect(t, sock("node-b")))}
	ctx := context.Background()

	rwx := capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	rox := capability(csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY)
	params := map[string]string{"bucket": testenv.BucketName(t), "prefix": "pvs", "syncInterval": "200ms"}
	create := func(name string, c *csi.VolumeCapability, src *csi.VolumeContentSource) *csi.Volume {
		t.Helper()
		r, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{c},
			Secrets: secrets, VolumeContentSource: src, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		return r.Volume
	}
	type pub struct {
		node, staging, target string
		vol                   *csi.Volume
	}
	var pubs []pub
	stage := map[string]bool{}
	publish := func(node string, vol *csi.Volume, c *csi.VolumeCapability, name string, ro bool) string {
		t.Helper()
		staging := filepath.Join(dir, "node-"+node, "staging", vol.VolumeId[len(vol.VolumeId)-12:])
		target := filepath.Join(dir, "node-"+node, "pods", name)
		if !stage[node+staging] {
			os.MkdirAll(staging, 0o750)
			if _, err := nodes[node].NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol.VolumeId, StagingTargetPath: staging,
				VolumeCapability: c, VolumeContext: vol.VolumeContext, Secrets: secrets}); err != nil {
				t.Fatalf("stage %s on %s: %v", vol.VolumeId, node, err)
			}
			stage[node+staging] = true
		}
		os.MkdirAll(filepath.Dir(target), 0o750)
		if _, err := nodes[node].NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol.VolumeId, StagingTargetPath: staging,
			TargetPath: target, VolumeCapability: c, Readonly: ro, VolumeContext: vol.VolumeContext}); err != nil {
			t.Fatalf("publish %s on %s: %v", vol.VolumeId, node, err)
		}
		pubs = append(pubs, pub{node, staging, target, vol})
		return target
	}

	t.Log("a ReadWriteMany volume on two nodes")
	shared := create("pvc-shared", rwx, nil)
	a1 := publish("a", shared, rwx, "pod-a1", false)
	b1 := publish("b", shared, rwx, "pod-b1", false)
	pod(t, "echo hello-from-a > "+a1+"/greeting")
	eventually(t, "node b sees node a's file", readIs(b1+"/greeting", "hello-from-a\n"))
	pod(t, "mkdir "+b1+"/dir && echo hello-from-b > "+b1+"/dir/f")
	eventually(t, "node a sees node b's file", readIs(a1+"/dir/f", "hello-from-b\n"))
	// Pod file modes are enforced (default_permissions): nobody cannot
	// write a file of root's with mode 0644.
	pod(t, "chmod 0644 "+a1+"/greeting")
	for _, d := range []string{dir, filepath.Dir(filepath.Dir(a1)), filepath.Dir(a1)} {
		os.Chmod(d, 0o755)
	}
	asNobody := func(script string) ([]byte, error) {
		return exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script).CombinedOutput()
	}
	if out, err := asNobody("cat " + a1 + "/greeting"); err != nil {
		t.Errorf("user nobody cannot read a 0644 file (allow_other?): %v: %s", err, out)
	}
	if out, err := asNobody("echo x >> " + a1 + "/greeting"); err == nil || !strings.Contains(string(out), "ermission denied") {
		t.Errorf("user nobody could write a 0644 root file, or failed otherwise: %v: %s", err, out)
	}

	t.Log("snapshot, then change the volume")
	snap, err := ctrl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: shared.VolumeId, Secrets: secrets})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the store's clock has 1 s resolution
	pod(t, "echo changed-after-snapshot > "+a1+"/greeting && echo new > "+a1+"/after")
	eventually(t, "node b sees the change", readIs(b1+"/greeting", "changed-after-snapshot\n"))

	t.Log("restore the snapshot: read-only view and writable copy")
	src := &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}}
	roVol := create("pvc-restored-ro", rox, src)
	a3 := publish("a", roVol, rox, "pod-a3", true)
	if err := readIs(a3+"/greeting", "hello-from-a\n")(); err != nil {
		t.Error("read-only restore:", err)
	}
	if err := readIs(a3+"/dir/f", "hello-from-b\n")(); err != nil {
		t.Error("read-only restore:", err)
	}
	if _, err := os.Stat(a3 + "/after"); err == nil {
		t.Error("read-only restore shows a file made after the snapshot")
	}
	if err := os.WriteFile(a3+"/x", []byte("x"), 0o644); err == nil {
		t.Error("wrote into a read-only restore")
	}
	if again := create("pvc-restored-ro", rox, src); again.VolumeId != roVol.VolumeId {
		t.Errorf("repeated CreateVolume from a snapshot gave %s, then %s", roVol.VolumeId, again.VolumeId)
	}
	if _, err := ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.Snapshot.SnapshotId, Secrets: secrets}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("DeleteSnapshot of a snapshot a read-only view uses: %v, want FailedPrecondition", err)
	}
	rwVol := create("pvc-restored-rw", rwx, src)
	b3 := publish("b", rwVol, rwx, "pod-b3", false)
	if err := readIs(b3+"/greeting", "hello-from-a\n")(); err != nil {
		t.Error("writable restore:", err)
	}
	if err := readIs(b3+"/dir/f", "hello-from-b\n")(); err != nil {
		t.Error("writable restore:", err)
	}
	if _, err := os.Stat(b3 + "/after"); err == nil {
		t.Error("writable restore shows a file made after the snapshot")
	}
	// A writable restore is a clone (FORMAT.md §16): nothing was copied,
	// its files are read from the source.
	ownObjects := func(v *csi.Volume) []string {
		var out []string
		for _, k := range bucketKeys(t, s3, params["bucket"]) {
			for _, sub := range []string{"/i/", "/d/"} {
				if strings.HasPrefix(k, v.VolumeContext["prefix"]+sub) {
					out = append(out, k)
				}
			}
		}
		return out
	}
	if own := ownObjects(rwVol); len(own) > 0 {
		t.Errorf("the writable restore copied objects of files nobody changed: %q", own)
	}
	pod(t, "echo mine > "+b3+"/greeting")
	if err := readIs(b3+"/greeting", "mine\n")(); err != nil {
		t.Error("writable restore after a write:", err)
	}
	if own := ownObjects(rwVol); len(own) == 0 || !allUnder(own, own[0][:strings.LastIndexByte(own[0], '/')+1]) {
		t.Errorf("the writable restore holds %q after one file changed, want only versions of that file", own)
	}
	if err := readIs(a1+"/greeting", "changed-after-snapshot\n")(); err != nil {
		t.Error("writing the restored copy changed the source:", err)
	}
	clone := create("pvc-clone", rwx, &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: shared.VolumeId}}})
	a4 := publish("a", clone, rwx, "pod-a4", false)
	if err := readIs(a4+"/greeting", "changed-after-snapshot\n")(); err != nil {
		t.Error("clone:", err)
	}
	if err := readIs(a4+"/after", "new\n")(); err != nil {
		t.Error("clone:", err)
	}
	if own := ownObjects(clone); len(own) > 0 {
		t.Errorf("the clone copied objects: %q", own)
	}
	pod(t, "echo clone-only > "+a4+"/greeting")
	if err := readIs(a1+"/greeting", "changed-after-snapshot\n")(); err != nil {
		t.Error("writing the clone changed the source:", err)
	}
	if list, err := ctrl.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: shared.VolumeId, Secrets: secrets}); err != nil || len(list.Entries) != 1 {
		t.Errorf("snapshots of the cloned volume (the clone's pin is not a snapshot): %v %v", list, err)
	}

	t.Log("kill both node plugins while pods keep writing")
	writer := func(target string) *exec.Cmd {
		c := exec.Command("sh", "-c", "i=0; while :; do echo $i >> "+target+"/log || exit 1; i=$((i+1)); sleep 0.02; done")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
		return c
	}
	wa, wb := writer(a1), writer(b1+"/dir")
	time.Sleep(300 * time.Millisecond)
	nodeA.kill(t)
	nodeB.kill(t)
	size := func(p string) int64 {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("pod path after plugin kill: %v", err)
		}
		return st.Size()
	}
	sa, sb := size(a1+"/log"), size(b1+"/dir/log")
	eventually(t, "pods keep writing after the plugins were killed", func() error {
		if size(a1+"/log") <= sa || size(b1+"/dir/log") <= sb {
			return fmt.Errorf("the logs stopped growing")
		}
		return nil
	})
	pod(t, "cat "+a3+"/greeting >/dev/null && echo ok > "+b3+"/still-writable")
	eventually(t, "node b sees node a's writes after the kill", func() error {
		if size(b1+"/log") == 0 {
			return fmt.Errorf("empty")
		}
		return nil
	})

	t.Log("restart the plugins; unpublish and unstage everything")
	nodeA = start(t, "node-a (restarted)", nodeBin, nodeAArgs...)
	nodeB = start(t, "node-b (restarted)", nodeBin, nodeBArgs...)
	nodes["a"] = csi.NewNodeClient(connect(t, sock("node-a")))
	nodes["b"] = csi.NewNodeClient(connect(t, sock("node-b")))
	wa.Process.Kill()
	wb.Process.Kill()
	wa.Wait()
	wb.Wait()
	for _, p := range pubs {
		if _, err := nodes[p.node].NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: p.vol.VolumeId, TargetPath: p.target}); err != nil {
			t.Errorf("unpublish %s after restart: %v", p.target, err)
		}
	}
	for k := range stage {
		node, staging := k[:1], k[1:]
		var id string
		for _, p := range pubs {
			if p.staging == staging {
				id = p.vol.VolumeId
			}
		}
		if _, err := nodes[node].NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
			t.Errorf("unstage %s after restart: %v", staging, err)
		}
	}
	if m := s3gfsMounts(dir); len(m) > 0 {
		t.Errorf("mounts left after unstage: %q", m)
	}
	eventually(t, "mount processes exit", func() error {
		if p := mountProcesses(dir); len(p) > 0 {
			return fmt.Errorf("still running: %v", p)
		}
		return nil
	})

	for _, v := range []*csi.Volume{roVol, shared, rwVol, clone} {
		if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.VolumeId, Secrets: secrets}); err != nil {
			t.Error(err)
		}
	}
	if _, err := ctrl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.Snapshot.SnapshotId, Secrets: secrets}); err != nil {
		t.Error(err)
	}
	if keys := bucketKeys(t, s3, params["bucket"]); len(keys) > 0 {
		t.Errorf("objects left after every volume and snapshot was deleted: %q", keys)
	}
	resp, err := (&netHTTP{}).get("http://" + metricsAddr + "/metrics")
	if err != nil || !strings.Contains(resp, `s3gfs_csi_operations_total{code="OK",method="CreateVolume",service="controller"}`) {
		t.Errorf("controller metrics: %v\n%.1500s", err, resp)
	}

	t.Log("kill the mounter: its mounts die; the node says so and cleans up")
	last := create("pvc-mounter-kill", rwx, nil)
	b5 := publish("b", last, rwx, "pod-b5", false)
	pod(t, "echo x > "+b5+"/f")
	// A restart of the mounter's container ends every process in it: the
	// mounter and the mount processes it started.
	mounterB.kill(t)
	for _, pid := range mountProcesses(filepath.Join(dir, "node-b")) {
		n, _ := strconv.Atoi(pid)
		syscall.Kill(n, syscall.SIGKILL)
	}
	eventually(t, "the mount dies with its mounter", func() error {
		if _, err := os.Stat(b5 + "/f"); !errors.Is(err, syscall.ENOTCONN) {
			return fmt.Errorf("stat: %v", err)
		}
		return nil
	})
	mounterB = start(t, "mounter-b (restarted)", nodeBin, "mounter", "--socket", sock("mounter-b"), "--s3gfs-binary", s3gfsBin, "-v", "2")
	connect(t, sock("mounter-b"))
	p5 := pubs[len(pubs)-1]
	_, err = nodes["b"].NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: last.VolumeId, StagingTargetPath: p5.staging,
		TargetPath: filepath.Join(dir, "node-b", "pods", "pod-b6"), VolumeCapability: rwx, VolumeContext: last.VolumeContext})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("publish from a dead staging mount: %v, want FailedPrecondition", err)
	}
	if _, err := nodes["b"].NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: last.VolumeId, TargetPath: b5}); err != nil {
		t.Errorf("unpublish a dead mount: %v", err)
	}
	if _, err := nodes["b"].NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: last.VolumeId, StagingTargetPath: p5.staging}); err != nil {
		t.Errorf("unstage a dead mount: %v", err)
	}
	if m := s3gfsMounts(dir); len(m) > 0 {
		t.Errorf("mounts left: %q", m)
	}
	if _, err := ctrl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: last.VolumeId, Secrets: secrets}); err != nil {
		t.Error(err)
	}
	mounterB.cmd.Process.Signal(syscall.SIGTERM)
	mounterB.cmd.Wait()
}

func bucketKeys(t *testing.T, s3 *testenv.Server, bucket string) []string {
	t.Helper()
	store, err := s3store.New(context.Background(), s3.Config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	page, err := store.List(context.Background(), "", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range page.Objects {
		out = append(out, o.Key)
	}
	return out
}

// TestCommandLines: --help works and says what to do; bad invocations exit 2
// with a message.
func TestCommandLines(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	dir := t.TempDir()
	controller, node := build(t, dir, "cmd/controller"), build(t, dir, "cmd/node")
	for _, c := range []struct {
		bin  string
		args []string
		code int
		want string
	}{
		{controller, []string{"--help"}, 0, "--endpoint"},
		{controller, []string{"--help"}, 0, "accessKeyID"},
		{node, []string{"--help"}, 0, "--node-id"},
		{node, []string{"--help"}, 0, "mounter"},
		{node, []string{"mounter", "--help"}, 0, "-socket"},
		{controller, []string{"--bogus"}, 2, "bogus"},
		{node, []string{"--mounter", "ftp://x"}, 2, "--mounter"},
		{node, []string{"--node-id", ""}, 2, "--node-id"},
		{controller, []string{"--endpoint", "tcp://1.2.3.4:5"}, 1, "unix://"},
		{controller, []string{"--version"}, 0, "controller"},
	} {
		out, err := exec.Command(c.bin, c.args...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%s %q: exit %d, want %d, output lacks %q:\n%s", filepath.Base(c.bin), c.args, code, c.code, c.want, out)
		}
	}
}

func allUnder(keys []string, prefix string) bool {
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix) {
			return false
		}
	}
	return true
}
