# lib.sh: the e2e cluster's constants and its start and teardown, sourced by
# run.sh (and usable by hand: `source tests/e2e-k8s/lib.sh; teardown`).
# Everything the cluster creates is named here, so that teardown removes
# exactly that and nothing else.

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_DIR="$REPO/tests/e2e-k8s"
source "$E2E_DIR/versions.sh"

CACHE="${E2E_CACHE:-$HOME/.cache/s3gfs-e2e}"
BIN="$CACHE/bin"
# Runtime state of one run (wiped at the start of the next run, kept after a
# failed run for its logs): etcd, containerd's root, the kubelet's root,
# the S3 server's files, the logs.
WORK="${E2E_WORK:-/var/lib/s3gfs-e2e}"
LOGS="$WORK/logs"
PIDS="$WORK/pids"
RUN=/run/s3gfs-e2e

NETNS=s3gfs-e2e             # the node's network namespace
VETH_HOST=s3gfs-e2e-h       # host end of the veth pair
VETH_NODE=s3gfs-e2e-n       # node end, inside $NETNS
HOST_IP=10.203.0.1          # the S3 server listens here (host end)
NODE_IP=10.203.0.2          # the node's (and the API server's) address
PREFIX_LEN=30
POD_CIDR=10.204.0.0/24
SERVICE_CIDR=10.96.0.0/24
API_SERVICE_IP=10.96.0.1    # the kubernetes Service's ClusterIP
S3_PORT=7070
S3_ENDPOINT="http://$HOST_IP:$S3_PORT"
S3_ACCESS=s3gfs-e2e-access
S3_SECRET=s3gfs-e2e-secret-key
BUCKET=s3gfs-e2e
NODE_NAME=s3gfs-e2e-node
KUBELET_DIR="$WORK/kubelet"
CONTAINERD_SOCK="$RUN/containerd.sock"
KUBECONFIG_FILE="$WORK/pki/admin.kubeconfig"
IMAGE_TAG=e2e
VERSITYGW="${S3GFS_TOOLS:-$HOME/.cache/s3gfs-tools}/bin/versitygw-v1.8.0"

kubectl() { "$BIN/kubectl-$K8S_VERSION" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
helm() {
	HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" HELM_DATA_HOME="$WORK/helm/data" \
		KUBECONFIG="$KUBECONFIG_FILE" "$BIN/helm-$HELM_VERSION" "$@"
}
ctr_() { ctr -a "$CONTAINERD_SOCK" -n k8s.io "$@"; }
in_node() { nsenter --net="/run/netns/$NETNS" "$@"; }

say() { printf '%s e2e-k8s: %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() {
	say "FAILED: $*" >&2
	exit 1
}

# start NAME CMD...: runs CMD in the node's network namespace in the
# background, logging to $LOGS/NAME.log; its pid goes to $PIDS/NAME.
start() {
	local name=$1
	shift
	mkdir -p "$LOGS" "$PIDS"
	# nsenter itself, not the in_node function: a backgrounded function is
	# a subshell whose pid is not the program's.
	nsenter --net="/run/netns/$NETNS" "$@" >"$LOGS/$name.log" 2>&1 &
	echo $! >"$PIDS/$name"
	say "started $name (pid $!)"
}

# start_host NAME CMD...: the same in the host's network namespace.
start_host() {
	local name=$1
	shift
	mkdir -p "$LOGS" "$PIDS"
	"$@" >"$LOGS/$name.log" 2>&1 &
	echo $! >"$PIDS/$name"
	say "started $name (pid $!)"
}

# stop NAME: SIGTERM the process of $PIDS/NAME, SIGKILL after 20 s.
stop() {
	local f="$PIDS/$1" pid
	[[ -f $f ]] || return 0
	pid=$(<"$f")
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

# alive NAME: its process still runs.
alive() { [[ -f $PIDS/$1 ]] && kill -0 "$(<"$PIDS/$1")" 2>/dev/null; }

# wait_for WHAT SECONDS CMD...: retries CMD every second until it succeeds.
wait_for() {
	local what=$1 secs=$2
	shift 2
	for ((i = 0; i < secs; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 1
	done
	die "$what: not after ${secs}s"
}

# mounts_left [list]: something is still mounted under $WORK or $RUN.
mounts_left() {
	local m
	m=$(awk -v w="$WORK" -v r="$RUN" '$5 ~ "^"w"/|^"r"/|^"w"$|^"r"$" {print $5}' /proc/self/mountinfo)
	[[ ${1:-} == list ]] && echo "$m"
	[[ -n $m ]]
}

# teardown stops everything the cluster started and removes its mounts,
# network namespaces, cgroups and the host's veth end. Safe to run twice,
# and after a run that died half way.
teardown() {
	say "teardown"
	stop kubelet
	# Every container and sandbox of the cluster: SIGKILL (this ends the
	# mounter's FUSE servers; their mounts are removed below).
	if [[ -S $CONTAINERD_SOCK ]]; then
		local t
		for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
		sleep 2
		for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks delete -f "$t" >/dev/null 2>&1 || true; done
	fi
	stop containerd
	# The host mounter's `s3gfs mount` processes (outside every container)
	# that the test did not unstage: those serving a path under the
	# kubelet's root of this cluster, by pid.
	local p
	for p in $(pgrep -f "s3gfs mount .*$KUBELET_DIR/" 2>/dev/null); do
		say "stopping s3gfs mount process $p: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null | cut -c1-200)"
		kill -TERM "$p" 2>/dev/null || true
	done
	for _ in $(seq 40); do pgrep -f "s3gfs mount .*$KUBELET_DIR/" >/dev/null || break; sleep 0.5; done
	for p in $(pgrep -f "s3gfs mount .*$KUBELET_DIR/" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
	for n in snapshot-port kube-scheduler kube-controller-manager kube-apiserver etcd versitygw; do stop "$n"; done
	# Mounts under $WORK and $RUN (FUSE, bind, overlay, shm, tmpfs), deepest first.
	local m
	for _ in 1 2 3; do
		for m in $(awk -v w="$WORK" -v r="$RUN" '$5 ~ "^"w"/|^"r"/|^"w"$" {print $5}' /proc/self/mountinfo | sort -r); do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	done
	# The pods' network namespaces this cluster's CNI created.
	if [[ -f $WORK/netns-before ]]; then
		local ns
		for ns in $(ls /run/netns 2>/dev/null); do
			[[ $ns == cni-* ]] || continue
			grep -qx "$ns" "$WORK/netns-before" && continue
			umount "/run/netns/$ns" 2>/dev/null || umount -l "/run/netns/$ns" 2>/dev/null || true
			rm -f "/run/netns/$ns"
		done
	fi
	ip netns del "$NETNS" 2>/dev/null || true
	ip link del "$VETH_HOST" 2>/dev/null || true
	# The kubelet's pod cgroups (cgroup v1, cgroupfs driver: kubepods under
	# each controller).
	local c
	for c in /sys/fs/cgroup/*/kubepods; do
		[[ -d $c ]] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
	if mounts_left; then
		say "mounts left under $WORK or $RUN (not removing files):"
		mounts_left list
		return 1
	fi
	rm -rf --one-file-system "$RUN"
	say "teardown done"
}
