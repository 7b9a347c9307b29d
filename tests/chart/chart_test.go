// Package chart tests the Helm chart in charts/s3gfs offline: it renders
// the chart with the Helm SDK for several values files, decodes every object
// strictly into the typed Kubernetes API structs, checks the properties the
// driver's design depends on (privileges, mounts, RBAC, pinned images,
// resources), lints it like `helm lint`, checks that the schema refuses bad
// values, and that deploy/ is what the chart renders.
package chart

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	monv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/s3gfs/s3gfs/build/chartrender"
)

const (
	chartDir  = "../../charts/s3gfs"
	deployDir = "../../deploy"
	namespace = "storage"
	release   = "s3gfs"
)

// decoder decodes YAML strictly (unknown or duplicate fields are errors)
// into the typed structs of every API the chart uses.
func decoder(t *testing.T) runtime.Decoder {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, snapv1.AddToScheme, monv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{Yaml: true, Strict: true})
}

// rendered is one values file's render, decoded.
type rendered struct {
	res  *chartrender.Result
	objs []runtime.Object
}

func render(t *testing.T, valuesFile string) rendered {
	t.Helper()
	return renderAs(t, valuesFile, release)
}

func renderAs(t *testing.T, valuesFile, release string) rendered {
	t.Helper()
	vals, err := chartrender.ReadValues(valuesFile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := chartrender.Render(chartDir, vals, release, namespace)
	if err != nil {
		t.Fatalf("render with %s: %v", valuesFile, err)
	}
	dec := decoder(t)
	r := rendered{res: res}
	for _, o := range res.Objects {
		for i, l := range strings.Split(o.YAML, "\n") {
			if strings.TrimRight(l, " \t") != l {
				t.Errorf("%s: %s %s line %d has trailing blanks (a template's whitespace): %q", valuesFile, o.Kind, o.Name, i+1, l)
			}
		}
		obj, _, err := dec.Decode([]byte(o.YAML), nil, nil)
		if err != nil {
			t.Fatalf("%s: %s %s does not decode strictly: %v\n%s", valuesFile, o.Kind, o.Name, err, o.YAML)
		}
		r.objs = append(r.objs, obj)
		checkNames(t, o.Kind, obj)
	}
	return r
}

// checkNames: names and labels the API server would accept (what the
// engine cannot see: `helm install` would fail at the server).
func checkNames(t *testing.T, kind string, obj runtime.Object) {
	t.Helper()
	m, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	var errs []string
	if kind == "Service" {
		errs = validation.IsDNS1035Label(m.GetName())
	} else {
		errs = validation.IsDNS1123Subdomain(m.GetName())
	}
	if len(errs) > 0 {
		t.Errorf("%s %q: invalid name: %v", kind, m.GetName(), errs)
	}
	labels := []map[string]string{m.GetLabels()}
	switch v := obj.(type) {
	case *appsv1.Deployment:
		labels = append(labels, v.Spec.Template.Labels)
	case *appsv1.DaemonSet:
		labels = append(labels, v.Spec.Template.Labels)
	}
	for _, ls := range labels {
		for k, v := range ls {
			if e := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(e) > 0 {
				t.Errorf("%s %q: label %s=%s: %v", kind, m.GetName(), k, v, e)
			}
		}
	}
}

// TestLongReleaseName: Helm allows release names of 53 characters; every
// name the chart derives from one must still be valid.
func TestLongReleaseName(t *testing.T) {
	long := strings.Repeat("r", 53)
	r := renderAs(t, "testdata/full.yaml", long)
	if len(r.objs) == 0 {
		t.Fatal("nothing rendered")
	}
}

func valuesFiles(t *testing.T) []string {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 4 {
		t.Fatalf("values files: %v %v", files, err)
	}
	return files
}

// TestStrictDecoderRefusesUnknownFields checks the checker: a misspelt
// field must fail to decode.
func TestStrictDecoderRefusesUnknownFields(t *testing.T) {
	dec := decoder(t)
	good := "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequired: false}\n"
	if _, _, err := dec.Decode([]byte(good), nil, nil); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{
		"apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: x}\nspec: {attachRequird: false}\n",
		"apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec: {template: {spec: {containers: [{name: c, image: i, mountPropagation: Bidirectional}]}}}\n",
		"apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata: {name: x}\ndriver: d\ndeletionPolicy: Delete\nparams: {}\n",
	} {
		if _, _, err := dec.Decode([]byte(bad), nil, nil); err == nil {
			t.Errorf("decoded without error:\n%s", bad)
		}
	}
}

func TestRenderValuesFiles(t *testing.T) {
	for _, f := range valuesFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			r := render(t, f)
			checkObjects(t, r)
			if !strings.Contains(r.res.Notes, "kubectl") {
				t.Errorf("NOTES.txt says nothing to do:\n%s", r.res.Notes)
			}
			if !strings.Contains(r.res.Notes, ".\n\nCheck that it runs") {
				t.Errorf("NOTES.txt's first lines run together:\n%s", r.res.Notes)
			}
		})
	}
}

// TestDefaults: a bare `helm install` installs the driver; the StorageClass
// waits for a bucket, and NOTES.txt says how to give one.
func TestDefaults(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := render(t, empty)
	checkObjects(t, r)
	for _, o := range r.objs {
		if _, ok := o.(*storagev1.StorageClass); ok {
			t.Error("a StorageClass without a bucket")
		}
	}
	if !strings.Contains(r.res.Notes, "--set storageClass.parameters.bucket=BUCKET") {
		t.Errorf("NOTES.txt does not ask for the bucket:\n%s", r.res.Notes)
	}
}

