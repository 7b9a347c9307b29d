package chart

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/s3gfs/s3gfs/build/chartrender"
)

const (
	docsPage    = "../../docs/kubernetes.md"
	examplesDir = "../../docs/examples/kubernetes"
	e2eValues   = "../e2e-k8s/values-local.yaml"
)

// TestDocsExamples: docs/kubernetes.md shows each file of
// docs/examples/kubernetes verbatim (the e2e test applies the files, so
// the page shows what was tested); the manifests decode strictly into
// their typed structs; the example values, alone and with the e2e test's
// local overrides, render.
func TestDocsExamples(t *testing.T) {
	page, err := os.ReadFile(docsPage)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.yaml"))
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	dec := decoder(t)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := "docs/examples/kubernetes/" + filepath.Base(f)
		if !strings.Contains(string(page), "`"+name+"`:\n\n```yaml\n"+string(b)+"```\n") {
			t.Errorf("docs/kubernetes.md does not show %s verbatim (a \"`%s`:\" line, a blank line, then a yaml block)", name, name)
		}
		if filepath.Base(f) == "values.yaml" {
			continue
		}
		n := 0
		for _, doc := range strings.Split(string(b), "\n---\n") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			if _, _, err := dec.Decode([]byte(doc), nil, nil); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%s: no object", name)
		}
	}
	for _, set := range [][]string{{filepath.Join(examplesDir, "values.yaml")}, {filepath.Join(examplesDir, "values.yaml"), e2eValues}} {
		vals, err := chartrender.ReadValues(set...)
		if err != nil {
			t.Fatal(err)
		}
		res, err := chartrender.Render(chartDir, vals, release, namespace)
		if err != nil {
			t.Fatalf("render with %v: %v", set, err)
		}
		kinds := map[string]bool{}
		for _, o := range res.Objects {
			kinds[o.Kind] = true
		}
		if !kinds["StorageClass"] || !kinds["VolumeSnapshotClass"] || !kinds["Secret"] {
			t.Errorf("values %v: no StorageClass, VolumeSnapshotClass or Secret rendered (%v)", set, kinds)
		}
	}
}
