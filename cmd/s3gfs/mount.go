package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/s3gfs/s3gfs/pkg/s3gfs/fusefs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/snapshot"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/vfs"
	"github.com/s3gfs/s3gfs/pkg/s3gfs/volume"
)

// readyFDEnv names the descriptor on which a --background child reports
// that its mount is ready ("ok") or why it failed.
const readyFDEnv = "S3GFS_READY_FD"

// runtimeAllowance is the memory a mount needs beyond its write-back
// buffer and read cache: the Go runtime, FUSE request buffers, uploads and
// downloads in flight.
const runtimeAllowance = 64 << 20

// asOfCacheTimeout is the kernel's cache timeout of a --as-of mount, whose
// view never changes.
const asOfCacheTimeout = time.Hour

type mountFlags struct {
	store        storeFlags
	log          logFlags
	readOnly     bool
	hostID       string
	cacheDir     string
	cacheSize    sizeFlag
	bufferSize   sizeFlag
	allowOther   bool
	background   bool
	logFile      string
	debugFUSE    bool
	syncEvery    durationFlag
	hostExpiry   durationFlag
	kcache       durationFlag
	nodeName     string
	asOf         string
	pprofAddr    string
	compatWrites bool
}

func runMount(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("mount", "[flags] s3://BUCKET/PREFIX MOUNTPOINT",
		`Mounts the volume at MOUNTPOINT and serves it in the foreground until the
mountpoint is unmounted (umount MOUNTPOINT) or the process gets SIGINT or
SIGTERM; then it writes back everything and exits 0. With --background it
returns as soon as the mount is ready. Any number of hosts may mount one
volume read-write at once.`, stderr)
	m := mountFlags{cacheSize: vfs.DefaultCacheSize, bufferSize: vfs.DefaultBufferSize, syncEvery: durationFlag(time.Second), hostExpiry: durationFlag(3 * time.Minute)}
	m.nodeName, _ = os.Hostname()
	m.store.register(fs)
	m.log.register(fs)
	fs.BoolVar(&m.readOnly, "read-only", false, "mount read-only")
	fs.StringVar(&m.hostID, "host-id", "", "this mount's host id, 16 hex digits (default: a fresh random id per mount; never reuse one that a different s3gfs build used on the volume while its ping may be listed)")
	fs.StringVar(&m.cacheDir, "cache-dir", "", "directory for a local disk cache of file data (default: memory only)")
	fs.Var(&m.cacheSize, "cache-size", "memory for cached file data")
	fs.Var(&m.bufferSize, "buffer-size", "memory for written data not yet uploaded (at least two extents)")
	fs.BoolVar(&m.allowOther, "allow-other", false, "let users other than the mounting one access the mount")
	fs.BoolVar(&m.background, "background", false, "return once the mount is ready, leaving it served by a background process")
	fs.StringVar(&m.logFile, "log-file", "", "append logs to this file (default: standard error; with --background, logs after start-up are discarded unless this is set)")
	fs.BoolVar(&m.debugFUSE, "debug-fuse", false, "log every FUSE request")
	fs.StringVar(&m.pprofAddr, "pprof-addr", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060, for go tool pprof")
	fs.Var(&m.syncEvery, "sync-interval", "how often to write this host's ping and pick up other hosts' changes")
	fs.Var(&m.hostExpiry, "host-expiry", "stop serving (fence) when the ping could not be renewed for this long; at least 3 sync intervals; the reaper waits this long for a silent host")
	fs.Var(&m.kcache, "cache-timeout", "how long the kernel may cache lookups and attributes; other hosts' changes drop them when this host picks them up, so this bounds only changes no host announced (default 1m, 1h with --as-of)")
	fs.StringVar(&m.nodeName, "node-name", m.nodeName, "machine name recorded in the ping (shown by s3gfs hosts)")
	fs.BoolVar(&m.compatWrites, "compat-writes", false, "write only what s3gfs builds from before 2026-11-26 read, whatever the other mounts of the volume read (without it, a mount holds back by itself while a mount of such a build is live): extents with one checksum of the whole extent instead of 64 KiB block checksums (random reads of them fetch them whole), and an object for every new file's version 1 instead of keeping it in its directory entry (one more write per new file)")
	fs.BoolVar(&m.compatWrites, "whole-extent-checksums", false, "deprecated: the same as --compat-writes")
	fs.StringVar(&m.asOf, "as-of", "", "mount read-only exactly as the volume was at this time (RFC 3339, e.g. 2026-11-25T14:00:00Z; the object store's clock) or at this snapshot's pin (a snapshot name)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		fs.Usage()
		return fmt.Errorf("%w: want a volume URL and a mountpoint, got %d arguments", errUsage, len(pos))
	}
	u, err := parseVolumeArg(pos[0])
	if err != nil {
		return err
	}
	mnt := pos[1]
	if st, err := os.Stat(mnt); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: mountpoint %s is not an existing directory", errUsage, mnt)
	}
	if m.syncEvery < durationFlag(10*time.Millisecond) {
		return fmt.Errorf("%w: --sync-interval %s is too short (at least 10ms)", errUsage, time.Duration(m.syncEvery))
	}
	if m.hostExpiry < 3*m.syncEvery || m.hostExpiry > durationFlag(24*time.Hour) {
		return fmt.Errorf("%w: --host-expiry %s must be at least three sync intervals and at most 24h", errUsage, time.Duration(m.hostExpiry))
	}
	if m.kcache > durationFlag(24*time.Hour) {
		return fmt.Errorf("%w: --cache-timeout %s exceeds 24h", errUsage, time.Duration(m.kcache))
	}
	if len(m.nodeName) > 253 {
		return fmt.Errorf("%w: --node-name is longer than 253 bytes", errUsage)
	}
	if m.asOf != "" {
		if _, err := time.Parse(time.RFC3339Nano, m.asOf); err != nil && snapshot.ValidateName(m.asOf) != nil {
			return fmt.Errorf("%w: --as-of %q is neither an RFC 3339 time such as 2026-11-25T14:00:00Z nor a snapshot name", errUsage, m.asOf)
		}
		m.readOnly = true
	}
	var hostID uint64
	if m.hostID != "" {
		if hostID, err = strconv.ParseUint(m.hostID, 16, 64); err != nil || hostID == 0 {
			return fmt.Errorf("%w: --host-id %q must be 1-16 hex digits, not zero", errUsage, m.hostID)
		}
	}
	logOut := stderr
	if m.logFile != "" {
		f, err := os.OpenFile(m.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return fmt.Errorf("%w: --log-file: %v", errUsage, err)
		}
		defer f.Close()
		logOut = f
	}
	log, err := m.log.logger(logOut)
	if err != nil {
		return err
	}
	if m.background && os.Getenv(readyFDEnv) == "" {
		return daemonize(args, stderr)
	}
	err = serve(ctx, u, mnt, hostID, m, log)
	if fd := os.Getenv(readyFDEnv); fd != "" && err != nil {
		reportReady(fd, err)
	}
	return err
}

