// Package chartrender renders the s3gfs Helm chart offline with the Helm
// SDK, as `helm template` would, for the chart's tests and for generating
// the plain manifests in deploy/.
package chartrender

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// Object is one rendered Kubernetes object.
type Object struct {
	Template string // the template it came from, e.g. "controller.yaml"
	Kind     string
	Name     string
	YAML     string // the object alone, without "# Source" comments
}

// Result is a rendered chart.
type Result struct {
	Chart   *chart.Chart
	Objects []Object // in Helm's install order
	Notes   string
}

// Load loads the chart in dir.
func Load(dir string) (*chart.Chart, error) {
	c, err := loader.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return c, nil
}

// ReadValues reads and merges values files, later files taking precedence,
// like helm's repeated -f.
func ReadValues(files ...string) (map[string]any, error) {
	vals := map[string]any{}
	for _, f := range files {
		v, err := chartutil.ReadValuesFile(f)
		if err != nil {
			return nil, fmt.Errorf("values %s: %w", f, err)
		}
		vals = chartutil.CoalesceTables(v.AsMap(), vals)
	}
	return vals, nil
}

// Render renders the chart in dir with vals as release name in namespace,
// validating vals against values.schema.json and the cluster version
// against the chart's kubeVersion, with a strict template engine (a
// reference to a value that does not exist is an error).
func Render(dir string, vals map[string]any, name, namespace string) (*Result, error) {
	c, err := Load(dir)
	if err != nil {
		return nil, err
	}
	caps := Capabilities()
	if c.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(c.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, have %s", c.Metadata.KubeVersion, caps.KubeVersion.String())
	}
	top, err := chartutil.ToRenderValues(c, vals, chartutil.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{Strict: true}.Render(c, top)
	if err != nil {
		return nil, err
	}
	res := &Result{Chart: c}
	manifests := map[string]string{}
	for f, content := range files {
		switch {
		case strings.HasSuffix(f, "NOTES.txt"):
			res.Notes = content
		case strings.HasPrefix(path.Base(f), "_"):
		default:
			manifests[f] = content
		}
	}
	hooks, sorted, err := releaseutil.SortManifests(manifests, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart has %d hooks; none expected", len(hooks))
	}
	for _, m := range sorted {
		if m.Head == nil || m.Head.Kind == "" {
			return nil, fmt.Errorf("%s: an object without a kind:\n%s", m.Name, m.Content)
		}
		name := ""
		if m.Head.Metadata != nil {
			name = m.Head.Metadata.Name
		}
		res.Objects = append(res.Objects, Object{
			Template: strings.TrimPrefix(m.Name, c.Name()+"/templates/"),
			Kind:     m.Head.Kind,
			Name:     name,
			YAML:     stripSource(m.Content),
		})
	}
	return res, nil
}

// KubeVersion is the Kubernetes version the chart is rendered for: the
// k8s.io modules this project builds against.
const KubeVersion = "v1.37.2"

// Capabilities are Helm's default capabilities (every built-in API) at
// KubeVersion. (The SDK's default version is only what its build sets.)
func Capabilities() *chartutil.Capabilities {
	c := *chartutil.DefaultCapabilities
	c.KubeVersion = chartutil.KubeVersion{Version: KubeVersion, Major: "1", Minor: "37"}
	return &c
}

// stripSource drops the "# Source: ..." line Helm puts before each object.
func stripSource(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "# Source: ") {
			continue
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n")) + "\n"
}

// ByTemplate groups the objects by the template they came from, in install
// order within each, and returns the template names sorted.
func (r *Result) ByTemplate() (map[string][]Object, []string) {
	m := map[string][]Object{}
	for _, o := range r.Objects {
		m[o.Template] = append(m[o.Template], o)
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return m, names
}
