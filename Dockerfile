# The socketswarm image: one static binary (the site is embedded in it) and an empty,
# writable /data for the SQLite database; no shell, no libc, no base image to pull.
# Runs as nobody (65534). Build it with scripts/image.sh, which builds the static (musl)
# binary and uses target/image/ as the build context:
#   scripts/image.sh                       # buildah (or docker) -> localhost/socketswarm:latest
#   docker run -p 3000:3000 -e SOCKETSWARM_LISTEN=0.0.0.0:3000 \
#     -e SOCKETSWARM_ACCESS_TOKEN=$(openssl rand -hex 24) socketswarm
# Agents (the Kubernetes launcher) run the same image: `/socketswarm agent ...`.
FROM scratch
COPY socketswarm /socketswarm
COPY --chown=65534:65534 data /data
USER 65534:65534
WORKDIR /data
ENV SOCKETSWARM_DATABASE=/data/socketswarm.db
EXPOSE 3000
ENTRYPOINT ["/socketswarm"]
