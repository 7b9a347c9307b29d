# The s3gfs CSI node plugin and its mounter (`s3gfs-csi-node mounter`), which
# runs s3gfs from the same directory. Build from the repository root:
#   docker build -f build/images/node.Dockerfile --build-arg VERSION=v0.1.0 -t ghcr.io/s3gfs/s3gfs-csi-node:v0.1.0 .
# `make images` builds the same image offline (build/ociimage), without Docker.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/s3gfs-csi-node ./cmd/node && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/s3gfs ./cmd/s3gfs

# Root: mount(2), bind mounts and /dev/fuse need it (the chart runs the
# container privileged). s3gfs mounts FUSE with mount(2) directly as root, so
# the image needs no fusermount, no shell and no libc.
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/s3gfs-csi-node /out/s3gfs /usr/local/bin/
USER 0:0
ENTRYPOINT ["/usr/local/bin/s3gfs-csi-node"]
