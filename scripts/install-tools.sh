#!/usr/bin/env bash
# install-tools.sh installs the pinned external tools s3gfs's tests use into
# $S3GFS_TOOLS/bin (S3GFS_TOOLS defaults to $HOME/.cache/s3gfs-tools).
#
# Each tool is installed as NAME-VERSION, so bumping a pin below installs
# the new version next to the old one, and the tests (internal/testenv) look
# for exactly the pinned name. Tools already present are skipped.
#
# usage: scripts/install-tools.sh [TOOL...]
#   TOOL is one of: versitygw (the default), minio (slow: ~4 minutes to build)
set -euo pipefail

# Pins. Keep VERSITYGW_VERSION in sync with internal/testenv.VersitygwVersion
# and MINIO_VERSION with internal/testenv.MinioVersion.
VERSITYGW_VERSION=v1.8.0
# MinIO has no semver tags; this is the Go pseudo-version of a master commit.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c

TOOLS="${S3GFS_TOOLS:-$HOME/.cache/s3gfs-tools}"
BIN="$TOOLS/bin"

say() { printf 'install-tools: %s\n' "$*"; }
die() { say "error: $*" >&2; exit 1; }

# go_install PKG VERSION NAME builds PKG@VERSION with `go install` and puts
# the binary at $BIN/NAME-VERSION, unless it is already there.
go_install() {
	local pkg=$1 version=$2 name=$3
	local dest="$BIN/$name-$version"
	if [[ -x $dest ]]; then
		say "$name $version: already installed at $dest"
		return
	fi
	command -v go >/dev/null || die "go is not on PATH; install Go first"

	local tmp
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/s3gfs-tools.XXXXXX")
	say "$name $version: go install $pkg@$version (into $BIN)"
	# Build outside any module or workspace, into a scratch GOBIN.
	if ! (cd "$tmp" && GOWORK=off GOBIN="$tmp/bin" go install "$pkg@$version"); then
		rm -rf "$tmp"
		die "$name $version: go install failed"
	fi
	mkdir -p "$BIN"
	# Copy next to the destination, then rename: never a half-written binary.
	cp "$tmp/bin/$(basename "$pkg")" "$dest.partial.$$"
	chmod 0755 "$dest.partial.$$"
	mv -f "$dest.partial.$$" "$dest"
	rm -rf "$tmp"
	say "$name $version: installed $dest"
}

install_versitygw() {
	go_install github.com/versity/versitygw/cmd/versitygw "$VERSITYGW_VERSION" versitygw
}

# MinIO is a second S3 server to run the suites against: internal/testenv
# starts $BIN/minio-$MINIO_VERSION when S3GFS_S3_SERVER=minio (see
# `make test-minio`). It is not installed by default: it takes minutes to
# build.
install_minio() {
	go_install github.com/minio/minio "$MINIO_VERSION" minio
}

main() {
	local tools=("$@")
	if [[ ${#tools[@]} -eq 0 ]]; then
		tools=(versitygw)
	fi
	for tool in "${tools[@]}"; do
		case $tool in
		versitygw) install_versitygw ;;
		minio) install_minio ;;
		*) die "unknown tool '$tool' (known: versitygw, minio)" ;;
		esac
	done
}

main "$@"
