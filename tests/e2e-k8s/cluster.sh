# cluster.sh: brings up the single-node cluster (sourced by run.sh after
# lib.sh). Each function is one step; cluster_up runs them in order.

# netns: the node's network namespace with its end of a veth pair. The host
# end carries $HOST_IP (the S3 server's address for the pods); nothing else
# on the host changes.
setup_network() {
	say "network: namespace $NETNS, veth $VETH_HOST ($HOST_IP) <-> $VETH_NODE ($NODE_IP)"
	ip netns add "$NETNS"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
	ip link set "$VETH_NODE" netns "$NETNS"
	ip addr add "$HOST_IP/$PREFIX_LEN" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	in_node ip link set lo up
	in_node ip addr add "$NODE_IP/$PREFIX_LEN" dev "$VETH_NODE"
	in_node ip link set "$VETH_NODE" up
	in_node ip route add default via "$HOST_IP"
	# Pods reach the S3 server on the host end through the node (the CNI
	# bridge masquerades them as $NODE_IP).
	in_node sysctl -qw net.ipv4.ip_forward=1
	# No kube-proxy: the one Service the pods use is the API server's own
	# (in-cluster clients dial $API_SERVICE_IP:443). One DNAT rule stands for
	# it, in the node's namespace only.
	for chain in PREROUTING OUTPUT; do
		in_node iptables -t nat -A "$chain" -d "$API_SERVICE_IP/32" -p tcp --dport 443 \
			-j DNAT --to-destination "$NODE_IP:6443"
	done
}

# pki: a CA, the API server's serving certificate, the service-account key,
# and one static admin token (group system:masters) that every component
# and kubectl use.
setup_pki() {
	local d="$WORK/pki"
	mkdir -p "$d"
	say "pki: CA, API server certificate, service-account key, admin token in $d"
	openssl req -x509 -newkey rsa:2048 -nodes -keyout "$d/ca.key" -out "$d/ca.crt" -days 2 -subj /CN=s3gfs-e2e-ca 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -keyout "$d/apiserver.key" -out "$d/apiserver.csr" -subj /CN=kube-apiserver 2>/dev/null
	printf 'subjectAltName=IP:%s,IP:%s,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' \
		"$NODE_IP" "$API_SERVICE_IP" >"$d/apiserver.ext"
	openssl x509 -req -in "$d/apiserver.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
		-extfile "$d/apiserver.ext" -out "$d/apiserver.crt" 2>/dev/null
	openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
	openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
	local token
	token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
	echo "$token,admin,admin,system:masters" >"$d/tokens.csv"
	cat >"$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority: $d/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOF
	chmod 0600 "$KUBECONFIG_FILE" "$d"/*.key "$d/tokens.csv"
}

start_s3() {
	[[ -x $VERSITYGW ]] || (cd "$REPO" && scripts/install-tools.sh versitygw) || die "versitygw"
	mkdir -p "$WORK/s3"
	say "S3: versitygw on $S3_ENDPOINT (files in $WORK/s3)"
	start_host versitygw "$VERSITYGW" --access "$S3_ACCESS" --secret "$S3_SECRET" --port "$HOST_IP:$S3_PORT" posix "$WORK/s3"
	wait_for "versitygw" 30 bash -c "exec 3<>/dev/tcp/$HOST_IP/$S3_PORT"
}

start_control_plane() {
	local d="$WORK/pki"
	start etcd "$BIN/etcd-$ETCD_VERSION" --name e2e --data-dir "$WORK/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster e2e=http://127.0.0.1:2380
	start kube-apiserver "$BIN/kube-apiserver-$K8S_VERSION" \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port=6443 \
		--tls-cert-file="$d/apiserver.crt" --tls-private-key-file="$d/apiserver.key" \
		--client-ca-file="$d/ca.crt" --token-auth-file="$d/tokens.csv" \
		--authorization-mode=Node,RBAC --allow-privileged=true \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
		--cert-dir="$d/apiserver-generated" \
		--kubelet-preferred-address-types=InternalIP
	wait_for "kube-apiserver /readyz" 180 kubectl get --raw /readyz
	say "kube-apiserver ready: $(kubectl version 2>/dev/null | tr '\n' ' ')"
	start kube-controller-manager "$BIN/kube-controller-manager-$K8S_VERSION" \
		--kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
		--bind-address=127.0.0.1 --leader-elect=false \
		--service-account-private-key-file="$d/sa.key" --root-ca-file="$d/ca.crt" \
		--use-service-account-credentials=true --controllers='*'
	start kube-scheduler "$BIN/kube-scheduler-$K8S_VERSION" \
		--kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE" --authorization-kubeconfig="$KUBECONFIG_FILE" \
		--bind-address=127.0.0.1 --leader-elect=false
}

# containerd (Debian's) with the CRI plugin: our pause image as the sandbox
# image, the CNI bridge below, runc with cgroupfs (cgroup v1), no negative
# oom_score_adj (see restrict_oom_score_adj).
start_containerd() {
	local d="$WORK/containerd"
	mkdir -p "$d" "$RUN" "$WORK/cni/net.d" "$WORK/cni/ipam"
	cat >"$WORK/cni/net.d/10-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e",
  "plugins": [
    {"type": "bridge", "bridge": "e2e0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
	cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$RUN/containerd-state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.10"
  # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj
  # (the sandboxes' -998) and fails; keep every container at >= containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
EOF
	start containerd containerd --config "$d/config.toml"
	wait_for containerd 60 ctr_ version
}

import_images() {
	local t
	for t in "$WORK/images"/*.tar; do
		ctr_ images import "$t" >/dev/null || die "ctr images import $t"
	done
	say "images in containerd: $(ctr_ images ls -q | grep -v '^sha256:' | tr '\n' ' ')"
}

start_kubelet() {
	mkdir -p "$KUBELET_DIR"
	cat >"$WORK/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines run cgroup v1: kubelet 1.37 refuses it unless told.
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imageServiceEndpoint: unix://$CONTAINERD_SOCK
address: $NODE_IP
readOnlyPort: 0
# kubectl logs/exec: the API server calls the kubelet; only the node's
# namespace can reach it.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
# A test machine's disk and memory are shared: never evict or collect images.
evictionHard: {memory.available: "1Mi", nodefs.available: "0%", imagefs.available: "0%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
EOF
	start kubelet "$BIN/kubelet-$K8S_VERSION" --config="$WORK/kubelet.yaml" --kubeconfig="$KUBECONFIG_FILE" \
		--root-dir="$KUBELET_DIR" --node-ip="$NODE_IP" --hostname-override="$NODE_NAME" --v=1
	wait_for "node $NODE_NAME Ready" 180 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
}

cluster_up() {
	# The kubelet's root must be a shared mount (Bidirectional propagation of
	# the node plugin's mounts); $WORK is made one by a bind mount on itself.
	mkdir -p "$WORK"
	mount --bind "$WORK" "$WORK"
	mount --make-rshared "$WORK"
	ls /run/netns 2>/dev/null >"$WORK/netns-before" || true
	setup_network
	setup_pki
	start_s3
	start_control_plane
	start_containerd
	import_images
	start_kubelet
	wait_for "the default ServiceAccount (controller-manager)" 120 kubectl get serviceaccount default
	say "cluster up: $(kubectl get nodes -o wide --no-headers)"
}
