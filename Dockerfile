# Build stage: a static binary, no cgo needed at run time.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/baton ./cmd/baton

# Run stage: small, non-root, data on a volume.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/baton --create-home baton \
    && mkdir -p /etc/baton && chown baton /var/lib/baton
COPY --from=build /out/baton /usr/local/bin/baton
COPY testdata/config/baton.example.yaml /etc/baton/baton.yaml
COPY testdata/policies/handoff.yaml /etc/baton/policies/handoff.yaml
USER 10001
VOLUME ["/var/lib/baton"]
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/baton"]
CMD ["serve", "--config", "/etc/baton/baton.yaml"]
