# syntax=docker/dockerfile:1
# Stevedore (agent and coordinator) on Node.js 24.
#
# Build:  docker build -t stevedore:0.1.0 .
#
# Coordinator (runs as the unprivileged user node):
#   docker run -d --name stevedore-coordinator -p 7443:7443 \
#     -v stevedore-coordinator:/var/lib/stevedore-coordinator \
#     -e STEVEDORE_HEALTHCHECK_URL=http://127.0.0.1:9465/readyz \
#     stevedore:0.1.0 coordinator --db /var/lib/stevedore-coordinator/coordinator.db
#
# Agent (as root in the container; docs/operations.md says why):
#   docker run -d --name stevedore-agent --user 0:0 --restart unless-stopped \
#     --stop-timeout 120 --gpus all --network host \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/stevedore:/var/lib/stevedore \
#     -v /etc/stevedore:/etc/stevedore:ro \
#     -v /run/stevedore:/run/stevedore \
#     -e NODE_OPTIONS="--max-semi-space-size=1 --max-old-space-size=256 --v8-pool-size=1" \
#     -e MALLOC_ARENA_MAX=2 -e GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072 \
#     stevedore:0.1.0 agent
# (The V8 flags and allocator settings of the agent's systemd unit, about 25 MB less
# memory; docs/operations.md says what each one does.)
#
# What the agent needs mounted, and why:
#   /var/run/docker.sock  it starts, watches and stops the job containers.
#   /var/lib/stevedore    the state directory (node id, event journal, job logs):
#                         it must outlive the container, or the node becomes a new node.
#   the work root         (default /var/lib/stevedore/jobs, inside the state
#                         directory) at the SAME path inside and outside: the agent
#                         hands these paths to Docker as the jobs' bind mounts, and
#                         Docker resolves them on the host. Mount a work root
#                         elsewhere (workRoot: /mnt/nvme/stevedore) with -v P:P.
#   /etc/stevedore        agent.yaml (and TLS files), read-only.
#   /run/stevedore        the local API socket, for `stevedore status --agent` on the host.
#   --gpus all            nvidia-smi and the driver's libraries for the GPU inventory
#                         (NVIDIA Container Toolkit on the host).
#   --network host        the cloud's metadata service for spot notices (on a
#                         bridge network AWS needs a metadata hop limit of 2) and
#                         the metrics port 9464 on the node's address.

FROM node:24-bookworm-slim AS deps
WORKDIR /opt/stevedore
COPY package.json package-lock.json ./
# Runtime dependencies only. The `node` package (Node.js for installs outside a
# container) is removed: the base image has Node.js 24.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
 && rm -rf node_modules/node node_modules/.bin/node \
 && npm cache clean --force

# JavaScript from the TypeScript sources (scripts/build.ts, with the dev
# dependencies): the image runs dist/, without Node's runtime type stripping
# and the memory it costs every process.
FROM node:24-bookworm-slim AS build
WORKDIR /opt/stevedore
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
RUN node scripts/build.ts

FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="Stevedore" \
      org.opencontainers.image.description="Node agent for GPU training fleets: runs training jobs in GPU containers, keeps their checkpoints durable, survives preemption." \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/node:24-bookworm-slim"
# NVIDIA_DRIVER_CAPABILITIES: nvidia-smi and NVML only; the agent runs no CUDA
# code itself.
# STEVEDORE_RUN_FROM=dist: bin/stevedore.js runs the build whatever the files' times.
ENV NODE_ENV=production \
    STEVEDORE_RUN_FROM=dist \
    NVIDIA_DRIVER_CAPABILITIES=utility \
    STEVEDORE_HEALTHCHECK_URL=http://127.0.0.1:9464/readyz
WORKDIR /opt/stevedore
COPY --from=deps /opt/stevedore/node_modules ./node_modules
COPY package.json package-lock.json ./
COPY bin ./bin
COPY src ./src
COPY --from=build /opt/stevedore/dist ./dist
COPY proto ./proto
# The coordinator's state directory, writable by the user node (a named volume
# mounted here takes over this ownership).
RUN mkdir -p /var/lib/stevedore-coordinator \
 && chown node:node /var/lib/stevedore-coordinator \
 && chmod 0700 /var/lib/stevedore-coordinator
# Agent metrics and health, coordinator gRPC, coordinator metrics and health.
EXPOSE 9464 7443 9465
# The readiness endpoint of the metrics listener: the agent's by default, the
# coordinator's with STEVEDORE_HEALTHCHECK_URL=http://127.0.0.1:9465/readyz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.STEVEDORE_HEALTHCHECK_URL, { signal: AbortSignal.timeout(4000) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# SIGTERM starts the agent's drain (with preemption.drainOnSigterm: always;
# inside a container the agent cannot ask systemd whether the host is going
# down); give it the time with `docker run --stop-timeout 120`.
STOPSIGNAL SIGTERM
USER node
ENTRYPOINT ["node", "/opt/stevedore/bin/stevedore.js"]
CMD ["agent"]
