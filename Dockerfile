# syntax=docker/dockerfile:1
#
# funnelstream container image.
#
#   docker build -t funnelstream .
#   docker run --rm -p 9490:9490 funnelstream run --brokers kafka:9092 --topics funnel-events
#
# The build stage compiles the release binary (librdkafka is built from
# source by rdkafka-sys with its configure/make: it needs a C/C++ toolchain,
# make, pkg-config and the OpenSSL and zlib headers; cmake is not used). The
# runtime stage is Debian bookworm-slim with the two shared libraries the
# binary links (libssl3, zlib1g) and CA certificates for Kafka over TLS, run
# as the unprivileged user 10001 (the Helm chart's runAsUser).

ARG RUST_IMAGE=rust:1-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what `cargo build` reads: the manifest, the lock file, the sources,
# and benches/ (Cargo.toml declares [[bench]] targets, and Cargo refuses a
# manifest whose declared targets are missing).
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin funnelstream \
 && install -m 0755 target/release/funnelstream /usr/local/bin/funnelstream \
 && /usr/local/bin/funnelstream --version

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 funnelstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent \
      --no-create-home --shell /usr/sbin/nologin funnelstream
COPY --from=build /usr/local/bin/funnelstream /usr/local/bin/funnelstream
LABEL org.opencontainers.image.title="funnelstream" \
      org.opencontainers.image.description="Exact rolling-window marketing and sales KPIs from Kafka to Prometheus" \
      org.opencontainers.image.licenses="Apache-2.0"
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
EXPOSE 9490
ENTRYPOINT ["funnelstream"]
CMD ["run"]
