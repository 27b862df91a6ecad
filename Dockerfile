# Baton's image: a static binary on a distroless base, run as a non-root
# user (65532, "nonroot"). Build it with the version it reports:
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t baton .
#
# The image holds no configuration. Mount a directory with baton.yaml and
# the policy files it names (relative paths resolve against it) at
# /etc/baton, pass the secrets it refers to as ${VARS} in the environment,
# and keep /var/lib/baton on a volume that serves this one Baton process
# only (data_dir: /var/lib/baton, or a directory below it).
# testdata/examples/ has a Kubernetes and a compose setup.

# Build stage: the exact Go release go.mod names (no toolchain download),
# pinned by digest as well.
FROM golang:1.26.8-bookworm@sha256:dc9ad6c05acc7a88e5b71bde60a5fe3bd4b9f0db209011711b464107438a8107 AS build
ARG VERSION=dev
ARG COMMIT=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The build context has no .git (see .dockerignore): the version and commit
# come from the build arguments, not from the toolchain's VCS stamp.
RUN CGO_ENABLED=0 GOTOOLCHAIN=local go build -trimpath -buildvcs=false \
      -ldflags="-s -w -X github.com/batonproxy/baton/proxy/buildinfo.Version=${VERSION} -X github.com/batonproxy/baton/proxy/buildinfo.Commit=${COMMIT}" \
      -o /out/baton ./cmd/baton \
    && mkdir /out/data

# Run stage: no shell, no package manager; CA certificates for the Graph
# API and an https bot; time zones are compiled into the binary. The
# nonroot tag runs as 65532:65532.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:b7bb25d9f7c31d2bdd1982feb4dafcaf137703c7075dbe2febb41c24212b946f
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="baton" \
      org.opencontainers.image.description="Handover Protocol proxy for the Messenger Platform" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/baton /usr/local/bin/baton
# The data directory belongs to the non-root user: a new named volume
# mounted on it starts as a copy of it, ownership included, so Baton can
# write there. (A bind mount or a Kubernetes volume needs the same owner,
# or fsGroup 65532.)
COPY --from=build --chown=65532:65532 /out/data /var/lib/baton
USER 65532:65532
# A soft memory limit for the default cache_size of 100,000 threads (see
# README, "Operating it"); raise it with the cache, and keep the
# container's memory limit above it.
ENV GOMEMLIMIT=128MiB
# Where baton healthcheck and the admin commands (baton threads, backup,
# ...) find the admin listener: admin.listen's default port, on loopback.
# Change both together.
ENV BATON_ADMIN=http://127.0.0.1:9090
VOLUME ["/var/lib/baton"]
# 8080: the webhook listener (listen). 9090: the admin listener
# (admin.listen); it listens on the container's loopback only, where the
# health check reaches it, unless the config gives it another address,
# which then needs admin.token.
EXPOSE 8080 9090
# Liveness of the process; readiness (baton healthcheck --ready) is for
# orchestrators that route by it. Starting replays Badger's logs, hence
# the start period; the command gives up by itself after 5s and says why.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/baton", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/baton"]
CMD ["serve", "--config", "/etc/baton/baton.yaml"]
