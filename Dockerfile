# Stevedore (agent and coordinator) on Node.js 24.
# Build: docker build -t stevedore:0.1.0 .
# Agent: docker run -d --name stevedore-agent \
#   -v /var/run/docker.sock:/var/run/docker.sock \   # it starts the job containers
#   -v /var/lib/stevedore:/var/lib/stevedore \          # node id, journal, job logs; must survive restarts
#   -v /etc/stevedore:/etc/stevedore:ro \               # agent.yaml
#   -v /run/stevedore:/run/stevedore \                  # local API socket for `stevedore status --agent`
#   --gpus all stevedore:0.1.0 agent                   # nvidia-smi for the inventory
# The work root (default /var/lib/stevedore/jobs) must be the same path inside and
# outside the container: job mounts are host paths handed to the engine.
FROM node:24-bookworm-slim
WORKDIR /opt/stevedore
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY bin ./bin
COPY src ./src
COPY proto ./proto
ENTRYPOINT ["node", "/opt/stevedore/bin/stevedore.js"]
CMD ["agent"]