func TestSchemaRefusesBadValues(t *testing.T) {
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) < 8 {
		t.Fatalf("bad values files: %v", files)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml"), func(t *testing.T) {
			vals, err := chartrender.ReadValues(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = chartrender.Render(chartDir, vals, release, namespace)
			if err == nil {
				t.Fatalf("%s rendered", f)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
				t.Fatalf("%s: refused, but not by the schema: %v", f, err)
			}
		})
	}
}

// TestLint is `helm lint --strict` with each values file (and the
// defaults, whose only complaint may be the missing bucket).
func TestLint(t *testing.T) {
	kv := &chartutil.KubeVersion{Version: chartrender.KubeVersion, Major: "1", Minor: "37"}
	for _, f := range valuesFiles(t) {
		vals, err := chartrender.ReadValues(f)
		if err != nil {
			t.Fatal(err)
		}
		l := lint.AllWithKubeVersion(chartDir, vals, namespace, kv)
		for _, m := range l.Messages {
			// "icon is recommended" is the one INFO a chart without an icon gets.
			if m.Severity > support.InfoSev || !strings.Contains(m.Err.Error(), "icon is recommended") {
				t.Errorf("lint %s: %s", f, m)
			}
		}
	}
}

// TestDeployMatchesChart: deploy/ is exactly what `make deploy-manifests`
// generates from the chart now.
func TestDeployMatchesChart(t *testing.T) {
	want, err := chartrender.GenerateDeploy(chartDir, deployDir)
	if err != nil {
		t.Fatal(err)
	}
	have, _ := filepath.Glob(filepath.Join(deployDir, "*.yaml"))
	for _, f := range have {
		name := filepath.Base(f)
		if name == chartrender.DeployValues {
			continue
		}
		if _, ok := want[name]; !ok {
			t.Errorf("deploy/%s is not generated by the chart any more; run make deploy-manifests", name)
		}
	}
	for name, content := range want {
		got, err := os.ReadFile(filepath.Join(deployDir, name))
		if err != nil {
			t.Errorf("deploy/%s: %v; run make deploy-manifests", name, err)
			continue
		}
		if !bytes.Equal(got, content) {
			t.Errorf("deploy/%s differs from a fresh render of the chart; run make deploy-manifests", name)
		}
	}
	// And the plain manifests decode strictly too.
	dec := decoder(t)
	for name, content := range want {
		if name == "kustomization.yaml" {
			continue
		}
		for _, doc := range strings.Split(string(content), "\n---\n") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			if _, _, err := dec.Decode([]byte(doc), nil, nil); err != nil {
				t.Errorf("deploy/%s: %v", name, err)
			}
		}
	}
	if k := string(want["kustomization.yaml"]); !strings.Contains(k, "kind: Kustomization") || !strings.Contains(k, "- node.yaml") {
		t.Errorf("kustomization.yaml:\n%s", k)
	}

	// `kubectl apply -k deploy/` builds: kustomize (the library kubectl
	// embeds) gives the chart's objects plus the Namespace, each decoding
	// strictly.
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), deployDir)
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	vals, err := chartrender.ReadValues(filepath.Join(deployDir, chartrender.DeployValues))
	if err != nil {
		t.Fatal(err)
	}
	res, err := chartrender.Render(chartDir, vals, chartrender.DeployRelease, chartrender.DeployNamespace)
	if err != nil {
		t.Fatal(err)
	}
	if rm.Size() != len(res.Objects)+1 {
		t.Errorf("kustomize builds %d objects, the chart renders %d (+ the Namespace)", rm.Size(), len(res.Objects))
	}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := dec.Decode(y, nil, nil); err != nil {
			t.Errorf("kustomize output %s: %v", r.CurId(), err)
		}
	}
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") && l != "---" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var pinnedTag = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]*(@sha256:[a-f0-9]{64})?$`)

