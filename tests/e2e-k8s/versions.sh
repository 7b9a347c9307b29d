# versions.sh: the pinned versions of everything the e2e cluster builds.
# Sourced by the e2e scripts. Binaries are cached as NAME-VERSION, so bumping
# a pin rebuilds just that binary.
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.3
HELM_VERSION=v3.22.0
PROVISIONER_VERSION=v6.4.0
SNAPSHOTTER_VERSION=v8.7.0
SNAPSHOTTER_CLIENT_VERSION=v8.7.0