// serve mounts the volume and blocks until it is unmounted.
func serve(ctx context.Context, u volume.URL, mnt string, hostID uint64, m mountFlags, log *slog.Logger) error {
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft limit derived from the configured bounds makes the garbage
		// collector reclaim upload and download copies before the heap
		// drifts far past what the buffers and cache need.
		debug.SetMemoryLimit(int64(m.bufferSize) + int64(m.cacheSize) + runtimeAllowance)
	}
	store, err := m.store.open(ctx, u)
	if err != nil {
		return err
	}
	octx, cancel := context.WithTimeout(ctx, time.Minute)
	vol, err := volume.Open(octx, store, u, !m.readOnly)
	cancel()
	if err != nil {
		return err
	}
	var asOf time.Time
	pinned := false
	if m.asOf != "" {
		actx, acancel := context.WithTimeout(ctx, time.Minute)
		asOf, pinned, err = resolveAsOf(actx, vol, m.asOf)
		acancel()
		if err != nil {
			return err
		}
	}
	engine, err := vfs.New(vol, vfs.Options{
		AsOf:   asOf,
		HostID: hostID, ReadOnly: m.readOnly, BufferSize: int64(m.bufferSize),
		CacheSize: int64(m.cacheSize), CacheDir: m.cacheDir, Logger: log,
		SyncInterval: time.Duration(m.syncEvery), HostExpiry: time.Duration(m.hostExpiry), NodeName: m.nodeName,
		WholeExtentChecksums: m.compatWrites,
		Version1Objects:      m.compatWrites,
	})
	if err != nil {
		return err
	}
	if !asOf.IsZero() {
		// Again, now that this host's first ping announces asOf: a reaper
		// pass records its horizon before it reads the pings, so it either
		// sees that ping or this check sees its record (FORMAT.md §15).
		actx, acancel := context.WithTimeout(ctx, time.Minute)
		err := snapshot.CheckAsOf(actx, vol, asOf, pinned)
		acancel()
		if err != nil {
			engine.Close(ctx)
			return asOfErr(m.asOf, err)
		}
	}
	// Catch SIGINT and SIGTERM before the mount exists: one that arrives
	// as soon as the mount is reported ready must still write back and
	// unmount, not kill the process and leave a dead mountpoint.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if m.pprofAddr != "" {
		if err := servePprof(m.pprofAddr, log); err != nil {
			engine.Close(ctx)
			return err
		}
	}
	timeout := time.Duration(m.kcache)
	if timeout == 0 && !asOf.IsZero() {
		timeout = asOfCacheTimeout
	}
	server, err := fusefs.Mount(mnt, engine, fusefs.MountOptions{AllowOther: m.allowOther, ReadOnly: m.readOnly, Timeout: timeout, Debug: m.debugFUSE, Logger: log})
	if err != nil {
		engine.Close(ctx)
		return fmt.Errorf("mount %s: %w", mnt, err)
	}
	log.Info("mounted", "volume", u.String(), "mountpoint", mnt, "host", fmt.Sprintf("%016x", engine.HostID()), "read_only", m.readOnly)
	if fd := os.Getenv(readyFDEnv); fd != "" {
		reportReady(fd, nil)
		detachStdio() // the starting command has returned; do not hold its terminal or pipes
	}

	done := make(chan struct{})
	go func() { server.Wait(); close(done) }()
	select {
	case <-done:
		log.Info("unmounted", "mountpoint", mnt)
	case sig := <-sigs:
		log.Info("signal received; writing back and unmounting", "signal", sig.String())
		if err := engine.SyncAll(ctx); err != nil {
			log.Error("write-back before unmount failed", "err", err)
		}
		if err := server.Unmount(); err != nil {
			log.Warn("mountpoint busy; detaching it lazily", "err", err)
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		<-done
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer ccancel()
	if err := engine.Close(cctx); err != nil {
		return fmt.Errorf("final write-back: %w", err)
	}
	log.Info("written back", "deferred_creates", engine.DeferredCreates())
	return nil
}

// daemonize re-runs this mount in a new session and waits for it to report
// that the mount is ready.
func daemonize(args []string, stderr io.Writer) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, append([]string{"mount"}, args...)...)
	cmd.Env = append(os.Environ(), readyFDEnv+"=3")
	cmd.ExtraFiles = []*os.File{w}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start background mount: %w", err)
	}
	w.Close()
	msg, _ := io.ReadAll(r)
	if string(msg) == "ok" {
		fmt.Fprintf(stderr, "s3gfs: mounted in the background (pid %d)\n", cmd.Process.Pid)
		return nil
	}
	cmd.Wait()
	if len(msg) == 0 {
		return errors.New("background mount exited before it was ready")
	}
	return errors.New(string(msg))
}

