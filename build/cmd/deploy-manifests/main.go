// Command deploy-manifests regenerates the plain manifests in deploy/ from
// the Helm chart (make deploy-manifests).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/s3gfs/s3gfs/build/chartrender"
)

func main() {
	chart := flag.String("chart", "charts/s3gfs", "the chart directory")
	out := flag.String("deploy", "deploy", "the deploy directory (holds "+chartrender.DeployValues+", the values it is rendered with)")
	flag.Parse()
	if err := chartrender.WriteDeploy(*chart, *out); err != nil {
		fmt.Fprintln(os.Stderr, "deploy-manifests:", err)
		os.Exit(1)
	}
	fmt.Printf("deploy-manifests: %s regenerated from %s\n", *out, *chart)
}
