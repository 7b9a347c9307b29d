#!/usr/bin/env bash
# run.sh: the whole main job on one machine, for `make run`.
#
# Starts the pinned local S3 server (versitygw) on loopback with its data in
# .run/s3, formats a volume there the first time, and mounts it at ./mnt in
# the foreground. Ctrl-C (or `umount ./mnt` from another shell) writes back
# everything, unmounts, and stops the server. The data persists across runs.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="${S3GFS_TOOLS:-$HOME/.cache/s3gfs-tools}"
VERSITYGW="$TOOLS/bin/versitygw-v1.8.0"
PORT="${S3GFS_RUN_PORT:-7077}"
ENDPOINT="http://127.0.0.1:$PORT"
BUCKET=s3gfs-local
PREFIX=vol
RUN="$ROOT/.run"
MNT="${S3GFS_RUN_MOUNTPOINT:-$ROOT/mnt}"

say() { printf 'run: %s\n' "$*"; }

[[ -x $VERSITYGW ]] || "$ROOT/scripts/install-tools.sh" versitygw
[[ $(id -u) == 0 ]] || say "warning: mounting with FUSE usually needs root (or fusermount3)"

mkdir -p "$RUN/s3" "$MNT"
if mountpoint -q "$MNT"; then
	say "$MNT is still mounted from an earlier run; detaching it"
	umount -l "$MNT"
fi

export AWS_ACCESS_KEY_ID=s3gfs-local AWS_SECRET_ACCESS_KEY=s3gfs-local-secret AWS_REGION=us-east-1

# The server runs in its own session so that Ctrl-C reaches only the mount,
# which must still write back to the server before it exits.
setsid "$VERSITYGW" --access "$AWS_ACCESS_KEY_ID" --secret "$AWS_SECRET_ACCESS_KEY" \
	--port "127.0.0.1:$PORT" --keep-alive --quiet posix "$RUN/s3" >"$RUN/versitygw.log" 2>&1 &
S3PID=$!
cleanup() {
	mountpoint -q "$MNT" && umount -l "$MNT"
	kill "$S3PID" 2>/dev/null && wait "$S3PID" 2>/dev/null
	say "stopped the S3 server; data kept in $RUN/s3"
}
trap cleanup EXIT

for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
	kill -0 "$S3PID" 2>/dev/null || { cat "$RUN/versitygw.log"; say "S3 server failed to start"; exit 1; }
	sleep 0.1
done
say "S3 server (versitygw) on $ENDPOINT, data in $RUN/s3"

if [[ ! -f "$RUN/s3/$BUCKET/$PREFIX/volume" ]]; then
	"$ROOT/bin/s3gfs" format --endpoint "$ENDPOINT" "s3://$BUCKET/$PREFIX"
fi
say "mounting s3://$BUCKET/$PREFIX at $MNT; press Ctrl-C to unmount and stop"
"$ROOT/bin/s3gfs" mount --endpoint "$ENDPOINT" "s3://$BUCKET/$PREFIX" "$MNT" || true
