#!/usr/bin/env bash
# build-bins.sh builds the cluster's binaries from the Go module proxy into
# $E2E_CACHE/bin (default $HOME/.cache/s3gfs-e2e/bin), each as NAME-VERSION,
# skipping what is already there. Nothing is downloaded except Go modules.
#
# usage: tests/e2e-k8s/build-bins.sh [NAME...]   (default: all)
#   names: kube-apiserver kube-controller-manager kube-scheduler kubelet
#          kubectl etcd helm csi-provisioner csi-snapshotter
#          snapshot-controller snapshot-crds
set -euo pipefail
source "$(dirname "$0")/versions.sh"

CACHE="${E2E_CACHE:-$HOME/.cache/s3gfs-e2e}"
BIN="$CACHE/bin"
SRC="$CACHE/src"
mkdir -p "$BIN" "$SRC"
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0
say() { printf 'build-bins: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

# install NAME VERSION DIR PKG [LDFLAGS]: go build PKG inside module DIR into
# $BIN/NAME-VERSION (copied to a partial name first: never a half binary).
install() {
	local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
	local dest="$BIN/$name-$version"
	if [[ -x $dest ]]; then say "$name $version: cached"; return; fi
	say "$name $version: building $pkg"
	local t0=$SECONDS
	(cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dest.partial.$$" "$pkg") ||
		die "$name: go build failed"
	mv -f "$dest.partial.$$" "$dest"
	say "$name $version: built in $((SECONDS - t0)) s"
}

# k8s_module: a scratch module requiring k8s.io/kubernetes with every
# staging module it replaces locally replaced by the published v0.X.Y.
k8s_module() {
	local dir="$SRC/kubernetes-$K8S_VERSION"
	if [[ -f $dir/.ready ]]; then echo "$dir"; return; fi
	mkdir -p "$dir"
	local modfile
	modfile=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
	[[ -f $modfile ]] || die "k8s.io/kubernetes@$K8S_VERSION: go.mod not found"
	local staging=v0.${K8S_VERSION#v1.}
	{
		echo "module s3gfs.test/e2e-k8s/kubernetes"
		echo
		grep -m1 '^go ' "$modfile"
		echo
		echo "require k8s.io/kubernetes $K8S_VERSION"
		echo
		echo "replace ("
		sed -n '/^replace (/,/^)/p' "$modfile" | sed -n 's#^\s*\(k8s.io/[^ ]*\) => ./staging/.*#\t\1 => \1 '"$staging"'#p'
		echo ")"
	} >"$dir/go.mod"
	(cd "$dir" && go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" \
		k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl >&2) || die "go get kubernetes"
	touch "$dir/.ready"
	echo "$dir"
}

# simple_module NAME MODULE VERSION: a scratch module requiring MODULE@VERSION.
simple_module() {
	local name=$1 mod=$2 version=$3
	local dir="$SRC/$name-$version"
	if [[ -f $dir/.ready ]]; then echo "$dir"; return; fi
	mkdir -p "$dir"
	(cd "$dir" && rm -f go.mod go.sum && go mod init "s3gfs.test/e2e-k8s/$name" >&2 && go get "$mod@$version" >&2) ||
		die "$name: go get $mod@$version"
	touch "$dir/.ready"
	echo "$dir"
}

k8s_ldflags() {
	local v=${K8S_VERSION#v} ; local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
	local p=k8s.io/component-base/version
	echo "-X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
}

build_k8s() { # NAME
	local dir; dir=$(k8s_module)
	install "$1" "$K8S_VERSION" "$dir" "k8s.io/kubernetes/cmd/$1" "$(k8s_ldflags)"
}

build_etcd() {
	local dest="$BIN/etcd-$ETCD_VERSION"
	[[ -x $dest ]] && { say "etcd $ETCD_VERSION: cached"; return; }
	local dir; dir=$(simple_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION")
	cat >"$dir/main.go" <<'GO'
// Command etcd is etcd's own main, built from go.etcd.io/etcd/server/v3.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
	(cd "$dir" && go mod tidy >&2) || die "etcd: go mod tidy"
	install etcd "$ETCD_VERSION" "$dir" .
}

build_helm() {
	[[ -x $BIN/helm-$HELM_VERSION ]] && { say "helm $HELM_VERSION: cached"; return; }
	local dir; dir=$(simple_module helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION")
	install helm "$HELM_VERSION" "$dir" helm.sh/helm/v3/cmd/helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

build_provisioner() {
	[[ -x $BIN/csi-provisioner-$PROVISIONER_VERSION ]] && { say "csi-provisioner: cached"; return; }
	local dir; dir=$(simple_module csi-provisioner github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner "$PROVISIONER_VERSION")
	install csi-provisioner "$PROVISIONER_VERSION" "$dir" github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner "-X main.version=$PROVISIONER_VERSION"
}

build_snapshotter() { # NAME (csi-snapshotter | snapshot-controller)
	[[ -x $BIN/$1-$SNAPSHOTTER_VERSION ]] && { say "$1: cached"; return; }
	local dir; dir=$(simple_module external-snapshotter github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter "$SNAPSHOTTER_VERSION")
	(cd "$dir" && go get "github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller@$SNAPSHOTTER_VERSION" >&2) || die "go get snapshot-controller"
	install "$1" "$SNAPSHOTTER_VERSION" "$dir" "github.com/kubernetes-csi/external-snapshotter/v8/cmd/$1" "-X main.version=$SNAPSHOTTER_VERSION"
}

# The snapshot CRDs (client/v8 module, config/crd) and the
# snapshot-controller's own manifests (v8 module,
# deploy/kubernetes/snapshot-controller), as a user applies them.
build_crds() {
	local dest="$CACHE/snapshot-$SNAPSHOTTER_VERSION"
	[[ -f $dest/.ready ]] && { say "snapshot CRDs and controller manifests: cached"; return; }
	local dir v8 client
	dir=$(simple_module external-snapshotter github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter "$SNAPSHOTTER_VERSION")
	v8=$(cd "$dir" && go mod download -json "github.com/kubernetes-csi/external-snapshotter/v8@$SNAPSHOTTER_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	client=$(cd "$dir" && go mod download -json "github.com/kubernetes-csi/external-snapshotter/client/v8@$SNAPSHOTTER_CLIENT_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
	[[ -d $client/config/crd && -d $v8/deploy/kubernetes/snapshot-controller ]] || die "snapshot CRDs or controller manifests not found"
	rm -rf "$dest" && mkdir -p "$dest/crd" "$dest/controller"
	cp "$client"/config/crd/*storage.k8s.io_*.yaml "$dest/crd/"
	cp "$v8"/deploy/kubernetes/snapshot-controller/{rbac,setup}-snapshot-controller.yaml "$dest/controller/"
	chmod -R u+w "$dest"
	touch "$dest/.ready"
	say "snapshot CRDs and controller manifests: $dest"
}

all=(etcd kube-scheduler kube-controller-manager kubelet kube-apiserver kubectl helm csi-provisioner csi-snapshotter snapshot-controller snapshot-crds)
[[ $# -gt 0 ]] && all=("$@")
for n in "${all[@]}"; do
	case $n in
	kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kubectl) build_k8s "$n" ;;
	etcd) build_etcd ;;
	helm) build_helm ;;
	csi-provisioner) build_provisioner ;;
	csi-snapshotter | snapshot-controller) build_snapshotter "$n" ;;
	snapshot-crds) build_crds ;;
	*) die "unknown binary $n" ;;
	esac
done