// checkObjects checks one render's objects against the driver's design.
func checkObjects(t *testing.T, r rendered) {
	t.Helper()
	vals := r.res.Chart.Values
	_ = vals
	seen := map[string]int{}
	var (
		controller *appsv1.Deployment
		node       *appsv1.DaemonSet
		reapers    []*appsv1.Deployment
		csiDriver  *storagev1.CSIDriver
		sc         *storagev1.StorageClass
		secretName string
		vsc        *snapv1.VolumeSnapshotClass
	)
	for i, obj := range r.objs {
		o := r.res.Objects[i]
		seen[o.Kind]++
		switch v := obj.(type) {
		case *appsv1.Deployment:
			if v.Namespace != namespace {
				t.Errorf("%s %s in namespace %q", o.Kind, v.Name, v.Namespace)
			}
			switch v.Spec.Template.Labels["app.kubernetes.io/component"] {
			case "controller":
				controller = v
			case "reaper":
				reapers = append(reapers, v)
			default:
				t.Errorf("Deployment %s of no known component", v.Name)
			}
			checkSelector(t, v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
		case *appsv1.DaemonSet:
			node = v
			checkSelector(t, v.Name, v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
		case *storagev1.CSIDriver:
			csiDriver = v
		case *storagev1.StorageClass:
			sc = v
		case *snapv1.VolumeSnapshotClass:
			vsc = v
		case *corev1.Secret:
			secretName = v.Name
			if v.Type != corev1.SecretTypeOpaque || v.StringData["accessKeyID"] == "" || v.StringData["secretAccessKey"] == "" {
				t.Errorf("Secret %s: %+v", v.Name, v.StringData)
			}
		case *rbacv1.ClusterRole:
			checkRules(t, "ClusterRole "+v.Name, v.Rules, true)
		case *rbacv1.Role:
			checkRules(t, "Role "+v.Name, v.Rules, false)
		case *corev1.ServiceAccount, *rbacv1.ClusterRoleBinding, *rbacv1.RoleBinding, *corev1.Service, *monv1.ServiceMonitor:
		default:
			t.Errorf("unexpected object %T %s", obj, o.Name)
		}
	}
	for _, k := range []string{"CSIDriver", "Deployment", "DaemonSet", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service"} {
		if seen[k] == 0 {
			t.Errorf("no %s rendered", k)
		}
	}
	if csiDriver == nil || controller == nil || node == nil {
		t.Fatal("missing CSIDriver, controller or node")
	}

	// CSIDriver.
	if csiDriver.Spec.AttachRequired == nil || *csiDriver.Spec.AttachRequired {
		t.Error("CSIDriver: attachRequired must be false (no ControllerPublish)")
	}
	if csiDriver.Spec.PodInfoOnMount == nil || *csiDriver.Spec.PodInfoOnMount {
		t.Error("CSIDriver: podInfoOnMount must be false")
	}
	if csiDriver.Spec.FSGroupPolicy == nil {
		t.Error("CSIDriver: fsGroupPolicy unset")
	}

	// Every container of every workload: pinned image, resources.
	for _, w := range append([]struct {
		name string
		spec corev1.PodSpec
	}{{controller.Name, controller.Spec.Template.Spec}, {node.Name, node.Spec.Template.Spec}}, reaperSpecs(reapers)...) {
		for _, c := range w.spec.Containers {
			if !pinnedTag.MatchString(c.Image) || strings.HasSuffix(c.Image, ":latest") {
				t.Errorf("%s/%s: image %q not pinned by tag", w.name, c.Name, c.Image)
			}
			if c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("%s/%s: resources %+v: want cpu and memory requests and a memory limit", w.name, c.Name, c.Resources)
			}
		}
	}

	// What the API server and the kubelet would refuse or fail on.
	checkPodSpec(t, controller.Name, controller.Spec.Template.Spec)
	checkPodSpec(t, node.Name, node.Spec.Template.Spec)
	for _, d := range reapers {
		checkPodSpec(t, d.Name, d.Spec.Template.Spec)
	}
	checkServices(t, r)
	for _, o := range r.objs {
		for _, ref := range secretRefs(o) {
			if ref != secretName && secretName != "" {
				t.Errorf("a reference to Secret %q; the chart's is %q", ref, secretName)
			}
		}
	}

	// Controller: no privileges anywhere, non-root, the CSI socket shared.
	cs := controller.Spec.Template.Spec
	checkUnprivilegedPod(t, controller.Name, cs)
	names := containerNames(cs)
	checkLiveness(t, "controller", cs, "s3gfs-controller")
	for _, want := range []string{"s3gfs-controller", "csi-provisioner"} {
		if !slices.Contains(names, want) {
			t.Errorf("controller: no %s container (%v)", want, names)
		}
	}
	for _, c := range cs.Containers {
		if !hasMount(c, "socket-dir", "/csi", "") {
			t.Errorf("controller/%s: no /csi socket-dir mount", c.Name)
		}
		if strings.HasPrefix(c.Name, "csi-") && (!slices.Contains(c.Args, "--leader-election") || !slices.Contains(c.Args, "--csi-address=/csi/csi.sock")) {
			t.Errorf("controller/%s: args %v", c.Name, c.Args)
		}
	}
	if *controller.Spec.Replicas > 1 && !slices.Contains(names, "csi-provisioner") {
		t.Error("controller replicas without a leader-electing provisioner")
	}

	// Node: the plugin (and the container mounter) privileged with
	// Bidirectional propagation of the kubelet dir; /dev/fuse where mount
	// processes start; no token. The host mounter needs the node's pids,
	// network and cgroups; the container mounter a socket shared with the
	// plugin.
	ns := node.Spec.Template.Spec
	if ns.AutomountServiceAccountToken == nil || *ns.AutomountServiceAccountToken {
		t.Error("node: service account token mounted; the node pod needs no API access")
	}
	kubeletDir := ""
	for _, v := range ns.Volumes {
		if v.Name == "kubelet-dir" && v.HostPath != nil {
			kubeletDir = v.HostPath.Path
		}
	}
	if kubeletDir == "" || strings.HasSuffix(kubeletDir, "/") {
		t.Fatalf("node: kubelet-dir hostPath %q", kubeletDir)
	}
	var plugin, mounter *corev1.Container
	for i := range ns.Containers {
		c := &ns.Containers[i]
		switch c.Name {
		case "s3gfs-node":
			plugin = c
		case "s3gfs-mounter":
			mounter = c
		default:
			if sc := c.SecurityContext; sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("node/%s: a sidecar with privileges: %+v", c.Name, sc)
			}
		}
	}
	if plugin == nil {
		t.Fatalf("node containers %v: want s3gfs-node", containerNames(ns))
	}
	hostMounter := slices.Contains(plugin.Args, "--mounter=host")
	fuseUser := mounter
	if hostMounter {
		fuseUser = plugin
		if mounter != nil {
			t.Error("node: a mounter container beside the host mounter")
		}
		if !ns.HostPID || !ns.HostNetwork || ns.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
			t.Errorf("node: the host mounter needs hostPID %v, hostNetwork %v (dnsPolicy %q)", ns.HostPID, ns.HostNetwork, ns.DNSPolicy)
		}
		if !hasMount(*plugin, "host-cgroup", "/host/sys/fs/cgroup", "") || hostPathOf(ns, "host-cgroup") != "/sys/fs/cgroup" ||
			!slices.Contains(plugin.Args, "--host-cgroupfs=/host/sys/fs/cgroup") {
			t.Error("node: the host mounter does not see the node's cgroups at --host-cgroupfs")
		}
	} else {
		if mounter == nil || !slices.Contains(plugin.Args, "--mounter=unix:///run/s3gfs/mounter.sock") {
			t.Fatalf("node containers %v, plugin args %v: want the host mounter or s3gfs-mounter", containerNames(ns), plugin.Args)
		}
		if ns.HostPID || ns.HostNetwork {
			t.Error("node: hostPID or hostNetwork without the host mounter")
		}
		if mounter.LivenessProbe != nil {
			t.Error("node/s3gfs-mounter: a liveness probe would restart it and end every FUSE mount of the node")
		}
		if pr := mounter.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || len(mounter.Ports) != 1 ||
			pr.HTTPGet.Port.StrVal != mounter.Ports[0].Name || !slices.Contains(mounter.Args, fmt.Sprintf("--health-addr=:%d", mounter.Ports[0].ContainerPort)) {
			t.Errorf("node/s3gfs-mounter: readiness probe %+v, ports %+v, args %v: want GET /healthz on the port of its --health-addr", mounter.ReadinessProbe, mounter.Ports, mounter.Args)
		}
		if len(mounter.Args) == 0 || mounter.Args[0] != "mounter" || !slices.Contains(mounter.Args, "--socket=/run/s3gfs/mounter.sock") {
			t.Errorf("node: mounter args %v", mounter.Args)
		}
	}
	for _, c := range []*corev1.Container{plugin, mounter} {
		if c == nil {
			continue
		}
		if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
			t.Errorf("node/%s: not privileged", c.Name)
		}
		if !hasMount(*c, "kubelet-dir", kubeletDir, corev1.MountPropagationBidirectional) {
			t.Errorf("node/%s: %s not mounted at the same path with Bidirectional propagation", c.Name, kubeletDir)
		}
		if !hasMount(*c, "state-dir", "/var/lib/s3gfs-csi", "") || hostPathOf(ns, "state-dir") != "/var/lib/s3gfs-csi" {
			t.Errorf("node/%s: the state dir is not the node's at the same path", c.Name)
		}
		if !hostMounter && !hasMount(*c, "mounter-dir", "/run/s3gfs", "") {
			t.Errorf("node/%s: the mounter socket dir is missing", c.Name)
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				t.Errorf("node/%s: credentials %s in its environment; they come with the node-stage secret", c.Name, e.Name)
			}
		}
	}
	if !hasMount(*fuseUser, "fuse-device", "/dev/fuse", "") || hostPathOf(ns, "fuse-device") != "/dev/fuse" {
		t.Errorf("node/%s: no /dev/fuse", fuseUser.Name)
	}
	checkLiveness(t, "node", ns, "s3gfs-node")
	if !slices.Contains(plugin.Args, "--node-id=$(NODE_NAME)") {
		t.Errorf("node: plugin args %v", plugin.Args)
	}
	driverName := csiDriver.Name
	regPath := kubeletDir + "/plugins/" + driverName + "/csi.sock"
	if hostPathOf(ns, "plugin-dir") != kubeletDir+"/plugins/"+driverName {
		t.Errorf("node: plugin-dir %q", hostPathOf(ns, "plugin-dir"))
	}
	if slices.Contains(containerNames(ns), "node-driver-registrar") {
		if slices.Contains(plugin.Args, "--registration-dir=/registration") {
			t.Error("node: registered twice (sidecar and plugin)")
		}
		for _, c := range ns.Containers {
			if c.Name == "node-driver-registrar" && !slices.Contains(c.Args, "--kubelet-registration-path="+regPath) {
				t.Errorf("node-driver-registrar args %v, want path %s", c.Args, regPath)
			}
		}
	} else if !slices.Contains(plugin.Args, "--registration-dir=/registration") || !slices.Contains(plugin.Args, "--kubelet-csi-endpoint="+regPath) {
		t.Errorf("node: neither a registrar sidecar nor plugin registration: %v", plugin.Args)
	}

	// Reapers: unprivileged, non-root, no token, the volume as argument.
	for _, d := range reapers {
		s := d.Spec.Template.Spec
		checkUnprivilegedPod(t, d.Name, s)
		c0 := s.Containers[0]
		if slices.Contains(c0.Args, "--lease=kubernetes") {
			// The Kubernetes Lease: a token, and a Role naming this Lease.
			if s.AutomountServiceAccountToken == nil || !*s.AutomountServiceAccountToken {
				t.Errorf("%s: --lease=kubernetes without a service account token", d.Name)
			}
			lease := ""
			for _, a := range c0.Args {
				if v, ok := strings.CutPrefix(a, "--lease-name="); ok {
					lease = v
				}
			}
			if lease == "" || !roleNames(r, s.ServiceAccountName, "leases", "update", lease) {
				t.Errorf("%s: no Role lets %s update the Lease %q", d.Name, s.ServiceAccountName, lease)
			}
		} else if !slices.Contains(c0.Args, "--volumes-from=kubernetes") && (s.AutomountServiceAccountToken == nil || *s.AutomountServiceAccountToken) {
			t.Errorf("%s: service account token mounted; with the bucket lease and a volume URL the reaper uses no Kubernetes API", d.Name)
		}
		if *d.Spec.Replicas < 2 && d.Spec.Replicas != nil {
			t.Logf("%s: %d replica(s)", d.Name, *d.Spec.Replicas)
		}
		c := s.Containers[0]
		if slices.Contains(c.Args, "--volumes-from=kubernetes") {
			// Every volume of the driver: read-only access to PVs and
			// VolumeSnapshotContents, cluster-wide; its own S3 credentials.
			if c.Args[0] != "reaper" || !slices.Contains(c.Args, "--driver-name="+driverName) || strings.HasPrefix(c.Args[len(c.Args)-1], "s3://") {
				t.Errorf("%s: args %v", d.Name, c.Args)
			}
			if s.AutomountServiceAccountToken == nil || !*s.AutomountServiceAccountToken {
				t.Errorf("%s: --volumes-from=kubernetes without a service account token", d.Name)
			}
			for _, need := range []struct{ group, resource, verb string }{
				{"", "persistentvolumes", "list"},
				{"snapshot.storage.k8s.io", "volumesnapshotcontents", "list"},
				{"snapshot.storage.k8s.io", "volumesnapshotcontents", "get"},
			} {
				if !clusterRoleAllows(r, s.ServiceAccountName, need.group, need.resource, need.verb) {
					t.Errorf("%s: no ClusterRole lets %s %s %s", d.Name, s.ServiceAccountName, need.verb, need.resource)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name != secretName {
					t.Errorf("%s: reads Secret %s", d.Name, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		} else if c.Args[0] != "reaper" || !strings.HasPrefix(c.Args[len(c.Args)-1], "s3://") {
			t.Errorf("%s: args %v", d.Name, c.Args)
		}
		// Probed through its own endpoints.
		if pr := c.LivenessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/healthz" || pr.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("%s: liveness probe %+v: want GET /healthz on metrics", d.Name, c.LivenessProbe)
		}
		if pr := c.ReadinessProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/readyz" || pr.HTTPGet.Port.StrVal != "metrics" {
			t.Errorf("%s: readiness probe %+v: want GET /readyz on metrics", d.Name, c.ReadinessProbe)
		}
	}
	if n := len(clusterReapers(reapers)); n > 1 {
		t.Errorf("%d reapers with --volumes-from=kubernetes, want at most 1", n)
	}

	// Classes name the driver and the Secret.
	if sc != nil {
		if sc.Provisioner != driverName || sc.Parameters["bucket"] == "" {
			t.Errorf("StorageClass: provisioner %q, parameters %v", sc.Provisioner, sc.Parameters)
		}
		for _, m := range sc.MountOptions {
			if m != "ro" && m != "rw" {
				t.Errorf("StorageClass mount option %q: the driver accepts ro and rw only", m)
			}
		}
		checkSecretRefs(t, "StorageClass", sc.Parameters, []string{"provisioner", "node-stage", "controller-expand"})
	}
	if vsc != nil {
		if vsc.Driver != driverName {
			t.Errorf("VolumeSnapshotClass driver %q", vsc.Driver)
		}
		checkSecretRefs(t, "VolumeSnapshotClass", vsc.Parameters, []string{"snapshotter", "snapshotter-list"})
	}
	_ = secretName
}

// clusterReapers are the reapers that find the volumes in the cluster.
func clusterReapers(ds []*appsv1.Deployment) []*appsv1.Deployment {
	var out []*appsv1.Deployment
	for _, d := range ds {
		if slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--volumes-from=kubernetes") {
			out = append(out, d)
		}
	}
	return out
}

