package driver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// NodeConfig configures the node service.
type NodeConfig struct {
	NodeID string
	// StateDir keeps one small file per staged volume (the volume, its
	// staging path, the mount process) and the mounts' log files. It must
	// survive a restart of the plugin (a hostPath in Kubernetes).
	StateDir string
	Mounter  Mounter
	// MountTimeout bounds one mount's start-up (default 2m).
	MountTimeout time.Duration
	// CompatWrites passes --compat-writes to every mount: it writes only
	// what builds from before the format additions read (FORMAT.md §12.1
	// A3), for rolling upgrades and rollbacks (docs/csi.md).
	CompatWrites bool
}

// nodeServer implements csi.NodeServer.
type nodeServer struct {
	csi.UnimplementedNodeServer
	cfg   NodeConfig
	guard *guard
}

func newNodeServer(cfg NodeConfig, g *guard) (*nodeServer, error) {
	if cfg.NodeID == "" {
		return nil, errors.New("node: a node id is required")
	}
	if cfg.Mounter == nil {
		return nil, errors.New("node: a mounter is required")
	}
	if cfg.MountTimeout == 0 {
		cfg.MountTimeout = 2 * time.Minute
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	n := &nodeServer{cfg: cfg, guard: g}
	n.rediscover()
	return n, nil
}

// maxMountLog is the size above which a mount's log is rotated when the
// volume is staged again.
const maxMountLog = 16 << 20

// stageState is what the node remembers about one staged volume, in
// <StateDir>/<hash of the staging path>.json. It holds no credentials.
type stageState struct {
	VolumeID    string    `json:"volumeID"`
	StagingPath string    `json:"stagingPath"`
	URL         string    `json:"url"`
	ReadOnly    bool      `json:"readOnly"`
	AsOf        string    `json:"asOf,omitempty"`
	PID         int       `json:"pid,omitempty"`
	Staged      time.Time `json:"staged"`
}

func (n *nodeServer) statePath(staging string) string {
	h := sha256.Sum256([]byte(staging))
	return filepath.Join(n.cfg.StateDir, hex.EncodeToString(h[:12])+".json")
}

func (n *nodeServer) logPath(staging string) string {
	h := sha256.Sum256([]byte(staging))
	return filepath.Join(n.cfg.StateDir, "logs", hex.EncodeToString(h[:12])+".log")
}

func (n *nodeServer) readState(staging string) (*stageState, error) {
	b, err := os.ReadFile(n.statePath(staging))
	if err != nil {
		return nil, err
	}
	var st stageState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

func (n *nodeServer) writeState(st *stageState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	p := n.statePath(st.StagingPath)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// rediscover runs at start: it reports the volumes a previous run of the
// plugin staged, from the state files and /proc/self/mountinfo, and drops
// the state of those no longer mounted. It mounts nothing: mounts that
// outlived the previous run keep serving as they are.
func (n *nodeServer) rediscover() {
	files, _ := filepath.Glob(filepath.Join(n.cfg.StateDir, "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		var st stageState
		if err == nil {
			err = json.Unmarshal(b, &st)
		}
		if err != nil {
			klog.ErrorS(err, "unreadable state file; removing it", "file", f)
			os.Remove(f)
			continue
		}
		m, mounted, _ := mountAt(st.StagingPath)
		switch {
		case !mounted || m.FSType != fuseType:
			klog.InfoS("staged volume is no longer mounted; forgetting it", "volumeID", st.VolumeID, "stagingPath", st.StagingPath)
			os.Remove(f)
		case healthy(st.StagingPath) != nil:
			klog.InfoS("staged volume's mount process is gone; it will be remounted by the next NodeStageVolume", "volumeID", st.VolumeID, "stagingPath", st.StagingPath)
		default:
			klog.InfoS("found staged volume", "volumeID", st.VolumeID, "stagingPath", st.StagingPath, "pid", st.PID)
		}
	}
}

// stagedLoc is where a staged volume's mount reads from: the volume
// itself, or for a read-only view of a snapshot the source volume.
func stagedSpec(l loc, vctx map[string]string) (MountSpec, error) {
	spec := MountSpec{URL: l.URL().String(), Endpoint: l.Endpoint, Region: l.Region}
	if e := vctx[CtxEndpoint]; e != "" && spec.Endpoint == "" {
		if err := validateEndpoint("volume_context "+CtxEndpoint, e); err != nil {
			return spec, err
		}
		spec.Endpoint = e
	}
	if r := vctx[CtxRegion]; r != "" && spec.Region == "" {
		if err := validateRegion("volume_context "+CtxRegion, r); err != nil {
			return spec, err
		}
		spec.Region = r
	}
	if a := vctx[CtxAsOf]; a != "" {
		t, err := time.Parse(time.RFC3339Nano, a)
		if err != nil {
			return spec, invalid("volume_context "+CtxAsOf, "%q is not an RFC 3339 time", clip(a))
		}
		src := vctx[CtxSourcePrefix]
		if err := validatePrefix("volume_context "+CtxSourcePrefix, src); err != nil {
			return spec, err
		}
		bucket := l.Bucket
		if b := vctx[CtxSourceBucket]; b != "" {
			if err := (loc{Bucket: b}).validate("volume_context " + CtxSourceBucket); err != nil {
				return spec, err
			}
			bucket = b
		}
		spec.URL = (loc{Bucket: bucket, Prefix: src}).URL().String()
		spec.AsOf = t.UTC().Format(time.RFC3339Nano)
		if name := vctx[CtxSnapshot]; name != "" {
			// The pin's name, not its time: a pinned instant is never
			// refused as older than the reaper keeps.
			if err := validateName("volume_context "+CtxSnapshot, name); err != nil {
				return spec, err
			}
			spec.AsOf = name
		}
		spec.ReadOnly = true
	}
	if c := vctx[CtxCacheSize]; c != "" {
		v, err := parseSize(c)
		if err != nil || v < 1<<20 {
			return spec, invalid("volume_context "+CtxCacheSize, "%q is not a size of at least 1MiB", clip(c))
		}
		spec.CacheSize = v
	}
	if s := vctx[CtxSyncInterval]; s != "" {
		d, err := parseDuration(s)
		if err != nil || d < 10*time.Millisecond || d > time.Hour {
			return spec, invalid("volume_context "+CtxSyncInterval, "%q is not a duration between 10ms and 1h", clip(s))
		}
		spec.SyncInterval = d
	}
	return spec, nil
}

// checkPath validates a staging or target path from the CO.
func checkPath(field, p string) error {
	if p == "" {
		return invalid(field, "missing")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsRune(p, 0) || len(p) > 4096 {
		return invalid(field, "%q must be a clean absolute path", clip(p))
	}
	return nil
}

// checkCapability accepts mount volumes in every access mode; block
// volumes are not offered.
func checkCapability(field string, c *csi.VolumeCapability) error {
	if c == nil {
		return invalid(field, "missing")
	}
	if c.GetBlock() != nil {
		return invalid(field, "block volumes are not supported; use a mount volume")
	}
	if c.GetMount() == nil {
		return invalid(field, "access type missing (want mount)")
	}
	if fs := c.GetMount().GetFsType(); fs != "" && fs != "s3gfs" && fs != fuseType {
		return invalid(field, "fs_type %q is not supported (leave it empty or use s3gfs)", clip(fs))
	}
	for _, f := range c.GetMount().GetMountFlags() {
		if f != "ro" && f != "rw" {
			return invalid(field, "mount flag %q is not supported (use the StorageClass parameters cacheSize and syncInterval)", clip(f))
		}
	}
	if c.GetAccessMode() == nil || c.GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_UNKNOWN {
		return invalid(field, "access mode missing")
	}
	return nil
}

func readerOnly(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	for _, f := range c.GetMount().GetMountFlags() {
		if f == "ro" {
			return true
		}
	}
	return false
}

func (n *nodeServer) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id", "missing")
	}
	staging := req.GetStagingTargetPath()
	if err := checkPath("staging_target_path", staging); err != nil {
		return nil, err
	}
	if err := checkCapability("volume_capability", req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	l, err := parseVolumeID("volume_id", req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	spec, err := stagedSpec(l, req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if readerOnly(req.GetVolumeCapability()) {
		spec.ReadOnly = true
	}
	creds, err := parseSecrets(req.GetSecrets())
	if err != nil {
		return nil, err
	}
	if spec.Endpoint == "" {
		spec.Endpoint = creds.Endpoint
	}
	if spec.Region == "" {
		spec.Region = creds.Region
	}
	spec.AccessKeyID, spec.SecretAccessKey = creds.AccessKeyID, creds.SecretAccessKey
	spec.Target = staging
	spec.NodeName = n.cfg.NodeID
	spec.LogFile = n.logPath(staging)
	spec.CompatWrites = n.cfg.CompatWrites

	release, err := n.guard.acquire(req.GetVolumeId(), staging)
	if err != nil {
		return nil, err
	}
	defer release()

	m, mounted, err := mountAt(staging)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(staging); !mounted && (err != nil || !st.IsDir()) {
		return nil, fmt.Errorf("%w: staging_target_path %s is not an existing directory", ErrNotFound, staging)
	}
	if mounted {
		if m.FSType != fuseType || m.Source != spec.URL {
			return nil, fmt.Errorf("%w: staging_target_path %s already has %s (%s) mounted", ErrExists, staging, m.Source, m.FSType)
		}
		if prev, err := n.readState(staging); err == nil && (prev.ReadOnly != spec.ReadOnly || prev.AsOf != spec.AsOf) {
			return nil, fmt.Errorf("%w: %s is staged at %s with other options (read-only %v)", ErrExists, req.GetVolumeId(), staging, prev.ReadOnly)
		}
		if err := healthy(staging); err == nil {
			return &csi.NodeStageVolumeResponse{}, nil
		}
		// The process serving it is gone: clear the dead mount and mount
		// again. (Pods holding bind mounts of the dead one must be
		// restarted; see docs/csi.md.)
		klog.InfoS("staged mount is dead; remounting", "volumeID", req.GetVolumeId(), "stagingPath", staging)
		if err := syscall.Unmount(staging, unix.MNT_DETACH); err != nil {
			return nil, fmt.Errorf("clear dead mount at %s: %w", staging, err)
		}
	}
	// Each mount appends to its log; keep one previous generation.
	if st, err := os.Stat(spec.LogFile); err == nil && st.Size() > maxMountLog {
		os.Rename(spec.LogFile, spec.LogFile+".1")
	}
	mctx, cancel := context.WithTimeout(ctx, n.cfg.MountTimeout)
	defer cancel()
	pid, err := n.cfg.Mounter.Mount(mctx, spec)
	if err != nil {
		return nil, err
	}
	st := &stageState{VolumeID: req.GetVolumeId(), StagingPath: staging, URL: spec.URL, ReadOnly: spec.ReadOnly, AsOf: spec.AsOf, PID: pid, Staged: time.Now().UTC()}
	if err := n.writeState(st); err != nil {
		klog.ErrorS(err, "write state file (the mount works; a restarted plugin will still find it in mountinfo)", "stagingPath", staging)
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

func (n *nodeServer) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if _, err := parseVolumeID("volume_id", req.GetVolumeId()); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	} else if req.GetVolumeId() == "" {
		return nil, invalid("volume_id", "missing")
	}
	staging := req.GetStagingTargetPath()
	if err := checkPath("staging_target_path", staging); err != nil {
		return nil, err
	}
	release, err := n.guard.acquire(req.GetVolumeId(), staging)
	if err != nil {
		return nil, err
	}
	defer release()
	pid := 0
	if st, err := n.readState(staging); err == nil {
		pid = st.PID
	}
	m, mounted, err := mountAt(staging)
	if err != nil {
		return nil, err
	}
	if mounted && m.FSType != fuseType {
		return nil, fmt.Errorf("%w: %s has %s mounted, not s3gfs", ErrPrecondition, staging, m.FSType)
	}
	if mounted {
		if others, err := bindsOf(m.MajMin, staging); err != nil {
			return nil, err
		} else if len(others) > 0 {
			return nil, fmt.Errorf("%w: volume %s is still published at %s (unpublish it first)", ErrPrecondition, req.GetVolumeId(), others[0])
		}
		uctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		if err := n.cfg.Mounter.Unmount(uctx, staging, pid); err != nil {
			return nil, err
		}
	}
	os.Remove(n.statePath(staging))
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (n *nodeServer) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id", "missing")
	}
	staging, target := req.GetStagingTargetPath(), req.GetTargetPath()
	if err := checkPath("staging_target_path", staging); err != nil {
		return nil, err
	}
	if err := checkPath("target_path", target); err != nil {
		return nil, err
	}
	if err := checkCapability("volume_capability", req.GetVolumeCapability()); err != nil {
		return nil, err
	}
	if _, err := parseVolumeID("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	ro := req.GetReadonly() || readerOnly(req.GetVolumeCapability())
	release, err := n.guard.acquireShared([]string{target}, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()

	sm, staged, err := mountAt(staging)
	if err != nil {
		return nil, err
	}
	if !staged || sm.FSType != fuseType {
		return nil, fmt.Errorf("%w: volume %s is not staged at %s (call NodeStageVolume first)", ErrPrecondition, req.GetVolumeId(), staging)
	}
	if err := healthy(staging); err != nil {
		return nil, fmt.Errorf("%w: the mount of volume %s at %s is dead (%v): its s3gfs process is gone; the volume must be unstaged and staged again (pods using it on this node must be restarted)", ErrPrecondition, req.GetVolumeId(), staging, err)
	}
	if req.GetVolumeCapability().GetAccessMode().GetMode() == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		if others, err := bindsOf(sm.MajMin, staging, target); err != nil {
			return nil, err
		} else if len(others) > 0 {
			return nil, fmt.Errorf("%w: volume %s is single-node-single-writer and already published at %s", ErrPrecondition, req.GetVolumeId(), others[0])
		}
	}
	if tm, mounted, err := mountAt(target); err != nil {
		return nil, err
	} else if mounted {
		if tm.MajMin == sm.MajMin && tm.readOnly() == ro {
			return &csi.NodePublishVolumeResponse{}, nil
		}
		return nil, fmt.Errorf("%w: target_path %s already has another mount (or another read-only setting)", ErrExists, target)
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, fmt.Errorf("create target_path %s: %w", target, err)
	}
	if err := unix.Mount(staging, target, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("bind mount %s at %s: %w", staging, target, err)
	}
	if ro {
		if err := unix.Mount("", target, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			unix.Unmount(target, 0)
			return nil, fmt.Errorf("make %s read-only: %w", target, err)
		}
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (n *nodeServer) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id", "missing")
	}
	if _, err := parseVolumeID("volume_id", req.GetVolumeId()); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	target := req.GetTargetPath()
	if err := checkPath("target_path", target); err != nil {
		return nil, err
	}
	release, err := n.guard.acquireShared([]string{target}, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()
	for i := 0; ; i++ {
		_, mounted, err := mountAt(target)
		if err != nil {
			return nil, err
		}
		if !mounted {
			break
		}
		if i >= 8 {
			return nil, fmt.Errorf("unmount %s: still mounted after %d unmounts", target, i)
		}
		if err := unix.Unmount(target, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			if errors.Is(err, unix.EBUSY) {
				return nil, fmt.Errorf("%w: unmount %s: in use", ErrPrecondition, target)
			}
			return nil, fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove target_path %s: %w", target, err)
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (n *nodeServer) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, invalid("volume_id", "missing")
	}
	p := req.GetVolumePath()
	if p == "" {
		return nil, invalid("volume_path", "missing")
	}
	if _, err := parseVolumeID("volume_id", req.GetVolumeId()); err != nil {
		return nil, err
	}
	if checkPath("volume_path", p) != nil {
		return nil, fmt.Errorf("%w: volume_path %q is not a clean absolute path", ErrNotFound, clip(p))
	}
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: volume_path %s does not exist", ErrNotFound, p)
	}
	m, mounted, err := mountAt(p)
	if err != nil {
		return nil, err
	}
	if !mounted || m.FSType != fuseType {
		return nil, fmt.Errorf("%w: volume_path %s is not an s3gfs mount", ErrNotFound, p)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w (has its mount process gone?)", p, err)
	}
	bs := int64(st.Bsize)
	return &csi.NodeGetVolumeStatsResponse{
		Usage: []*csi.VolumeUsage{
			{Unit: csi.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
			{Unit: csi.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
		},
	}, nil
}

func (n *nodeServer) NodeGetCapabilities(ctx context.Context, req *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	var caps []*csi.NodeServiceCapability
	for _, c := range []csi.NodeServiceCapability_RPC_Type{
		csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS,
		csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: c}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (n *nodeServer) NodeGetInfo(ctx context.Context, req *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{NodeId: n.cfg.NodeID}, nil
}

// bindsOf lists the mountpoints of device majMin other than those given:
// where a staged volume is still bind-mounted.
func bindsOf(majMin string, except ...string) ([]string, error) {
	ms, err := readMounts()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if m.MajMin == majMin && m.FSType == fuseType && !slices.Contains(except, m.MountPoint) {
			out = append(out, m.MountPoint)
		}
	}
	return out, nil
}
