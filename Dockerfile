# syntax=docker/dockerfile:1
#
# jwtauthz container image: a static binary on distroless, running as non-root.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t ghcr.io/jwtauthz/jwtauthz:0.1.0 .
#   docker run --rm -p 9001:9001 -p 9090:9090 \
#     -v "$PWD/config.yaml:/etc/jwtauthz/config.yaml:ro" \
#     -v "$PWD/keys:/etc/jwtauthz/keys:ro" \
#     -v jwtauthz-data:/data \
#     ghcr.io/jwtauthz/jwtauthz:0.1.0
#
# VERSION is the release: `jwtauthz version`, jwtauthz_build_info and the
# image's version label report it ("devel" when not given); REVISION is the
# commit (.git is not in the build context, so Go cannot stamp it). The
# builder is the patch release go.mod's toolchain line names. Tag the image
# with the same version; the Helm chart's appVersion names that tag.
#
# In a container the config must listen on all interfaces (listen: 0.0.0.0:9001,
# http_listen: 0.0.0.0:9090; the defaults are loopback) and keep the bbolt
# store on the /data volume (store.path: /data/jwtauthz.db). The Helm chart in
# charts/jwtauthz renders such a config. jwtauthz reloads its config when the
# file changes, but a single-file bind mount (as above) goes on showing the old
# file once an editor replaces it; to have edits reloaded, mount the directory
# (-v "$PWD/conf:/etc/jwtauthz/config:ro" and, after the image name,
# --config /etc/jwtauthz/config/config.yaml), as the chart does.
# deploy/dockerfile_test.go checks that this file and the chart agree and
# builds the binary with the same command.

FROM golang:1.27.3 AS build
WORKDIR /src
ENV GOTOOLCHAIN=local CGO_ENABLED=0
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Declared after the downloads, so a new version does not redo them.
ARG VERSION=devel
ARG REVISION=unknown
# Static (no libc for distroless/static), reproducible paths, no symbol
# tables, and the release version stamped in.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X github.com/jwtauthz/jwtauthz/internal/version.version=${VERSION} -X github.com/jwtauthz/jwtauthz/internal/version.revision=${REVISION}" -o /out/jwtauthz ./cmd/jwtauthz
# The data directory, owned by the runtime user so the volume starts writable.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
LABEL org.opencontainers.image.title=jwtauthz \
      org.opencontainers.image.description="Envoy/Istio ext_authz service verifying bearer JWTs" \
      org.opencontainers.image.source=https://github.com/jwtauthz/jwtauthz \
      org.opencontainers.image.version=${VERSION}
COPY --from=build /out/jwtauthz /usr/local/bin/jwtauthz
COPY --from=build --chown=65532:65532 /out/data /data
# serve reads the config file named here when --config is absent.
ENV JWTAUTHZ_CONFIG=/etc/jwtauthz/config.yaml
# A relative store.path (the default, jwtauthz.db) lands on the volume.
WORKDIR /data
VOLUME /data
# 9001: gRPC (ext_authz Check, grpc.health.v1); 9090: HTTP (/metrics, /healthz, /readyz).
EXPOSE 9001 9090
# distroless's nonroot user; the Helm chart runs the pod as the same UID/GID.
USER 65532:65532
ENTRYPOINT ["jwtauthz", "serve"]
