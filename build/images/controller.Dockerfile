# The s3gfs CSI controller plugin. Build from the repository root:
#   docker build -f build/images/controller.Dockerfile --build-arg VERSION=v0.1.0 -t ghcr.io/s3gfs/s3gfs-csi-controller:v0.1.0 .
# `make images` builds the same image offline (build/ociimage), without Docker.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/s3gfs-csi-controller ./cmd/controller

# Static binary: no libc needed. distroless/static has CA certificates,
# /etc/passwd with nonroot (65532) and /tmp, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/s3gfs-csi-controller /usr/local/bin/s3gfs-csi-controller
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/s3gfs-csi-controller"]
