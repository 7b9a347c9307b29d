// Command ociimage builds the s3gfs container images offline from static
// binaries, as image tarballs (make images). With -name it builds one other
// image from static executables instead (the e2e test's pause, busybox and
// CSI sidecar images): -file SRC=DEST (repeatable) and -entrypoint.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/s3gfs/s3gfs/build/ociimage"
)

type files []ociimage.File

func (f *files) String() string { return fmt.Sprint(*f) }
func (f *files) Set(v string) error {
	src, dest, ok := strings.Cut(v, "=")
	if !ok || src == "" || dest == "" {
		return fmt.Errorf("want SRC=DEST, got %q", v)
	}
	*f = append(*f, ociimage.File{Src: src, Dest: dest})
	return nil
}

func main() {
	bin := flag.String("bin", "bin/static", "directory of the static binaries (s3gfs, s3gfs-csi-controller, s3gfs-csi-node)")
	out := flag.String("out", "bin/images", "directory to write the image tarballs to")
	version := flag.String("version", "dev", "image tag")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to install in the images (\"\": none; S3 over https then fails)")
	arch := flag.String("arch", "", "GOARCH of the binaries (default: this machine's)")
	imgName := flag.String("name", "", "build only this image (repository, e.g. registry.k8s.io/pause) from -file executables")
	var extra files
	flag.Var(&extra, "file", "with -name: a static executable SRC=DEST to put in the image (repeatable)")
	entry := flag.String("entrypoint", "", "with -name: the entrypoint, comma-separated")
	user := flag.String("user", "0:0", "with -name: the uid:gid the image runs as")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	specs := ociimage.Images
	if *imgName != "" {
		if len(extra) == 0 || *entry == "" {
			fmt.Fprintln(os.Stderr, "ociimage: -name needs -file and -entrypoint")
			os.Exit(2)
		}
		specs = []ociimage.Spec{{Name: *imgName, Files: extra, Entrypoint: strings.Split(*entry, ","), User: *user, Title: *imgName}}
	}
	for _, spec := range specs {
		p, err := ociimage.Write(spec, ociimage.Options{BinDir: *bin, CAFile: *ca, Version: *version, Arch: *arch}, *out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ociimage:", err)
			os.Exit(1)
		}
		st, _ := os.Stat(p)
		fmt.Printf("%s:%s -> %s (%d MB)\n", spec.Name, *version, p, st.Size()>>20)
	}
}
