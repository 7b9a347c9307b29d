#!/usr/bin/env bash
# bench.sh: `make bench`. Measures s3gfs side by side with raw S3 and the
# peers (s3fs-fuse, rclone mount) against one fresh local versitygw, and
# writes bench/results/<date>-<host>.md and .png.
#
# Environment (all optional):
#   BENCH_SMOKE=1      a small configuration (64MiB file, 200 small files,
#                      ls of 100 and 1000 entries); its results file is named
#                      *-smoke.md and says so
#   BENCH_SIZE=1GiB    sequential file size        BENCH_FILES=2000  small files
#   BENCH_LS=1000,10000  ls -l directory sizes     BENCH_TARGETS=raw,s3gfs,s3fs,rclone
#   BENCH_S3GFS_ARGS   extra `s3gfs mount` flags   BENCH_OUT=bench/results
#   BENCH_TRACE=FILE   log every S3 request (workload, kind, status, latency)
#   BENCH_LABEL=NAME   results file suffix and a note in it (smoke runs: smoke)
#
# Needs root and /dev/fuse. Installs versitygw (scripts/install-tools.sh)
# and, when missing, Debian's s3fs, rclone and fio; a peer that cannot be
# installed is reported as unavailable in the results rather than failing
# the run. Everything it mounts is unmounted and the server stopped on exit,
# also on failure or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="${S3GFS_TOOLS:-$HOME/.cache/s3gfs-tools}"
VERSITYGW_VERSION=v1.8.0 # keep in sync with scripts/install-tools.sh
VERSITYGW="$TOOLS/bin/versitygw-$VERSITYGW_VERSION"

say() { printf 'bench: %s\n' "$*"; }

[[ $(id -u) == 0 ]] || say "warning: the FUSE mounts need root"
[[ -e /dev/fuse ]] || { say "error: no /dev/fuse"; exit 1; }

cd "$ROOT"
make build
go build -o bin/s3gfs-bench ./bench/cmd/s3gfs-bench
[[ -x $VERSITYGW ]] || scripts/install-tools.sh versitygw

missing=()
for tool in s3fs rclone fio; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
	say "installing ${missing[*]} from Debian (a peer that fails to install is marked unavailable)"
	if command -v apt-get >/dev/null; then
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") ||
			say "warning: apt-get install ${missing[*]} failed"
	else
		say "warning: no apt-get; ${missing[*]} stay missing"
	fi
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/s3gfs-bench.XXXXXX")
S3PID=
cleanup() {
	local rc=$?
	# Every mount the harness made lives under $WORK: unmount them all
	# (lazily if busy), so no FUSE mount outlives the run.
	if [[ -n ${WORK:-} ]]; then
		awk -v w="$WORK" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r | while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		done
	fi
	if [[ -n $S3PID ]]; then
		kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null
	fi
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PORT=$(bin/s3gfs-bench freeport)
export AWS_ACCESS_KEY_ID=s3gfs-bench AWS_SECRET_ACCESS_KEY="s3gfs-bench-$RANDOM$RANDOM" AWS_REGION=us-east-1
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_PROFILE
mkdir -p "$WORK/s3"
setsid "$VERSITYGW" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" --region us-east-1 \
	--port "127.0.0.1:$PORT" --keep-alive --quiet posix "$WORK/s3" >"$WORK/versitygw.log" 2>&1 &
S3PID=$!
for _ in $(seq 150); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	kill -0 "$S3PID" 2>/dev/null || { cat "$WORK/versitygw.log"; say "error: versitygw failed to start"; exit 1; }
	sleep 0.1
done
say "versitygw $VERSITYGW_VERSION on 127.0.0.1:$PORT, data in $WORK/s3"

BENCH_S3GFS_VERSION=$(git describe --tags --always --dirty 2>/dev/null || echo dev) \
BENCH_S3_SERVER="versitygw $VERSITYGW_VERSION" \
	bin/s3gfs-bench -endpoint "http://127.0.0.1:$PORT" -s3gfs bin/s3gfs -work "$WORK/run" \
	-out "${BENCH_OUT:-bench/results}" "$@"
