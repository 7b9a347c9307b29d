package ociimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"sigs.k8s.io/yaml"
)

const testVersion = "v0.0.0-imagetest"

// buildBinaries builds the static binaries as `make images` does.
func buildBinaries(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries: not with -short")
	}
	dir := t.TempDir()
	for bin, pkg := range Sources {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return dir
}

// TestImages builds every image tarball, loads it back and checks its
// config and files, and runs each binary taken out of the image.
func TestImages(t *testing.T) {
	bins := buildBinaries(t)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for _, spec := range Images {
		t.Run(filepath.Base(spec.Name), func(t *testing.T) {
			p, err := Write(spec, Options{BinDir: bins, CAFile: ca, Version: testVersion}, out)
			if err != nil {
				t.Fatal(err)
			}
			tag, err := name.NewTag(spec.Name + ":" + testVersion)
			if err != nil {
				t.Fatal(err)
			}
			img := loadLayout(t, p, tag.String())
			// The same tarball read the Docker way (manifest.json).
			dimg, err := tarball.ImageFromPath(p, &tag)
			if err != nil {
				t.Fatalf("load %s as a Docker archive: %v", p, err)
			}
			checkTarballManifest(t, p, tag.String())
			c1, err1 := img.ConfigName()
			c2, err2 := dimg.ConfigName()
			if err1 != nil || err2 != nil || c1 != c2 {
				t.Errorf("OCI and Docker views differ: config %v %v, %v %v", c1, err1, c2, err2)
			}
			checkImage(t, spec, img, bins)
		})
	}
}

// loadLayout unpacks the tarball and reads it as an OCI image layout: one
// image, annotated with its tag.
func loadLayout(t *testing.T, p, tag string) v1.Image {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, filepath.FromSlash(h.Name))
		if !strings.HasPrefix(dst, dir+string(filepath.Separator)) {
			t.Fatalf("tarball entry %q escapes", h.Name)
		}
		if h.Typeflag == tar.TypeDir {
			os.MkdirAll(dst, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(dst), 0o755)
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"oci-layout", "index.json", "manifest.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("no %s in the tarball", f)
		}
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read the OCI layout: %v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index has %d manifests", len(im.Manifests))
	}
	d := im.Manifests[0]
	if d.Annotations["org.opencontainers.image.ref.name"] != tag || d.Annotations["io.containerd.image.name"] != tag {
		t.Errorf("index annotations %v, want the tag %s", d.Annotations, tag)
	}
	if d.Platform == nil || d.Platform.OS != "linux" {
		t.Errorf("index platform %+v", d.Platform)
	}
	img, err := idx.Image(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("image does not validate (digests, sizes, diff ids): %v", err)
	}
	return img
}

func checkTarballManifest(t *testing.T, p, tag string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json in %s: %v", p, err)
		}
		if h.Name != "manifest.json" {
			continue
		}
		var m []struct{ RepoTags []string }
		if err := json.NewDecoder(tr).Decode(&m); err != nil {
			t.Fatal(err)
		}
		if len(m) != 1 || !slices.Equal(m[0].RepoTags, []string{tag}) {
			t.Fatalf("manifest.json %+v, want tag %s", m, tag)
		}
		return
	}
}

func checkImage(t *testing.T, spec Spec, img v1.Image, bins string) {
	t.Helper()
	mt, err := img.MediaType()
	if err != nil || mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s %v", mt, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
	}
	if !slices.Equal(c.Entrypoint, spec.Entrypoint) || len(c.Cmd) != 0 {
		t.Errorf("entrypoint %v cmd %v, want %v", c.Entrypoint, c.Cmd, spec.Entrypoint)
	}
	if c.User != spec.User {
		t.Errorf("user %q, want %q", c.User, spec.User)
	}
	if spec.Name != "ghcr.io/s3gfs/s3gfs-csi-node" && c.User != NonRoot {
		t.Errorf("%s runs as %q; only the node image needs root", spec.Name, c.User)
	}
	if c.Labels["org.opencontainers.image.version"] != testVersion {
		t.Errorf("labels %v", c.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}

	// The files, as a container runtime unpacks them.
	files := map[string]*tar.Header{}
	content := map[string][]byte{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		files[p] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			content[p] = b
		}
	}
	for _, want := range []string{"/etc/passwd", "/etc/group", "/etc/ssl/certs/ca-certificates.crt", "/tmp", BinDir} {
		if files[want] == nil {
			t.Errorf("no %s in the image", want)
		}
	}
	if h := files["/tmp"]; h != nil && (h.Typeflag != tar.TypeDir || h.Mode&0o1777 != 0o1777) {
		t.Errorf("/tmp mode %o", h.Mode)
	}
	uid := strings.Split(c.User, ":")[0]
	if !regexp.MustCompile(`(?m)^[a-z]+:x:` + uid + `:`).Match(content["/etc/passwd"]) {
		t.Errorf("user %s not in /etc/passwd:\n%s", uid, content["/etc/passwd"])
	}
	var inImage []string
	for p, h := range files {
		if strings.HasPrefix(p, BinDir+"/") {
			inImage = append(inImage, filepath.Base(p))
			if h.Mode&0o755 != 0o755 || h.Uid != 0 {
				t.Errorf("%s: mode %o uid %d", p, h.Mode, h.Uid)
			}
		}
	}
	slices.Sort(inImage)
	want := slices.Clone(spec.Binaries)
	slices.Sort(want)
	if !slices.Equal(inImage, want) {
		t.Errorf("binaries %v, want %v", inImage, want)
	}
	if files[spec.Entrypoint[0]] == nil {
		t.Errorf("entrypoint %s is not in the image", spec.Entrypoint[0])
	}

	// Each binary, taken out of the image, is static, runs and reports the
	// version it was built with.
	dir := t.TempDir()
	for _, b := range spec.Binaries {
		p := filepath.Join(dir, b)
		if err := os.WriteFile(p, content[BinDir+"/"+b], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := CheckStatic(p); err != nil {
			t.Error(err)
		}
		arg := "--version"
		if b == "s3gfs" {
			arg = "version"
		}
		out, err := exec.Command(p, arg).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(testVersion)) {
			t.Errorf("%s %s: %v %q", b, arg, err, out)
		}
	}
}

