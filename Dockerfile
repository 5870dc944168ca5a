# gatehouse container image: a release build in a Rust image, run from a small Debian image.
#
#   docker build -t gatehouse .
#   docker run --rm -p 8443:8443 gatehouse
#
# The runtime image holds only the binary, CA certificates and the default gateway.toml. It runs
# as the unprivileged user `gatehouse` (uid 10001); /etc/gatehouse and its certs/ folder belong to
# that user so the self-signed certificate (first start) and `gatehouse token create` can write
# there. In production, mount your own config, token store and certificates over /etc/gatehouse.

# ---- build ----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Dependency layer: build the dependencies against stub sources, so a change under src/ does not
# rebuild them. The stubs' own artifacts are deleted afterwards so the real sources are compiled.
COPY Cargo.toml Cargo.lock ./
# The bench files only have to exist for the manifest to parse; a release build never compiles them.
COPY benches ./benches
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '//! stub' > src/lib.rs \
 && cargo build --release --locked --bin gatehouse \
 && rm -rf src \
      target/release/gatehouse target/release/gatehouse.d \
      target/release/deps/gatehouse-* target/release/deps/libgatehouse-* \
      target/release/.fingerprint/gatehouse-*

COPY src ./src
RUN cargo build --release --locked --bin gatehouse \
 && strip target/release/gatehouse

# ---- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 gatehouse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /etc/gatehouse --no-create-home \
      --shell /usr/sbin/nologin gatehouse

COPY --from=builder /src/target/release/gatehouse /usr/local/bin/gatehouse

WORKDIR /etc/gatehouse
COPY gateway.toml /etc/gatehouse/gateway.toml
RUN chown gatehouse:gatehouse /etc/gatehouse \
 && install -d -o gatehouse -g gatehouse -m 0750 /etc/gatehouse/certs

USER 10001:10001

# 8443 TLS listener, 8080 optional plain_listen, 9901 admin (loopback unless admin_listen changes).
EXPOSE 8443 8080 9901

HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["gatehouse", "health", "--admin", "127.0.0.1:9901"]

# SIGTERM (docker stop) drains: /readyz 503, drain_delay, in-flight requests finish within
# shutdown_grace. Give `docker stop -t` more than drain_delay + shutdown_grace (default 32 s).
ENTRYPOINT ["gatehouse"]
CMD ["run", "-c", "/etc/gatehouse/gateway.toml"]
