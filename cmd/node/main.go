// Command node is the s3gfs CSI node plugin: it mounts s3gfs volumes on a
// node for the kubelet (stage once per node with FUSE, bind-mount into each
// pod). With the subcommand "mounter" it is instead the long-lived process
// that runs the FUSE mounts, so that the plugin can restart without
// breaking them.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"

	"github.com/s3gfs/s3gfs/pkg/driver"
)

var version = "dev"

const usage = `Usage: PROG [flags]            the CSI node plugin
       PROG mounter [flags]    the mounter that runs the FUSE mounts

The s3gfs CSI node plugin serves the CSI identity and node services on
--endpoint for the kubelet. NodeStageVolume mounts a volume once per node
at the staging path by starting an "s3gfs mount" process; NodePublishVolume
bind-mounts it into each pod. It needs root (CAP_SYS_ADMIN), /dev/fuse and,
in Kubernetes, Bidirectional mount propagation of the kubelet directory.

The s3gfs mount processes never run inside the plugin process, so the
plugin can restart (or crash) without breaking the pods' mounts:
  --mounter detached            (default) each mount is a detached process
                                of its own ("s3gfs mount --background"):
                                for plain hosts, and tests
  --mounter host                (Kubernetes) each mount runs on the node
                                outside every container's cgroup (moved to
                                --host-cgroup in --host-cgroupfs), chrooted
                                to --host-root and in the host's mount
                                namespace when reachable; deleting or
                                upgrading the node pod leaves the pods'
                                mounts serving. Needs the pod's hostPID and
                                hostNetwork, and --state-dir on a hostPath
                                at the same path (the binary is copied there)
  --mounter unix:///run/s3gfs/mounter.sock
                                a "PROG mounter" process, in Kubernetes a
                                separate container of the node pod, runs
                                them; restarting the plugin container
                                leaves them alone, deleting the pod ends them
On start the plugin finds the volumes it staged before from --state-dir and
/proc/self/mountinfo; it remounts nothing. See docs/csi.md.

Examples:
  PROG --endpoint unix:///csi/csi.sock --node-id $NODE_NAME --mounter host
  PROG --endpoint unix:///csi/csi.sock --node-id $NODE_NAME --mounter unix:///run/s3gfs/mounter.sock
  PROG mounter --socket /run/s3gfs/mounter.sock

Flags:
`