func reportReady(fd string, err error) {
	n, perr := strconv.Atoi(fd)
	if perr != nil {
		return
	}
	f := os.NewFile(uintptr(n), "ready")
	if f == nil {
		return
	}
	if err == nil {
		f.WriteString("ok")
	} else {
		f.WriteString(err.Error())
	}
	f.Close()
	os.Unsetenv(readyFDEnv)
}

// detachStdio points standard input, output and error at /dev/null.
func detachStdio() {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return
	}
	for fd := 0; fd <= 2; fd++ {
		syscall.Dup2(int(null.Fd()), fd)
	}
	null.Close()
}

// resolveAsOf turns --as-of (an RFC 3339 time or a snapshot name) into a
// store time, and refuses a time the volume cannot show: before it
// existed, in the future, or older than the reaper keeps.
func resolveAsOf(ctx context.Context, vol *volume.Volume, arg string) (time.Time, bool, error) {
	t, pin, err := snapshot.Resolve(ctx, vol.Store, vol.Keys, arg)
	if err != nil {
		if errors.Is(err, snapshot.ErrNotFound) {
			return time.Time{}, false, fmt.Errorf("%w: --as-of %q: %v", errUsage, arg, err)
		}
		return time.Time{}, false, err
	}
	if err := snapshot.CheckAsOf(ctx, vol, t, pin != nil); err != nil {
		return time.Time{}, false, asOfErr(arg, err)
	}
	return t, pin != nil, nil
}

func asOfErr(arg string, err error) error {
	if errors.Is(err, snapshot.ErrTooOld) || errors.Is(err, snapshot.ErrFuture) {
		return fmt.Errorf("%w: --as-of %s: %v", errUsage, arg, err)
	}
	return err
}
