# One image for the three services: `docker run IMAGE order|payment|stock`.
# Build stage: a release build of the workspace.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# SQLX_OFFLINE: the SQL is checked against the descriptions committed in each service's .sqlx/.
COPY .cargo .cargo
COPY shared shared
COPY order order
COPY payment payment
COPY stock stock
COPY tests tests
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/order target/release/payment target/release/stock /out/

# Runtime stage: a small Debian with the three binaries, run as a non-root user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin checkout
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENV HOST=0.0.0.0 RUST_LOG=info,sqlx=warn
# The compose file picks the service (`command: ["order"]`) and its health check
# (`order --healthcheck`, which asks the running service's /health/ready).
CMD ["order"]
