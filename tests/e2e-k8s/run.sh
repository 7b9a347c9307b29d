#!/usr/bin/env bash
# run.sh: `make e2e-k8s`. Builds (or takes from the cache) a single-node
# Kubernetes and the images, brings the cluster up inside a network
# namespace, installs s3gfs with Helm and does what a user does, then tears
# everything down (also on failure). README.md explains each step.
#
# E2E_KEEP=1 leaves the cluster running at the end (teardown later with
# `tests/e2e-k8s/run.sh teardown`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/cluster.sh"

[[ $(id -u) == 0 ]] || die "needs root (network namespace, mounts, containerd)"
if [[ ${1:-} == teardown ]]; then
	teardown
	exit 0
fi

STEP=0
step() {
	STEP=$((STEP + 1))
	printf '\n%s e2e-k8s: ==== step %d: %s\n' "$(date -u +%H:%M:%S)" "$STEP" "$*"
}

on_exit() {
	local rc=$?
	if [[ $rc != 0 ]]; then
		say "FAILED (exit $rc) at step $STEP; logs in $LOGS"
		if [[ -f $KUBECONFIG_FILE ]] && alive kube-apiserver; then
			kubectl get pods -A -o wide 2>&1 | sed 's/^/  /' || true
			kubectl get events -A --sort-by=.lastTimestamp 2>&1 | tail -n 30 | sed 's/^/  /' || true
		fi
		for f in "$LOGS"/*.log; do
			[[ -f $f ]] || continue
			echo "---- last lines of $f"
			tail -n 8 "$f"
		done
	fi
	if [[ ${E2E_KEEP:-} == 1 ]]; then
		say "E2E_KEEP=1: the cluster keeps running; KUBECONFIG=$KUBECONFIG_FILE; tests/e2e-k8s/run.sh teardown"
	else
		teardown || rc=1
		# A passing run leaves nothing; a failed one keeps its logs.
		if [[ $rc == 0 ]]; then rm -rf --one-file-system "$WORK"; fi
	fi
	exit $rc
}

install_packages() {
	local missing=() p
	for p in containerd runc containernetworking-plugins busybox-static iptables openssl curl; do
		dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
	done
	if ((${#missing[@]})); then
		say "apt-get install -y ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >/dev/null
	fi
	say "containerd $(containerd --version | awk '{print $3}'), $(runc --version | head -n1), CNI plugins in /usr/lib/cni, $(busybox | head -n1)"
}

# Images, as OCI tarballs built offline into $WORK/images: the s3gfs images
# from this checkout (make images), the CSI sidecars from the cached
# binaries, pause (tests/e2e-k8s/pause) and busybox (Debian's static one).
build_images() {
	local out="$WORK/images" ib="$CACHE/image-bin"
	mkdir -p "$out" "$ib"
	(cd "$REPO" && make -s images IMAGE_TAG=$IMAGE_TAG >/dev/null) || die "make images"
	cp "$REPO"/bin/images/*.tar "$out/"
	(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$ib/pause" ./tests/e2e-k8s/pause) || die "build pause"
	local oci=(go run ./build/cmd/ociimage -out "$out")
	(
		cd "$REPO"
		"${oci[@]}" -name registry.k8s.io/pause -version 3.10 -file "$ib/pause=/pause" -entrypoint /pause -user 65535:65535
		"${oci[@]}" -name docker.io/library/busybox -version 1.35 -file /bin/busybox=/bin/busybox -file /bin/busybox=/bin/sh \
			-entrypoint /bin/sh -user 0:0
		"${oci[@]}" -name registry.k8s.io/sig-storage/csi-provisioner -version "$PROVISIONER_VERSION" \
			-file "$BIN/csi-provisioner-$PROVISIONER_VERSION=/csi-provisioner" -entrypoint /csi-provisioner -user 65532:65532
		"${oci[@]}" -name registry.k8s.io/sig-storage/csi-snapshotter -version "$SNAPSHOTTER_VERSION" \
			-file "$BIN/csi-snapshotter-$SNAPSHOTTER_VERSION=/csi-snapshotter" -entrypoint /csi-snapshotter -user 65532:65532
		"${oci[@]}" -name registry.k8s.io/sig-storage/snapshot-controller -version "$SNAPSHOTTER_VERSION" \
			-file "$BIN/snapshot-controller-$SNAPSHOTTER_VERSION=/snapshot-controller" -entrypoint /snapshot-controller -user 65532:65532
	) | sed 's/^/  /' || die "ociimage"
}

# pexec POD CMD: a shell command in the pod's container.
pexec() {
	local pod=$1
	shift
	kubectl exec "$pod" -- sh -c "$*"
}

# wait_jsonpath KIND/NAME JSONPATH VALUE SECONDS
wait_jsonpath() {
	wait_for "$1 $2=$3" "$4" bash -c "[[ \$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' get $1 -o jsonpath='$2') == '$3' ]]"
}

expect_eq() { # WHAT GOT WANT
	if [[ $2 != "$3" ]]; then
		die "$1: got $(printf '%q' "$2"), want $(printf '%q' "$3")"
	fi
	say "ok: $1 = $(printf '%q' "$2")"
}

main() {
	mkdir -p "$CACHE"
	trap on_exit EXIT
	step "leftovers of an earlier run"
	teardown
	rm -rf --one-file-system "$WORK"
	mkdir -p "$WORK" "$LOGS"

	step "packages from Debian: containerd, runc, CNI plugins, busybox-static"
	install_packages

	step "binaries from the Go module proxy (cached in $BIN)"
	"$E2E_DIR/build-bins.sh"

	step "images, built offline as OCI tarballs"
	build_images

	step "cluster: netns, etcd, kube-apiserver, controller-manager, scheduler, containerd, kubelet"
	cluster_up

	step "snapshot CRDs and the snapshot-controller (once per cluster)"
	local snap="$CACHE/snapshot-$SNAPSHOTTER_VERSION"
	kubectl apply -f "$snap/crd/" | sed 's/^/  /'
	kubectl apply -f "$snap/controller/rbac-snapshot-controller.yaml" | sed 's/^/  /'
	sed -E "s#(registry.k8s.io/sig-storage/snapshot-controller):v[0-9.]+#\1:$SNAPSHOTTER_VERSION#" \
		"$snap/controller/setup-snapshot-controller.yaml" | kubectl apply -f - | sed 's/^/  /'

	step "helm install s3gfs charts/s3gfs"
	local values=(-f "$REPO/docs/examples/kubernetes/values.yaml" -f "$E2E_DIR/values-local.yaml")
	helm install s3gfs "$REPO/charts/s3gfs" -n s3gfs --create-namespace "${values[@]}" --wait --timeout 5m | sed 's/^/  /'
	kubectl -n s3gfs get pods -o wide | sed 's/^/  /'
	wait_jsonpath "csinode/$NODE_NAME" '{.spec.drivers[0].name}' csi.s3gfs.io 120
	say "the kubelet registered the driver: $(kubectl get csinode "$NODE_NAME" -o jsonpath='{.spec.drivers[*].name}')"

	step "a ReadWriteMany PVC and two pods on it"
	kubectl apply -f "$REPO/docs/examples/kubernetes/pvc.yaml" | sed 's/^/  /'
	wait_jsonpath pvc/shared '{.status.phase}' Bound 180
	kubectl apply -f "$REPO/docs/examples/kubernetes/pods.yaml" | sed 's/^/  /'
	kubectl wait --for=condition=Ready pod/app-a pod/app-b --timeout=300s | sed 's/^/  /'
	wait_for "app-a sees app-b's file" 60 kubectl exec app-a -- sh -c 'test -s /data/app-b.txt'
	wait_for "app-b sees app-a's file" 60 kubectl exec app-b -- sh -c 'test -s /data/app-a.txt'
	expect_eq "app-a reads /data/app-b.txt" "$(pexec app-a cat /data/app-b.txt)" "written by app-b"
	expect_eq "app-b reads /data/app-a.txt" "$(pexec app-b cat /data/app-a.txt)" "written by app-a"
	expect_eq "the volume's files" "$(pexec app-a ls /data | tr '\n' ' ')" "app-a.txt app-b.txt "

	step "a VolumeSnapshot, then a change after it"
	kubectl apply -f "$REPO/docs/examples/kubernetes/snapshot.yaml" | sed 's/^/  /'
	wait_jsonpath volumesnapshot/shared-snap '{.status.readyToUse}' true 180
	pexec app-a 'echo "after the snapshot" > /data/after.txt && echo "changed after the snapshot" > /data/app-b.txt'
	expect_eq "app-b sees the change" "$(pexec app-b cat /data/app-b.txt)" "changed after the snapshot"

	step "a PVC restored from the snapshot, mounted by a third pod"
	kubectl apply -f "$REPO/docs/examples/kubernetes/restore.yaml" | sed 's/^/  /'
	wait_jsonpath pvc/restored '{.status.phase}' Bound 300
	kubectl wait --for=condition=Ready pod/app-c --timeout=300s | sed 's/^/  /'
	expect_eq "the restored volume's files" "$(pexec app-c ls /data | tr '\n' ' ')" "app-a.txt app-b.txt "
	expect_eq "restored app-a.txt" "$(pexec app-c cat /data/app-a.txt)" "written by app-a"
	expect_eq "restored app-b.txt (as at the snapshot)" "$(pexec app-c cat /data/app-b.txt)" "written by app-b"

	step "the reaper: helm upgrade (interval 10s); two replicas, one holds the Lease and collects both volumes"
	reaper_lease

	step "the node plugin restarts while app-a keeps using its volume"
	node_plugin_restart

	step "the node pod deleted and recreated (the DaemonSet)"
	node_pod_recreate

	step "uninstall: PVCs and snapshot deleted, helm uninstall, nothing left"
	uninstall_clean

	say "PASS"
}

# The chart's reaper (reaper.volumesFrom: kubernetes) finds the driver's
# volumes from the PVs and VolumeSnapshotContents; two replicas elect one
# through a Lease. An upgrade shortens its interval so that a pass sees the
# volumes made since the install.
reaper_lease() {
	helm upgrade s3gfs "$REPO/charts/s3gfs" -n s3gfs --reuse-values --set reaper.interval=10s --wait --timeout 5m | sed 's/^/  /'
	kubectl -n s3gfs rollout status deploy/s3gfs-reaper --timeout=180s | sed 's/^/  /'
	local sel=app.kubernetes.io/component=reaper pods
	wait_for "exactly the new reaper pods" 120 bash -c "[[ \$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' -n s3gfs get pods -l $sel -o name | wc -l) == 2 ]]"
	kubectl -n s3gfs wait --for=condition=Ready pod -l $sel --timeout=180s | sed 's/^/  /'
	pods=$(kubectl -n s3gfs get pods -l $sel -o jsonpath='{.items[*].metadata.name}')
	expect_eq "reaper replicas" "$(wc -w <<<"$pods" | tr -d ' ')" 2
	local lease=lease/s3gfs-reaper
	wait_for "$lease held by a running replica" 120 bash -c "h=\$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' -n s3gfs get $lease -o jsonpath='{.spec.holderIdentity}'); [[ -n \$h && ' $pods ' == *\" \$h \"* ]]"
	local holder
	holder=$(kubectl -n s3gfs get "$lease" -o jsonpath='{.spec.holderIdentity}')
	say "$lease held by $holder"
	# Each replica's own view: s3gfs_reaper_lease_held is 1 in exactly one,
	# the Lease's holder.
	local p ip v held=0 holders=""
	for p in $pods; do
		ip=$(kubectl -n s3gfs get pod "$p" -o jsonpath='{.status.podIP}')
		v=$(in_node curl -sf "http://$ip:9811/metrics" | awk '/^s3gfs_reaper_lease_held /{print $2}')
		say "  $p: s3gfs_reaper_lease_held $v"
		if [[ $v == 1 ]]; then
			held=$((held + 1))
			holders=$p
		fi
	done
	expect_eq "replicas holding the lease" "$held" 1
	expect_eq "the replica that holds it" "$holders" "$holder"
	# The holder found both volumes (shared, restored) and collected them.
	wait_for "a pass over both volumes" 120 bash -c "'$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' -n s3gfs logs $holder | grep -q 'reaper pass over the cluster.s volumes.* volumes=2 collected=2 failed=0'"
	say "ok: $(kubectl -n s3gfs logs "$holder" | grep "reaper pass over the cluster.s volumes" | tail -n1)"
}

# The node plugin container (not the mounter) is killed; the kubelet
# restarts it; app-a's reads and writes work throughout.
node_plugin_restart() {
	local pod before pid
	pod=$(kubectl -n s3gfs get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[0].metadata.name}')
	before=$(kubectl -n s3gfs get pod "$pod" -o jsonpath='{.status.containerStatuses[?(@.name=="s3gfs-node")].restartCount}')
	# The plugin process of this cluster's node pod: its command line, in
	# the node's network namespace (hostNetwork).
	local netns p
	netns=$(stat -L -c %i "/run/netns/$NETNS")
	pid=""
	for p in $(pgrep -f -x '/usr/local/bin/s3gfs-csi-node --endpoint=unix:///csi/csi.sock.*'); do
		[[ $(stat -L -c %i "/proc/$p/ns/net" 2>/dev/null) == "$netns" ]] && pid=$p
	done
	[[ -n $pid ]] || die "no s3gfs-csi-node plugin process in the node's network namespace"
	say "SIGKILL the node plugin process $pid (pod $pod, restarts so far $before)"
	kill -KILL "$pid"
	pexec app-a 'echo during-restart >> /data/app-a.log'
	wait_jsonpath "-n s3gfs pod/$pod" '{.status.containerStatuses[?(@.name=="s3gfs-node")].restartCount}' $((before + 1)) 180
	wait_for "node pod Ready again" 180 kubectl -n s3gfs wait --for=condition=Ready "pod/$pod" --timeout=5s
	pexec app-a 'echo after-restart >> /data/app-a.log'
	expect_eq "app-a's log across the plugin restart" "$(pexec app-a cat /data/app-a.log | tr '\n' ' ')" "during-restart after-restart "
	expect_eq "app-b reads it too" "$(pexec app-b cat /data/app-a.log | tr '\n' ' ')" "during-restart after-restart "
}

# Deleting the node pod: with the chart's default host mounter the node's
# `s3gfs mount` processes run outside the pod (docs/csi.md), so app-a's
# volume keeps serving while the DaemonSet replaces the pod, and the new
# plugin takes the mounts over (it unstages them at the end).
node_pod_recreate() {
	local pod
	pod=$(kubectl -n s3gfs get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[0].metadata.name}')
	pexec app-a 'echo before-delete >> /data/app-a.log'
	say "kubectl delete pod $pod"
	kubectl -n s3gfs delete pod "$pod" --wait=true --timeout=180s | sed 's/^/  /'
	pexec app-a 'echo while-replaced >> /data/app-a.log'
	wait_for "a new node pod Ready" 180 bash -c "'$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' -n s3gfs get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[*].status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
	say "new node pod: $(kubectl -n s3gfs get pods -l app.kubernetes.io/component=node -o jsonpath='{.items[*].metadata.name}')"
	pexec app-a 'echo after-recreate >> /data/app-a.log'
	local want="during-restart after-restart before-delete while-replaced after-recreate "
	expect_eq "app-a's log across the node pod's replacement" "$(pexec app-a cat /data/app-a.log | tr '\n' ' ')" "$want"
	expect_eq "app-b reads the same" "$(pexec app-b cat /data/app-a.log | tr '\n' ' ')" "$want"
}

uninstall_clean() {
	kubectl delete pod app-a app-b app-c --wait=true --timeout=180s | sed 's/^/  /'
	kubectl delete pvc restored --wait=true --timeout=180s | sed 's/^/  /'
	kubectl delete volumesnapshot shared-snap --wait=true --timeout=180s | sed 's/^/  /'
	kubectl delete pvc shared --wait=true --timeout=180s | sed 's/^/  /'
	wait_for "every PV deleted" 180 bash -c "[[ -z \$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' get pv -o name) ]]"
	wait_for "every VolumeSnapshotContent deleted" 180 bash -c "[[ -z \$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' get volumesnapshotcontents -o name) ]]"
	# Unstaged everywhere: no s3gfs FUSE mount under the kubelet's root and
	# no `s3gfs mount` process of this cluster (the host mounter's run
	# outside the pods) is left.
	wait_for "every s3gfs mount process of the node stopped" 120 bash -c "! pgrep -f '[s]3gfs mount .*$KUBELET_DIR/'"
	if grep -q " $KUBELET_DIR/.* fuse.s3gfs " /proc/self/mountinfo; then
		die "s3gfs mounts left under $KUBELET_DIR: $(grep " $KUBELET_DIR/.* fuse.s3gfs " /proc/self/mountinfo)"
	fi
	say "ok: no s3gfs mount or mount process left on the node"
	helm uninstall s3gfs -n s3gfs --wait --timeout 5m | sed 's/^/  /'
	wait_for "no s3gfs pods" 180 bash -c "[[ -z \$('$BIN/kubectl-$K8S_VERSION' --kubeconfig '$KUBECONFIG_FILE' -n s3gfs get pods -o name) ]]"
	# What helm uninstall leaves in the namespace: only the Leases the
	# running processes took (the CSI sidecars' leader election and the
	# reaper's; released, never deleted; not the chart's objects). Deleting
	# the namespace, as docs/kubernetes.md says, removes them.
	local left
	left=$(kubectl get all,secrets,configmaps,serviceaccounts,roles,rolebindings,leases -n s3gfs -o name 2>/dev/null |
		grep -v -e '^configmap/kube-root-ca.crt$' -e '^serviceaccount/default$' || true)
	say "left in namespace s3gfs after helm uninstall: $(tr '\n' ' ' <<<"$left")"
	local o
	for o in $left; do
		[[ $o == lease.coordination.k8s.io/* ]] || die "helm uninstall left $o in namespace s3gfs"
	done
	kubectl delete namespace s3gfs --wait=true --timeout=180s | sed 's/^/  /'
	left=$(kubectl get csidrivers,storageclasses,volumesnapshotclasses,clusterroles,clusterrolebindings -o name | grep s3gfs || true)
	left+=$(kubectl get pv,volumeattachments,volumesnapshotcontents -o name)
	[[ -z $left ]] || die "left in the cluster after helm uninstall: $left"
	say "ok: no s3gfs object, PV, VolumeAttachment or VolumeSnapshotContent left in the cluster"
	# The bucket: versitygw's posix backend keeps each object as a file.
	local objects
	objects=$(cd "$WORK/s3/$BUCKET" && find . -type f ! -path './.sgwtmp/*' | sort)
	if [[ -n $objects ]]; then
		sed 's/^/  /' <<<"$objects"
		die "$(grep -c . <<<"$objects") objects left in s3://$BUCKET after every volume and snapshot was deleted"
	fi
	say "ok: the bucket is empty"
}

main "$@"
