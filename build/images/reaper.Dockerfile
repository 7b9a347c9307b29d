# The s3gfs command-line tool; the chart runs `s3gfs reaper` from it. Build
# from the repository root:
#   docker build -f build/images/reaper.Dockerfile --build-arg VERSION=v0.1.0 -t ghcr.io/s3gfs/s3gfs:v0.1.0 .
# `make images` builds the same image offline (build/ociimage), without Docker.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/s3gfs ./cmd/s3gfs

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/s3gfs /usr/local/bin/s3gfs
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/s3gfs"]
