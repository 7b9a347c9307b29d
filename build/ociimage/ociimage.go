// Package ociimage assembles the s3gfs container images offline, without a
// Docker engine or a registry: an empty base (like FROM scratch) plus a
// small root filesystem (passwd, group, CA certificates, /tmp) and the
// static binaries, written as OCI image tarballs that `ctr images import`,
// `docker load` and `podman load` accept. build/images/*.Dockerfile build
// the same images with a Docker engine.
package ociimage

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user the images that need no privileges run as
// (distroless's "nonroot").
const NonRoot = "65532:65532"

// Spec describes one image.
type Spec struct {
	Name       string   // repository, e.g. ghcr.io/s3gfs/s3gfs-csi-controller
	Binaries   []string // file names in the binary directory, installed in /usr/local/bin
	Files      []File   // more static executables, from anywhere to any path (the e2e test's pause, busybox and sidecar images)
	Entrypoint []string
	User       string // uid:gid
	Title      string // org.opencontainers.image.description
	Dockerfile string // the same image for a Docker engine, in build/images
}

// File is one static executable of an image: Src on this machine, Dest
// (absolute) in the image.
type File struct{ Src, Dest string }

// Sources are the Go packages of the binaries, relative to the module root.
var Sources = map[string]string{
	"s3gfs":                "./cmd/s3gfs",
	"s3gfs-csi-controller": "./cmd/controller",
	"s3gfs-csi-node":       "./cmd/node",
}

// BinDir is where the binaries go inside the images.
const BinDir = "/usr/local/bin"

// Images are the s3gfs images; the Helm chart's images.controller, .node and
// .reaper default to these repositories.
var Images = []Spec{
	{
		Name:       "ghcr.io/s3gfs/s3gfs-csi-controller",
		Binaries:   []string{"s3gfs-csi-controller"},
		Entrypoint: []string{BinDir + "/s3gfs-csi-controller"},
		User:       NonRoot,
		Title:      "s3gfs CSI controller plugin (needs S3 access only)",
		Dockerfile: "controller.Dockerfile",
	},
	{
		// The node plugin and the mounter (its "mounter" subcommand), which
		// runs s3gfs from the same directory. Root: mount(2), bind mounts
		// and /dev/fuse need it (the chart runs it privileged). s3gfs
		// mounts with mount(2) directly as root, so no fusermount.
		Name:       "ghcr.io/s3gfs/s3gfs-csi-node",
		Binaries:   []string{"s3gfs-csi-node", "s3gfs"},
		Entrypoint: []string{BinDir + "/s3gfs-csi-node"},
		User:       "0:0",
		Title:      "s3gfs CSI node plugin and mounter",
		Dockerfile: "node.Dockerfile",
	},
	{
		Name:       "ghcr.io/s3gfs/s3gfs",
		Binaries:   []string{"s3gfs"},
		Entrypoint: []string{BinDir + "/s3gfs"},
		User:       NonRoot,
		Title:      "s3gfs command-line tool; the chart runs its reaper",
		Dockerfile: "reaper.Dockerfile",
	},
}

// Options of a build.
type Options struct {
	BinDir  string    // where the static binaries are
	CAFile  string    // CA certificates to install as /etc/ssl/certs/ca-certificates.crt ("" = none)
	Version string    // the image tag and org.opencontainers.image.version
	Arch    string    // GOARCH of the binaries (default: runtime.GOARCH)
	Created time.Time // image and file times (default: the Unix epoch, for reproducible images)
}

// Build assembles spec's image.
func Build(spec Spec, o Options) (v1.Image, error) {
	o.Arch = archOf(o)
	created := createdOf(o)
	base, err := baseLayer(o.CAFile, created)
	if err != nil {
		return nil, err
	}
	var files []file
	for _, b := range spec.Binaries {
		src := filepath.Join(o.BinDir, b)
		if err := CheckStatic(src); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: BinDir + "/" + b, mode: 0o755, data: data})
	}
	for _, f := range spec.Files {
		if !filepath.IsAbs(f.Dest) || filepath.Clean(f.Dest) != f.Dest {
			return nil, fmt.Errorf("%s: destination %q is not a clean absolute path", spec.Name, f.Dest)
		}
		if err := CheckStatic(f.Src); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(f.Src)
		if err != nil {
			return nil, err
		}
		files = append(files, file{path: f.Dest, mode: 0o755, data: data})
	}
	bins, err := layer(files, created)
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, bins)
	if err != nil {
		return nil, err
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = o.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: spec.Entrypoint,
		User:       spec.User,
		WorkingDir: "/",
		Env:        []string{"PATH=" + BinDir + ":/usr/bin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":       spec.Name,
			"org.opencontainers.image.description": spec.Title,
			"org.opencontainers.image.version":     o.Version,
			"org.opencontainers.image.source":      "https://github.com/s3gfs/s3gfs",
		},
	}
	what := fmt.Sprintf("%v in %s", spec.Binaries, BinDir)
	for _, f := range spec.Files {
		what += ", " + f.Dest
	}
	cf.History = []v1.History{
		{Created: v1.Time{Time: created}, CreatedBy: "s3gfs build/ociimage: passwd, group, CA certificates, /tmp"},
		{Created: v1.Time{Time: created}, CreatedBy: "s3gfs build/ociimage: " + what},
	}
	return mutate.ConfigFile(img, cf)
}