func main() {
	if len(os.Args) > 1 && os.Args[1] == "mounter" {
		os.Exit(runMounter(os.Args[2:]))
	}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), strings.ReplaceAll(usage, "PROG", prog())); fs.PrintDefaults() }
	host, _ := os.Hostname()
	if n := os.Getenv("NODE_NAME"); n != "" {
		host = n
	}
	endpoint := fs.String("endpoint", "unix:///csi/csi.sock", "CSI endpoint: the unix socket to serve on, unix:///path/csi.sock")
	nodeID := fs.String("node-id", host, "this node's id, the Kubernetes node name (default: $NODE_NAME, else the host name)")
	name := fs.String("driver-name", driver.DefaultDriverName, "CSI driver name")
	stateDir := fs.String("state-dir", "/var/lib/s3gfs-csi", "directory for the per-volume state files and mount logs; must survive plugin restarts")
	mounter := fs.String("mounter", "detached", "who runs the s3gfs mount processes: detached, host, or unix:///path/mounter.sock of a \"mounter\" (this binary with the mounter subcommand)")
	bin := fs.String("s3gfs-binary", defaultBinary(), "the s3gfs binary the detached and host mounters run")
	hostRoot := fs.String("host-root", "/proc/1/root", "with --mounter host: the host's root directory as this process sees it (\"\": stay in this container's; also when it cannot be reached)")
	hostCgroupFS := fs.String("host-cgroupfs", "/sys/fs/cgroup", "with --mounter host: the host's cgroup file system as this process sees it (in a container: a hostPath of /sys/fs/cgroup)")
	hostCgroup := fs.String("host-cgroup", driver.DefaultHostCgroup, "with --mounter host: the cgroup (the same path in every hierarchy) mount processes are moved to")
	metrics := fs.String("metrics-addr", "", "serve Prometheus metrics at this address's /metrics (and /healthz, as --health-addr), e.g. :9810 (default: off)")
	health := fs.String("health-addr", "", "serve /healthz at this address for the kubelet's liveness probe, e.g. :9808: it calls the plugin's CSI Probe through --endpoint, as /healthz on --metrics-addr does (default: off)")
	regDir := fs.String("registration-dir", "", "serve the kubelet's plugin registration in this directory (the kubelet's plugins_registry, e.g. /var/lib/kubelet/plugins_registry), instead of a node-driver-registrar sidecar (default: off)")
	kubeletEndpoint := fs.String("kubelet-csi-endpoint", "", "with --registration-dir: the CSI socket's path as the kubelet sees it (default: the --endpoint path)")
	compat := fs.Bool("compat-writes", false, "mount every volume with s3gfs mount --compat-writes: write only what s3gfs builds from before 2026-11-26 read, while a node may still mount volumes with such a build (a rolling upgrade from one, or a planned rollback to one; docs/csi.md)")
	v := fs.Int("v", 0, "log verbosity (0 logs every call but probes and volume statistics; 5 those too)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "node: unexpected arguments %q (see --help)\n", fs.Args())
		os.Exit(2)
	}
	if *showVersion {
		fmt.Println("s3gfs csi node", version)
		return
	}
	if *nodeID == "" {
		fmt.Fprintln(os.Stderr, "node: --node-id is required (the Kubernetes node name)")
		os.Exit(2)
	}
	driver.SetupLogging(os.Stderr, *v)
	var m driver.Mounter
	switch {
	case *mounter == "detached":
		m = &driver.DetachedMounter{Binary: *bin}
	case *mounter == "host":
		hm := &driver.HostMounter{Binary: *bin, BinDir: filepath.Join(*stateDir, "bin"), HostRoot: *hostRoot, CgroupRoot: *hostCgroupFS, Cgroup: *hostCgroup}
		if err := hm.CheckHost(); err != nil {
			fmt.Fprintf(os.Stderr, "node: --mounter host: %v\n", err)
			os.Exit(2)
		}
		m = hm
	case strings.HasPrefix(*mounter, "unix://"):
		m = driver.NewRemoteMounter(strings.TrimPrefix(*mounter, "unix://"))
	default:
		fmt.Fprintf(os.Stderr, "node: --mounter %q: want detached, host or unix:///path/mounter.sock\n", *mounter)
		os.Exit(2)
	}
	srv, err := driver.NewNodeServer(*name, version, driver.NodeConfig{NodeID: *nodeID, StateDir: *stateDir, Mounter: m, CompatWrites: *compat})
	if err != nil {
		klog.ErrorS(err, "node plugin cannot start")
		os.Exit(1)
	}
	// /healthz (on --health-addr, and on --metrics-addr) calls the
	// plugin's own CSI Probe through its socket.
	check, err := driver.ProbeCSI(*endpoint)
	if err != nil {
		klog.ErrorS(err, "--endpoint")
		os.Exit(1)
	}
	driver.ServeMetrics(*metrics, srv.MetricsHandler(), check)
	driver.ServeHealth(*health, check)
	if *regDir != "" {
		ep := *kubeletEndpoint
		if ep == "" {
			ep = strings.TrimPrefix(strings.TrimPrefix(*endpoint, "unix://"), "unix:")
		}
		reg := &driver.Registrar{DriverName: *name, CSIEndpoint: ep}
		go func() {
			if err := reg.Serve(*regDir); err != nil {
				klog.ErrorS(err, "kubelet plugin registration stopped")
				os.Exit(1)
			}
		}()
		defer reg.Stop()
	}
	// Stopping serves no more calls and leaves every mount as it is.
	if err := driver.RunUntilSignal(func() error { return srv.Serve(*endpoint) }, srv.Stop); err != nil {
		klog.ErrorS(err, "node plugin stopped")
		os.Exit(1)
	}
}

const mounterUsage = `Usage: PROG mounter [flags]

Runs the s3gfs mount processes for a node plugin started with
--mounter unix://SOCKET, and keeps them while the plugin restarts. In
Kubernetes it is its own container in the node DaemonSet pod (privileged,
/dev/fuse, Bidirectional propagation of the kubelet directory), sharing the
socket's directory with the plugin container.

On SIGTERM it stops answering and leaves the mounts running when
--keep-mounts-on-exit is set (they end with the container), else it writes
every mount back and unmounts it.

Flags:
`

func runMounter(args []string) int {
	fs := flag.NewFlagSet("node mounter", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), strings.ReplaceAll(mounterUsage, "PROG", prog())); fs.PrintDefaults() }
	socket := fs.String("socket", "/run/s3gfs/mounter.sock", "unix socket to serve the node plugin on")
	bin := fs.String("s3gfs-binary", defaultBinary(), "the s3gfs binary to run")
	keep := fs.Bool("keep-mounts-on-exit", false, "on SIGTERM, leave the mounts to be ended with the container instead of unmounting them")
	health := fs.String("health-addr", "", "serve /healthz at this address for the kubelet's probes, e.g. :9812: it asks the mounter through --socket (default: off)")
	v := fs.Int("v", 0, "log verbosity")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	driver.SetupLogging(os.Stderr, *v)
	sup := &driver.Supervisor{Binary: *bin}
	ms := &driver.MounterServer{Mounter: sup}
	klog.InfoS("mounter serving", "socket", *socket, "binary", *bin)
	driver.ServeHealth(*health, driver.ProbeMounter(*socket))
	err := driver.RunUntilSignal(func() error { return ms.Serve(*socket) }, func() {
		ctx, cancel := driver.ShutdownContext()
		defer cancel()
		ms.Shutdown(ctx)
		if !*keep {
			sup.Stop(ctx)
		}
	})
	if err != nil {
		klog.ErrorS(err, "mounter stopped")
		return 1
	}
	return 0
}

// defaultBinary is s3gfs next to this executable, else s3gfs on $PATH.
func defaultBinary() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "s3gfs")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return "s3gfs"
}

// prog is the name this binary was started as.
func prog() string { return filepath.Base(os.Args[0]) }