// TestReaperModes: by default one reaper collects every volume of the
// driver, found in the cluster; with reaper.volumesFrom empty only the
// listed volumes are collected, and with the bucket lease those reapers
// get no API access at all.
func TestReaperModes(t *testing.T) {
	reapers := func(r rendered) []*appsv1.Deployment {
		var out []*appsv1.Deployment
		for _, o := range r.objs {
			if d, ok := o.(*appsv1.Deployment); ok && d.Spec.Template.Labels["app.kubernetes.io/component"] == "reaper" {
				out = append(out, d)
			}
		}
		return out
	}
	def := reapers(render(t, "testdata/minimal.yaml"))
	if len(def) != 1 || len(clusterReapers(def)) != 1 || !slices.Contains(def[0].Spec.Template.Spec.Containers[0].Args, "--lease=kubernetes") {
		t.Fatalf("default values: reapers %v, want one --volumes-from=kubernetes with the Kubernetes lease", def)
	}
	r := render(t, "testdata/existing-secret.yaml")
	listed := reapers(r)
	if len(listed) != 1 || len(clusterReapers(listed)) != 0 {
		t.Fatalf("volumesFrom empty: %d reapers, %d from the cluster; want the one listed", len(listed), len(clusterReapers(listed)))
	}
	for _, o := range r.objs {
		switch v := o.(type) {
		case *rbacv1.ClusterRole, *rbacv1.Role:
			if m, _ := meta.Accessor(v); strings.Contains(m.GetName(), "reaper") {
				t.Errorf("volumesFrom empty, bucket lease: reaper RBAC %s", m.GetName())
			}
		}
	}
}