// TestReproducible: the same binaries give the same image digest.
func TestReproducible(t *testing.T) {
	bins := buildBinaries(t)
	spec := Images[2]
	var digests []v1.Hash
	for range 2 {
		img, err := Build(spec, Options{BinDir: bins, Version: "x"})
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Fatalf("digests %v", digests)
	}
}

// TestRefusesDynamicBinaries: an empty base has no libc.
func TestRefusesDynamicBinaries(t *testing.T) {
	for _, p := range []string{"/bin/ls", "/usr/bin/env"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		if err := CheckStatic(p); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Errorf("CheckStatic(%s) = %v", p, err)
		}
		return
	}
	t.Skip("no dynamically linked binary on this machine")
}

// TestDockerfilesMatch: build/images/*.Dockerfile give the same entrypoint,
// user and binaries as the offline builder.
func TestDockerfilesMatch(t *testing.T) {
	for _, spec := range Images {
		b, err := os.ReadFile(filepath.Join("../images", spec.Dockerfile))
		if err != nil {
			t.Fatal(err)
		}
		df := string(b)
		final := df[strings.LastIndex(df, "\nFROM "):]
		ep, _ := json.Marshal(spec.Entrypoint)
		if !strings.Contains(final, "\nENTRYPOINT "+string(ep)+"\n") {
			t.Errorf("%s: ENTRYPOINT is not %s", spec.Dockerfile, ep)
		}
		if !strings.Contains(final, "\nUSER "+spec.User+"\n") {
			t.Errorf("%s: USER is not %s", spec.Dockerfile, spec.User)
		}
		for _, bin := range spec.Binaries {
			if !strings.Contains(final, "/out/"+bin) || !strings.Contains(df, "-o /out/"+bin+" "+Sources[bin]) {
				t.Errorf("%s: does not build and copy %s from %s", spec.Dockerfile, bin, Sources[bin])
			}
		}
		if !strings.Contains(df, "CGO_ENABLED=0") {
			t.Errorf("%s: binaries not static", spec.Dockerfile)
		}
	}
}

// TestChartDefaults: the chart's default image repositories are these.
func TestChartDefaults(t *testing.T) {
	b, err := os.ReadFile("../../charts/s3gfs/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Images map[string]struct{ Repository string } `json:"images"`
	}
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for key, i := range map[string]int{"controller": 0, "node": 1, "reaper": 2} {
		if got := v.Images[key].Repository; got != Images[i].Name {
			t.Errorf("chart images.%s.repository %q, want %q", key, got, Images[i].Name)
		}
	}
}

// TestExtraFiles: an image of other static executables (Spec.Files, as the
// e2e test's pause and sidecar images) has each at its destination,
// executable and byte for byte; a relative or unclean destination and a
// dynamic executable are refused.
func TestExtraFiles(t *testing.T) {
	bins := buildBinaries(t)
	src := filepath.Join(bins, "s3gfs")
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{Name: "example.com/extra", Files: []File{{Src: src, Dest: "/x"}, {Src: src, Dest: "/bin/y"}},
		Entrypoint: []string{"/x"}, User: "0:0"}
	img, err := Build(spec, Options{BinDir: bins, Version: "x"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*tar.Header{}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := "/" + strings.TrimSuffix(h.Name, "/")
		if p == "/x" || p == "/bin/y" {
			b, err := io.ReadAll(tr)
			if err != nil || !bytes.Equal(b, want) || h.Mode&0o755 != 0o755 {
				t.Errorf("%s: mode %o, %d bytes (want %d), %v", p, h.Mode, len(b), len(want), err)
			}
		}
		got[p] = h
	}
	if got["/x"] == nil || got["/bin/y"] == nil || got["/bin"] == nil || got["/etc/passwd"] == nil {
		t.Errorf("files missing from the image: %v", got)
	}
	for _, bad := range []File{{Src: src, Dest: "x"}, {Src: src, Dest: "/a/../x"}} {
		if _, err := Build(Spec{Name: "example.com/bad", Files: []File{bad}, Entrypoint: []string{"/x"}}, Options{BinDir: bins}); err == nil {
			t.Errorf("destination %q accepted", bad.Dest)
		}
	}
	if _, err := os.Stat("/usr/bin/env"); err == nil {
		if _, err := Build(Spec{Name: "example.com/dyn", Files: []File{{Src: "/usr/bin/env", Dest: "/env"}}, Entrypoint: []string{"/env"}}, Options{BinDir: bins}); err == nil {
			t.Error("a dynamically linked executable accepted")
		}
	}
}
