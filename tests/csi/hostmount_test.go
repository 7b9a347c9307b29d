package csi_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/s3gfs/s3gfs/internal/testenv"
)

// fakeContainer is a cgroup in every hierarchy, standing in for a
// container: the runtime stops a container by killing every process in its
// cgroup (runc kill --all; the kubelet's pod cgroup clean-up does the same),
// whatever session or parent they have.
type fakeContainer struct{ dirs []string }

func newFakeContainer(t *testing.T, name string) *fakeContainer {
	t.Helper()
	c := &fakeContainer{}
	for _, h := range cgroupHierarchies(t) {
		d := filepath.Join(h, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(h, f)); err == nil {
				os.WriteFile(filepath.Join(d, f), v, 0)
			}
		}
		c.dirs = append(c.dirs, d)
	}
	t.Cleanup(func() {
		c.killAll(t)
		for _, d := range c.dirs {
			os.Remove(d)
		}
	})
	return c
}

func cgroupHierarchies(t *testing.T) []string {
	t.Helper()
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(root + "/cgroup.controllers"); err == nil {
		return []string{root}
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Skip("no cgroup file system:", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && e.Type()&os.ModeSymlink == 0 {
			if _, err := os.Stat(filepath.Join(root, e.Name(), "cgroup.procs")); err == nil {
				out = append(out, filepath.Join(root, e.Name()))
			}
		}
	}
	return out
}

// add moves pid (and so the children it starts later) into the container.
func (c *fakeContainer) add(t *testing.T, pid int) {
	t.Helper()
	for _, d := range c.dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *fakeContainer) pids() []int {
	var out []int
	seen := map[int]bool{}
	for _, d := range c.dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if p, err := strconv.Atoi(f); err == nil && !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// killAll SIGKILLs every process in the container until none is left.
func (c *fakeContainer) killAll(t *testing.T) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		ps := c.pids()
		if len(ps) == 0 {
			return
		}
		for _, p := range ps {
			syscall.Kill(p, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			t.Errorf("processes %v survive SIGKILL", ps)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestHostMounterSurvivesPodDeletion deletes the node plugin's whole "pod"
// (every process in its container's cgroup is killed, as the container
// runtime does) while a "pod" uses a volume: with --mounter host the mount
// process lives outside the container and the volume keeps serving; with
// --mounter detached (the control) the same deletion ends the mount.
func TestHostMounterSurvivesPodDeletion(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	testenv.RequireFUSE(t)
	s3 := testenv.S3(t)
	dir := workDir(t, "s3gfs-csi-hostmount-")
	bins := filepath.Join(dir, "bin")
	s3gfsBin := testenv.Binary(t)
	controllerBin := build(t, bins, "cmd/controller")
	nodeBin := build(t, bins, "cmd/node")
	sock := func(n string) string { return filepath.Join(dir, n+".sock") }
	mountCgroup := fmt.Sprintf("/s3gfs-test-mounts-%d", os.Getpid())
	t.Cleanup(func() {
		for _, h := range cgroupHierarchies(t) {
			os.Remove(filepath.Join(h, mountCgroup))
		}
	})
	secrets := map[string]string{"accessKeyID": s3.AccessKey, "secretAccessKey": s3.SecretKey, "endpoint": s3.Endpoint, "region": s3.Region}
	start(t, "controller", controllerBin, "--endpoint", "unix://"+sock("controller"))
	ctrl := csi.NewControllerClient(connect(t, sock("controller")))
	ctx := context.Background()
	rwx := capability(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)

	// startNode starts a node plugin inside a fresh fake container.
	startNode := func(name, mounter string) (*fakeContainer, csi.NodeClient) {
		t.Helper()
		ctr := newFakeContainer(t, fmt.Sprintf("s3gfs-test-%s-%d", name, time.Now().UnixNano()))
		p := start(t, name, nodeBin, "--endpoint", "unix://"+sock(name), "--node-id", "node-1", "--state-dir", filepath.Join(dir, "state-"+name),
			"--mounter", mounter, "--s3gfs-binary", s3gfsBin, "--host-cgroup", mountCgroup, "--host-root", "/", "-v", "2")
		ctr.add(t, p.cmd.Process.Pid)
		return ctr, csi.NewNodeClient(connect(t, sock(name)))
	}
	stageAndPublish := func(node csi.NodeClient, vol *csi.Volume, name string) (staging, target string) {
		t.Helper()
		staging = filepath.Join(dir, "staging", name)
		target = filepath.Join(dir, "pods", name)
		os.MkdirAll(staging, 0o750)
		os.MkdirAll(filepath.Dir(target), 0o750)
		if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vol.VolumeId, StagingTargetPath: staging,
			VolumeCapability: rwx, VolumeContext: vol.VolumeContext, Secrets: secrets}); err != nil {
			t.Fatalf("stage %s: %v", name, err)
		}
		if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vol.VolumeId, StagingTargetPath: staging,
			TargetPath: target, VolumeCapability: rwx, VolumeContext: vol.VolumeContext}); err != nil {
			t.Fatalf("publish %s: %v", name, err)
		}
		return staging, target
	}
	params := map[string]string{"bucket": testenv.BucketName(t), "prefix": "pvs"}
	create := func(name string) *csi.Volume {
		t.Helper()
		r, err := ctrl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx}, Secrets: secrets})
		if err != nil {
			t.Fatalf("CreateVolume %s: %v", name, err)
		}
		return r.Volume
	}

	hostCtr, hostNode := startNode("node-host", "host")
	hostVol := create("pvc-host")
	hostStaging, hostTarget := stageAndPublish(hostNode, hostVol, "pod-host")
	detCtr, detNode := startNode("node-detached", "detached")
	_, detTarget := stageAndPublish(detNode, create("pvc-detached"), "pod-detached")
	pod(t, "echo before > "+hostTarget+"/f && echo before > "+detTarget+"/f")
	hostPids := mountProcesses(filepath.Join(dir, "staging"))
	if len(hostPids) != 2 {
		t.Fatalf("mount processes %v, want 2", hostPids)
	}
	for _, p := range hostCtr.pids() {
		if isMountOf(p, hostStaging) {
			t.Fatalf("the host mounter's mount process %d is in the plugin's container", p)
		}
	}

	t.Log("delete both node plugin pods: every process of their containers is killed")
	hostCtr.killAll(t)
	detCtr.killAll(t)
	pod(t, "echo after >> "+hostTarget+"/f")
	if err := readIs(hostTarget+"/f", "before\nafter\n")(); err != nil {
		t.Fatal("the host-mounted volume after its plugin's pod was deleted:", err)
	}
	if _, err := os.ReadFile(detTarget + "/f"); !errors.Is(err, syscall.ENOTCONN) {
		t.Errorf("control: a detached mount after its plugin's pod was deleted reads with %v, want ENOTCONN "+
			"(if it survives, this test no longer tells the mounters apart)", err)
	}

	t.Log("the next pod's plugin unpublishes and unstages what the deleted one staged")
	_, hostNode = startNode("node-host", "host")
	if _, err := hostNode.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: hostVol.VolumeId, TargetPath: hostTarget}); err != nil {
		t.Fatal(err)
	}
	if _, err := hostNode.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: hostVol.VolumeId, StagingTargetPath: hostStaging}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the host mount process exits", func() error {
		for _, p := range mountProcesses(filepath.Join(dir, "staging")) {
			if pid, _ := strconv.Atoi(p); isMountOf(pid, hostStaging) {
				return fmt.Errorf("mount process %d still runs", pid)
			}
		}
		return nil
	})
	for _, m := range s3gfsMounts(dir) {
		if strings.HasPrefix(m, hostStaging) || strings.HasPrefix(m, hostTarget) {
			t.Errorf("%s still mounted after unstage", m)
		}
	}
}

// isMountOf reports whether pid is an s3gfs mount process serving target.
func isMountOf(pid int, target string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	return len(args) > 2 && args[len(args)-1] == target
}
