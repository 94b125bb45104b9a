# The services' image as `make compose-images` makes it where no Rust image can be pulled: the
# Dockerfile's `runtime` stage (built from the repository's Dockerfile, tagged as RUNTIME) with the
# binaries of the host's release build (`cargo build --release`, as `make up` makes them) in
# place of its `build` stage's. The build context holds only those three binaries.
ARG RUNTIME=checkout-platform-runtime:latest
FROM ${RUNTIME}
COPY order payment stock /usr/local/bin/