// Write builds spec's image and writes it into dir as an image tarball
// named after the repository's last element, tagged o.Version; it returns
// the path. The tarball is an OCI image layout (oci-layout, index.json,
// blobs/sha256/...) that also carries a Docker manifest.json naming the same
// blobs, the format `docker save` writes since Docker 25: `ctr images
// import`, `docker load`, `podman load` and `skopeo copy oci-archive:` all
// read it.
func Write(spec Spec, o Options, dir string) (string, error) {
	img, err := Build(spec, o)
	if err != nil {
		return "", fmt.Errorf("%s: %w", spec.Name, err)
	}
	tag, err := name.NewTag(spec.Name + ":" + o.Version)
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, ".layout-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return "", err
	}
	if err := lp.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.String(),
		"io.containerd.image.name":          tag.String(),
	}), layout.WithPlatform(v1.Platform{OS: "linux", Architecture: archOf(o)})); err != nil {
		return "", err
	}
	cfg, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	layers, err := img.Layers()
	if err != nil {
		return "", err
	}
	dm := []map[string]any{{"Config": "blobs/sha256/" + cfg.Hex, "RepoTags": []string{tag.String()}, "Layers": []string{}}}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return "", err
		}
		dm[0]["Layers"] = append(dm[0]["Layers"].([]string), "blobs/sha256/"+d.Hex)
	}
	manifest, err := json.Marshal(dm)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), manifest, 0o644); err != nil {
		return "", err
	}
	p := filepath.Join(dir, filepath.Base(spec.Name)+".tar")
	if err := tarDir(tmp, p, createdOf(o)); err != nil {
		return "", err
	}
	return p, nil
}

// tarDir writes the files under dir into the tarball out, sorted, with
// fixed times and owners.
func tarDir(dir, out string, mtime time.Time) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatPAX}
		if st.IsDir() {
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", 0o755
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			continue
		}
		h.Typeflag, h.Mode, h.Size = tar.TypeReg, 0o644, st.Size()
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func archOf(o Options) string {
	if o.Arch != "" {
		return o.Arch
	}
	return runtime.GOARCH
}

func createdOf(o Options) time.Time {
	if o.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return o.Created
}

// CheckStatic fails unless path is a statically linked ELF executable (no
// interpreter, no shared libraries): an empty base image has no libc.
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked (build it with CGO_ENABLED=0)", path)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("%s needs shared libraries %v", path, libs)
	}
	return nil
}

type file struct {
	path string
	mode int64
	dir  bool
	data []byte
}

// baseLayer is the root filesystem every image shares.
func baseLayer(caFile string, created time.Time) (v1.Layer, error) {
	files := []file{
		{path: "/etc", mode: 0o755, dir: true},
		{path: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{path: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnonroot:x:65532:\n")},
		{path: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{path: "/home/nonroot", mode: 0o700, dir: true},
		{path: "/root", mode: 0o700, dir: true},
		{path: "/tmp", mode: 0o1777, dir: true},
		{path: "/usr/local/bin", mode: 0o755, dir: true},
	}
	if caFile != "" {
		ca, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
		files = append(files,
			file{path: "/etc/ssl", mode: 0o755, dir: true},
			file{path: "/etc/ssl/certs", mode: 0o755, dir: true},
			file{path: "/etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: ca})
	}
	return layer(files, created)
}

// layer makes a layer of files (parent directories are created as needed),
// owned by root except /home/nonroot, with fixed times.
func layer(files []file, created time.Time) (v1.Layer, error) {
	dirs := map[string]bool{}
	var all []file
	for _, f := range files {
		if f.dir {
			dirs[f.path] = true
		}
	}
	for _, f := range files {
		for d := filepath.Dir(f.path); d != "/"; d = filepath.Dir(d) {
			if !dirs[d] {
				dirs[d] = true
				all = append(all, file{path: d, mode: 0o755, dir: true})
			}
		}
		all = append(all, f)
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].path < all[j].path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range all {
		h := &tar.Header{Name: f.path[1:], Mode: f.mode, ModTime: created, Format: tar.FormatPAX}
		if f.path == "/home/nonroot" {
			h.Uid, h.Gid = 65532, 65532
		}
		if f.dir {
			h.Typeflag = tar.TypeDir
			h.Name += "/"
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