// clusterRoleAllows reports whether a ClusterRole bound (cluster-wide) to
// the service account sa allows verb on every object of resource.
func clusterRoleAllows(r rendered, sa, group, resource, verb string) bool {
	roles := map[string]*rbacv1.ClusterRole{}
	for _, o := range r.objs {
		if v, ok := o.(*rbacv1.ClusterRole); ok {
			roles[v.Name] = v
		}
	}
	for _, o := range r.objs {
		b, ok := o.(*rbacv1.ClusterRoleBinding)
		if !ok || b.RoleRef.Kind != "ClusterRole" || roles[b.RoleRef.Name] == nil {
			continue
		}
		bound := false
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == namespace)
		}
		if !bound {
			continue
		}
		for _, rule := range roles[b.RoleRef.Name].Rules {
			if slices.Contains(rule.APIGroups, group) && slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) && len(rule.ResourceNames) == 0 {
				return true
			}
		}
	}
	return false
}

// roleNames reports whether a Role bound to the service account sa allows
// verb on the resource named name.
func roleNames(r rendered, sa, resource, verb, name string) bool {
	roles := map[string]*rbacv1.Role{}
	for _, o := range r.objs {
		if v, ok := o.(*rbacv1.Role); ok {
			roles[v.Name] = v
		}
	}
	for _, o := range r.objs {
		b, ok := o.(*rbacv1.RoleBinding)
		if !ok || b.RoleRef.Kind != "Role" || roles[b.RoleRef.Name] == nil {
			continue
		}
		bound := false
		for _, s := range b.Subjects {
			bound = bound || (s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == namespace)
		}
		if !bound {
			continue
		}
		for _, rule := range roles[b.RoleRef.Name].Rules {
			if slices.Contains(rule.Resources, resource) && slices.Contains(rule.Verbs, verb) && slices.Contains(rule.ResourceNames, name) {
				return true
			}
		}
	}
	return false
}

