# Prometheus for the compose test's observability profile where the official image
# (prom/prometheus) cannot be pulled: Debian's own package of it on the platform's Debian base, run
# as that image runs it — the configuration at /etc/prometheus/prometheus.yml (docker-compose.yml
# mounts the repository's), the data in /prometheus, port 9090, not root. Unlike that image it
# declares no volume: the test's Prometheus keeps nothing. Built by `make compose-images`
# (scripts/compose.sh); the build context needs nothing. The package's web pages use one file of
# libjs-moment-timezone: its 210 MB of time zone data by release (data/) are left out, as the base
# leaves out documentation.
FROM debian:bookworm-slim
RUN echo 'path-exclude /usr/share/javascript/moment-timezone/data/*' >/etc/dpkg/dpkg.cfg.d/prometheus \
    && apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o prometheus -g prometheus /prometheus
USER prometheus
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
