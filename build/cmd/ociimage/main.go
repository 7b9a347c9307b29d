// Command ociimage builds the s3gfs container images offline from static
// binaries, as image tarballs (make images).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/s3gfs/s3gfs/build/ociimage"
)

func main() {
	bin := flag.String("bin", "bin/static", "directory of the static binaries (s3gfs, s3gfs-csi-controller, s3gfs-csi-node)")
	out := flag.String("out", "bin/images", "directory to write the image tarballs to")
	version := flag.String("version", "dev", "image tag")
	ca := flag.String("ca", "/etc/ssl/certs/ca-certificates.crt", "CA certificates to install in the images (\"\": none; S3 over https then fails)")
	arch := flag.String("arch", "", "GOARCH of the binaries (default: this machine's)")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
	for _, spec := range ociimage.Images {
		p, err := ociimage.Write(spec, ociimage.Options{BinDir: *bin, CAFile: *ca, Version: *version, Arch: *arch}, *out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ociimage:", err)
			os.Exit(1)
		}
		st, _ := os.Stat(p)
		fmt.Printf("%s:%s -> %s (%d MB)\n", spec.Name, *version, p, st.Size()>>20)
	}
}
