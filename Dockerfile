# One image for the three services: `docker run IMAGE order|payment|stock`.
#
# Stages, in this order so that a builder without BuildKit (which builds every stage before the one
# asked for) can build `runtime` alone:
#   runtime  a small Debian, the user the services run as, no binaries yet;
#   build    a release build of the workspace (needs a Rust image);
#   (last)   runtime with build's three binaries: the image `docker compose up --build` makes.
# `make compose-images` builds `runtime` and adds the binaries the host's release build made
# (tests/compose/services.Dockerfile), where no Rust image can be had.

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin checkout
USER 10001:10001
ENV HOST=0.0.0.0 RUST_LOG=info,sqlx=warn
# The compose file picks the service (`command: ["order"]`) and its health check
# (`order --healthcheck`, which asks the running service's /health/ready).
CMD ["order"]

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

FROM runtime
COPY --from=build /out/ /usr/local/bin/