var ianaSvcName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$`)
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// checkPodSpec emulates the API server's validation of what the chart
// varies (mounts, ports, probes, propagation) and the kubelet's expansion of
// $(VAR) in args.
func checkPodSpec(t *testing.T, name string, s corev1.PodSpec) {
	t.Helper()
	volumes := map[string]bool{}
	for _, v := range s.Volumes {
		if volumes[v.Name] {
			t.Errorf("%s: volume %s twice", name, v.Name)
		}
		volumes[v.Name] = true
	}
	used := map[string]bool{}
	containers := map[string]bool{}
	listen := map[int32]string{}
	for _, c := range s.Containers {
		if containers[c.Name] {
			t.Errorf("%s: container %s twice", name, c.Name)
		}
		containers[c.Name] = true
		privileged := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
		paths := map[string]bool{}
		for _, m := range c.VolumeMounts {
			used[m.Name] = true
			if !volumes[m.Name] {
				t.Errorf("%s/%s: mounts volume %s, which the pod does not have", name, c.Name, m.Name)
			}
			if paths[m.MountPath] {
				t.Errorf("%s/%s: two mounts at %s", name, c.Name, m.MountPath)
			}
			paths[m.MountPath] = true
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional && !privileged {
				t.Errorf("%s/%s: Bidirectional propagation is only for privileged containers", name, c.Name)
			}
		}
		ports := map[string]bool{}
		for _, p := range c.Ports {
			if !ianaSvcName.MatchString(p.Name) {
				t.Errorf("%s/%s: port name %q is not a valid IANA service name", name, c.Name, p.Name)
			}
			if ports[p.Name] {
				t.Errorf("%s/%s: port name %s twice", name, c.Name, p.Name)
			}
			ports[p.Name] = true
			if other, ok := listen[p.ContainerPort]; ok {
				t.Errorf("%s: port %d declared by %s and %s", name, p.ContainerPort, other, c.Name)
			}
			listen[p.ContainerPort] = c.Name
		}
		if pr := c.LivenessProbe; pr != nil && pr.HTTPGet != nil && pr.HTTPGet.Port.StrVal != "" && !ports[pr.HTTPGet.Port.StrVal] {
			t.Errorf("%s/%s: liveness probe on port %q, which the container does not name", name, c.Name, pr.HTTPGet.Port.StrVal)
		}
		if pr := c.LivenessProbe; pr != nil && pr.TCPSocket != nil && pr.TCPSocket.Port.StrVal != "" && !ports[pr.TCPSocket.Port.StrVal] {
			t.Errorf("%s/%s: liveness probe on port %q, which the container does not name", name, c.Name, pr.TCPSocket.Port.StrVal)
		}
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
		}
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			for _, m := range envRef.FindAllStringSubmatch(a, -1) {
				if !env[m[1]] {
					t.Errorf("%s/%s: argument %q uses $(%s), which is not in its environment", name, c.Name, a, m[1])
				}
			}
		}
	}
	for v := range volumes {
		if !used[v] {
			t.Errorf("%s: volume %s is mounted by no container", name, v)
		}
	}
}

// checkServices: every Service selects a workload of the chart and targets
// ports its pods name; every ServiceMonitor endpoint names a Service port.
func checkServices(t *testing.T, r rendered) {
	t.Helper()
	type podt struct {
		labels map[string]string
		spec   corev1.PodSpec
	}
	var pods []podt
	var svcs []*corev1.Service
	var monitors []*monv1.ServiceMonitor
	for _, o := range r.objs {
		switch v := o.(type) {
		case *appsv1.Deployment:
			pods = append(pods, podt{v.Spec.Template.Labels, v.Spec.Template.Spec})
		case *appsv1.DaemonSet:
			pods = append(pods, podt{v.Spec.Template.Labels, v.Spec.Template.Spec})
		case *corev1.Service:
			svcs = append(svcs, v)
		case *monv1.ServiceMonitor:
			monitors = append(monitors, v)
		}
	}
	for _, svc := range svcs {
		selected := 0
		for _, p := range pods {
			match := true
			for k, v := range svc.Spec.Selector {
				match = match && p.labels[k] == v
			}
			if !match {
				continue
			}
			selected++
			for _, sp := range svc.Spec.Ports {
				found := false
				for _, c := range p.spec.Containers {
					for _, cp := range c.Ports {
						found = found || cp.Name == sp.TargetPort.StrVal
					}
				}
				if !found {
					t.Errorf("Service %s: target port %q is named by no container", svc.Name, sp.TargetPort.StrVal)
				}
			}
		}
		if selected == 0 {
			t.Errorf("Service %s selects no workload", svc.Name)
		}
	}
	for _, m := range monitors {
		found := false
		for _, svc := range svcs {
			match := len(m.Spec.Selector.MatchLabels) > 0
			for k, v := range m.Spec.Selector.MatchLabels {
				match = match && svc.Labels[k] == v
			}
			if !match {
				continue
			}
			found = true
			for _, ep := range m.Spec.Endpoints {
				named := false
				for _, sp := range svc.Spec.Ports {
					named = named || sp.Name == ep.Port
				}
				if !named {
					t.Errorf("ServiceMonitor %s: endpoint port %q not a port of Service %s", m.Name, ep.Port, svc.Name)
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no Service", m.Name)
		}
	}
}

// secretRefs are the Secrets an object names.
func secretRefs(o runtime.Object) []string {
	var refs []string
	var spec *corev1.PodSpec
	switch v := o.(type) {
	case *appsv1.Deployment:
		spec = &v.Spec.Template.Spec
	case *appsv1.DaemonSet:
		spec = &v.Spec.Template.Spec
	case *storagev1.StorageClass:
		for k, val := range v.Parameters {
			if strings.HasSuffix(k, "-secret-name") {
				refs = append(refs, val)
			}
		}
	case *snapv1.VolumeSnapshotClass:
		for k, val := range v.Parameters {
			if strings.HasSuffix(k, "-secret-name") {
				refs = append(refs, val)
			}
		}
	}
	if spec != nil {
		for _, c := range spec.Containers {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					refs = append(refs, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	return refs
}

func reaperSpecs(ds []*appsv1.Deployment) []struct {
	name string
	spec corev1.PodSpec
} {
	var out []struct {
		name string
		spec corev1.PodSpec
	}
	for _, d := range ds {
		out = append(out, struct {
			name string
			spec corev1.PodSpec
		}{d.Name, d.Spec.Template.Spec})
	}
	return out
}

// checkSecretRefs: either every secret parameter of kinds is set, with a
// namespace, or none is.
func checkSecretRefs(t *testing.T, what string, params map[string]string, kinds []string) {
	t.Helper()
	set := 0
	for _, k := range kinds {
		name := params["csi.storage.k8s.io/"+k+"-secret-name"]
		ns := params["csi.storage.k8s.io/"+k+"-secret-namespace"]
		if name != "" {
			set++
			if ns != namespace {
				t.Errorf("%s: %s secret namespace %q", what, k, ns)
			}
		}
	}
	if set != 0 && set != len(kinds) {
		t.Errorf("%s: only some secret parameters set: %v", what, params)
	}
}

func checkSelector(t *testing.T, name string, sel, labels map[string]string) {
	t.Helper()
	if len(sel) < 3 {
		t.Errorf("%s: selector %v too wide", name, sel)
	}
	for k, v := range sel {
		if labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pod labels %v", name, k, v, labels)
		}
	}
}

func checkUnprivilegedPod(t *testing.T, name string, s corev1.PodSpec) {
	t.Helper()
	if s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("%s: host namespaces", name)
	}
	if s.SecurityContext == nil || s.SecurityContext.RunAsNonRoot == nil || !*s.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: not runAsNonRoot", name)
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil {
			t.Errorf("%s: hostPath volume %s", name, v.Name)
		}
	}
	for _, c := range s.Containers {
		sc := c.SecurityContext
		if sc == nil || (sc.Privileged != nil && *sc.Privileged) || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 ||
			sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s/%s: security context %+v: want unprivileged, no escalation, all capabilities dropped, read-only root", name, c.Name, sc)
		}
	}
}

// allowed lists, per API group and resource, the verbs any s3gfs role may
// have. Anything else (a wildcard, another resource) fails.
var allowed = map[string][]string{
	"/persistentvolumes":                                    {"get", "list", "watch", "create", "patch", "delete"},
	"/persistentvolumeclaims":                               {"get", "list", "watch", "update"},
	"/events":                                               {"list", "watch", "create", "update", "patch"},
	"storage.k8s.io/storageclasses":                         {"get", "list", "watch"},
	"snapshot.storage.k8s.io/volumesnapshots":               {"get", "list", "watch", "update"},
	"snapshot.storage.k8s.io/volumesnapshotclasses":         {"get", "list", "watch"},
	"snapshot.storage.k8s.io/volumesnapshotcontents":        {"get", "list", "watch", "update", "patch"},
	"snapshot.storage.k8s.io/volumesnapshotcontents/status": {"update", "patch"},
	"coordination.k8s.io/leases":                            {"get", "watch", "list", "delete", "update", "create"},
	"/secrets":                                              {"get"},
}

func checkRules(t *testing.T, what string, rules []rbacv1.PolicyRule, clusterWide bool) {
	t.Helper()
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("%s: non-resource URLs %v", what, r.NonResourceURLs)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				key := g + "/" + res
				ok, known := allowed[key]
				if !known {
					t.Errorf("%s: access to %s", what, key)
					continue
				}
				for _, v := range r.Verbs {
					if !slices.Contains(ok, v) {
						t.Errorf("%s: verb %s on %s", what, v, key)
					}
				}
				if res == "secrets" && (clusterWide || len(r.ResourceNames) != 1) {
					t.Errorf("%s: secrets must be one named Secret in the release namespace: %+v", what, r)
				}
				if res == "leases" && clusterWide {
					t.Errorf("%s: leases cluster-wide", what)
				}
			}
		}
	}
}

func containerNames(s corev1.PodSpec) []string {
	var n []string
	for _, c := range s.Containers {
		n = append(n, c.Name)
	}
	return n
}

func hasMount(c corev1.Container, volume, path string, prop corev1.MountPropagationMode) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == volume && m.MountPath == path && (prop == "" || (m.MountPropagation != nil && *m.MountPropagation == prop)) {
			return true
		}
	}
	return false
}

func hostPathOf(s corev1.PodSpec, volume string) string {
	for _, v := range s.Volumes {
		if v.Name == volume && v.HostPath != nil {
			return v.HostPath.Path
		}
	}
	return ""
}

// TestArgsAreTheBinariesFlags runs each s3gfs binary with the arguments the
// chart gives its container, plus -h: the binaries' flag parsing refuses an
// unknown flag (exit 2) before it reaches -h (exit 0). So a flag renamed in
// cmd/ breaks this test rather than a cluster.
func TestArgsAreTheBinariesFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries: not with -short")
	}
	dir := t.TempDir()
	for bin, pkg := range map[string]string{"s3gfs": "./cmd/s3gfs", "s3gfs-csi-controller": "./cmd/controller", "s3gfs-csi-node": "./cmd/node"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, bin), pkg)
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	binary := map[string]string{
		"s3gfs-controller": "s3gfs-csi-controller",
		"s3gfs-node":       "s3gfs-csi-node",
		"s3gfs-mounter":    "s3gfs-csi-node",
		"reaper":           "s3gfs",
	}
	checked := map[string]bool{}
	for _, f := range valuesFiles(t) {
		r := render(t, f)
		for _, o := range r.objs {
			var spec *corev1.PodSpec
			switch v := o.(type) {
			case *appsv1.Deployment:
				spec = &v.Spec.Template.Spec
			case *appsv1.DaemonSet:
				spec = &v.Spec.Template.Spec
			}
			if spec == nil {
				continue
			}
			for _, c := range spec.Containers {
				bin, ours := binary[c.Name]
				if !ours {
					continue
				}
				args := make([]string, len(c.Args))
				for i, a := range c.Args {
					args[i] = envRef.ReplaceAllString(a, "x")
				}
				cmd := exec.Command(filepath.Join(dir, bin), append(args, "-h")...)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Errorf("%s: %s %s: %v\n%s", f, bin, strings.Join(args, " "), err, lastLines(string(out), 5))
				}
				checked[c.Name] = true
			}
		}
	}
	for c := range binary {
		if !checked[c] {
			t.Errorf("no values file renders container %s", c)
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// TestPackage is `helm package`: the chart archives, and the archive
// renders exactly as the directory does.
func TestPackage(t *testing.T) {
	c, err := chartrender.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tgz, err := chartutil.Save(c, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(tgz) != "s3gfs-"+c.Metadata.Version+".tgz" {
		t.Errorf("archive %s", tgz)
	}
	vals, err := chartrender.ReadValues("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fromDir, err := chartrender.Render(chartDir, vals, release, namespace)
	if err != nil {
		t.Fatal(err)
	}
	fromTgz, err := chartrender.Render(tgz, vals, release, namespace)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromDir.Objects) != len(fromTgz.Objects) {
		t.Fatalf("%d objects from the directory, %d from the archive", len(fromDir.Objects), len(fromTgz.Objects))
	}
	for i := range fromDir.Objects {
		if fromDir.Objects[i].YAML != fromTgz.Objects[i].YAML {
			t.Errorf("%s %s renders differently from the archive", fromDir.Objects[i].Kind, fromDir.Objects[i].Name)
		}
	}
	if fromTgz.Chart.Schema == nil {
		t.Error("the archive has no values.schema.json")
	}
}

// checkLiveness: the plugin container of spec is liveness-probed over HTTP
// at /healthz on its port healthz, served either by the livenessprobe
// sidecar (after a CSI Probe) or, without the sidecar (healthProbe: plugin),
// by the plugin itself (--health-addr on that port).
func checkLiveness(t *testing.T, who string, spec corev1.PodSpec, plugin string) {
	t.Helper()
	var c *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == plugin {
			c = &spec.Containers[i]
		}
	}
	if c == nil || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
		c.LivenessProbe.HTTPGet.Port.StrVal != "healthz" {
		t.Errorf("%s: the plugin %s is not liveness-probed at healthz /healthz", who, plugin)
		return
	}
	var port int32
	for _, p := range c.Ports {
		if p.Name == "healthz" {
			port = p.ContainerPort
		}
	}
	if port == 0 {
		t.Errorf("%s: no port healthz on %s", who, plugin)
	}
	self := slices.Contains(c.Args, fmt.Sprintf("--health-addr=:%d", port))
	sidecar := slices.Contains(containerNames(spec), "liveness-probe")
	if self == sidecar {
		t.Errorf("%s: /healthz served by the plugin: %v, by the livenessprobe sidecar: %v (want exactly one)", who, self, sidecar)
	}
}
