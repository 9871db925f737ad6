#!/bin/sh
# Installs Stevedore on a Linux host: the package in /opt/stevedore, a systemd
# unit, and (agent) /etc/stevedore/agent.yaml, the state directory and the
# local API group. Safe to run again: an upgrade replaces /opt/stevedore and
# the unit, and never touches an existing configuration.
#
#   sh scripts/install.sh [--role agent|coordinator] [--from DIR|FILE.tgz]
#                         [--root DIR] [--dry-run]
#
# docs/operations.md describes what it does and how to do the same by hand.
set -eu

PROG=install.sh
ROLE=agent
FROM=
ROOT=${STEVEDORE_ROOT:-}
DRY_RUN=0
NPM=${NPM:-npm}
INOTIFY_WATCHES=1048576
INOTIFY_INSTANCES=1024
DROPIN_MARK='# Written by scripts/install.sh'

usage() {
  cat <<'EOF'
Usage: sh scripts/install.sh [options]

Installs Stevedore into /opt/stevedore with a systemd unit.

Options:
  --role agent|coordinator  what this host runs (default: agent)
  --from DIR|FILE.tgz       the release to install: a checkout, an unpacked
                            release, or a tarball from `npm pack`
                            (default: the checkout holding this script)
  --root DIR                install under DIR instead of / (also STEVEDORE_ROOT);
                            systemd is then left alone
  --dry-run                 print what would be done, change nothing
  -h, --help                this text

Environment: NPM, the npm to install the dependencies with (default: npm).
EOF
}

say() { printf '%s\n' "$*"; }
warn() { printf '%s: warning: %s\n' "$PROG" "$*" >&2; }
die() {
  printf '%s: %s\n' "$PROG" "$*" >&2
  exit 1
}
usage_error() {
  printf '%s: %s (see --help)\n' "$PROG" "$*" >&2
  exit 2
}

# Runs a command, or only prints it with --dry-run.
run() {
  if [ "$DRY_RUN" = 1 ]; then
    say "would run: $*"
  else
    "$@"
  fi
}

# write_file PATH MODE: writes standard input to PATH (atomically), or only
# says so with --dry-run.
write_file() {
  if [ "$DRY_RUN" = 1 ]; then
    say "would write $1 (mode $2)"
    cat >/dev/null
    return 0
  fi
  cat >"$1.tmp.$$"
  chmod "$2" "$1.tmp.$$"
  mv -f "$1.tmp.$$" "$1"
}

# make_dir PATH MODE
make_dir() {
  run mkdir -p "$1"
  run chmod "$2" "$1"
}

while [ $# -gt 0 ]; do
  case $1 in
    --role)
      [ $# -ge 2 ] || usage_error "--role needs a value: agent or coordinator"
      ROLE=$2
      shift 2
      ;;
    --role=*) ROLE=${1#--role=}; shift ;;
    --from)
      [ $# -ge 2 ] || usage_error "--from needs a directory or a .tgz file"
      FROM=$2
      shift 2
      ;;
    --from=*) FROM=${1#--from=}; shift ;;
    --root)
      [ $# -ge 2 ] || usage_error "--root needs a directory"
      ROOT=$2
      shift 2
      ;;
    --root=*) ROOT=${1#--root=}; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage_error "unknown option \"$1\"" ;;
  esac
done

case $ROLE in
  agent | coordinator) ;;
  *) usage_error "--role must be agent or coordinator, not \"$ROLE\"" ;;
esac

if [ -n "$ROOT" ]; then
  case $ROOT in
    /*) ;;
    *) ROOT=$(pwd)/$ROOT ;;
  esac
  ROOT=${ROOT%/}
fi

OPT=$ROOT/opt/stevedore
ETC=$ROOT/etc/stevedore
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=stevedore-$ROLE.service

if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ] && [ "$DRY_RUN" = 0 ]; then
  die "installing into / needs root: run it with sudo, or with --root DIR to install into a directory"
fi

# --- The release ------------------------------------------------------------
SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
CLEANUP=
cleanup() {
  if [ -n "$CLEANUP" ]; then rm -rf "$CLEANUP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "$FROM" ]; then
  SRC=$(cd "$SCRIPT_DIR/.." && pwd)
elif [ -d "$FROM" ]; then
  SRC=$(cd "$FROM" && pwd)
elif [ -f "$FROM" ]; then
  CLEANUP=$(mktemp -d "${TMPDIR:-/tmp}/stevedore-release.XXXXXX")
  tar -xzf "$FROM" -C "$CLEANUP" || die "cannot unpack $FROM: give a .tgz made by \`npm pack\`, or a directory"
  # npm pack puts everything in package/.
  if [ -d "$CLEANUP/package" ]; then SRC=$CLEANUP/package; else SRC=$CLEANUP; fi
else
  die "--from $FROM: no such file or directory"
fi
for f in package.json package-lock.json bin/stevedore.js src proto "systemd/$UNIT"; do
  [ -e "$SRC/$f" ] || die "$SRC is not a Stevedore release: $f is missing"
done
VERSION=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$SRC/package.json" | head -n 1)
say "Installing Stevedore ${VERSION:-?} ($ROLE) from $SRC into ${ROOT:-/}"

# --- Prerequisites (warnings: each can be fixed after the install) ------------
command -v "$NPM" >/dev/null 2>&1 ||
  die "$NPM is needed to install the dependencies: install npm (apt-get install npm), or set NPM=/path/to/npm"

if [ "$ROLE" = agent ]; then
  DOCKER_SOCK=/var/run/docker.sock
  if [ ! -S "$DOCKER_SOCK" ]; then
    warn "no Docker socket at $DOCKER_SOCK: install and start Docker (apt-get install docker.io); the agent waits for it and keeps restarting until it answers"
  elif command -v docker >/dev/null 2>&1 && ! docker version >/dev/null 2>&1; then
    warn "Docker does not answer at $DOCKER_SOCK (docker version failed): start it (systemctl start docker) before the agent"
  fi
  if ! command -v nvidia-smi >/dev/null 2>&1; then
    warn "no nvidia-smi on PATH: this node will offer no GPUs. On a GPU host install the NVIDIA driver and the NVIDIA Container Toolkit, or set nvidiaSmiPath in agent.yaml"
  elif ! command -v nvidia-container-runtime-hook >/dev/null 2>&1 && ! command -v nvidia-ctk >/dev/null 2>&1; then
    warn "nvidia-smi is here but the NVIDIA Container Toolkit is not: Docker cannot give GPUs to containers until it is installed (and Docker restarted)"
  fi
fi

# --- /opt/stevedore -----------------------------------------------------------
# The new release is prepared beside the old one and swapped in at the end, so
# that a failed install leaves the running one as it was. A running agent keeps
# the code it loaded until it is restarted.
STAGE=$OPT.new
make_dir "$ROOT/opt" 0755
run rm -rf "$STAGE"
make_dir "$STAGE" 0755
# dist/ (the JavaScript build of src/, from `npm install` or `npm run build` in
# the release) is copied after src/ and its stamp touched: bin/stevedore.js runs
# it only while it is newer than every source file.
for f in package.json package-lock.json README.md bin src proto systemd docs dist; do
  if [ -e "$SRC/$f" ]; then run cp -R "$SRC/$f" "$STAGE/"; fi
done
if [ -e "$SRC/dist/BUILD_STAMP" ]; then
  run touch "$STAGE/dist/BUILD_STAMP"
else
  warn "$SRC has no dist/ (run npm run build there first): the agent runs from the TypeScript sources, with about 27 MB more memory"
fi
# Only the runtime dependencies. --ignore-scripts: the package's own `prepare`
# is for development, and no runtime dependency needs a build step; the one
# exception is `node` (Node.js 24 for the units), whose binary comes with its
# install script, hence the rebuild of that package alone.
if [ "$DRY_RUN" = 1 ]; then
  say "would run: (cd $STAGE && $NPM ci --omit=dev --ignore-scripts --no-audit --no-fund && $NPM rebuild node)"
else
  (cd "$STAGE" && "$NPM" ci --omit=dev --ignore-scripts --no-audit --no-fund && "$NPM" rebuild node) ||
    die "installing the dependencies in $STAGE failed (see npm's output above); the previous installation is unchanged"
  NODE_VERSION=$("$STAGE/node_modules/.bin/node" --version) ||
    die "$STAGE/node_modules/.bin/node does not run: the node package did not install its binary (see npm's output above)"
  say "Node.js $NODE_VERSION"
fi
if [ -e "$OPT" ]; then
  run rm -rf "$OPT.old"
  run mv "$OPT" "$OPT.old"
fi
run mv "$STAGE" "$OPT"
run rm -rf "$OPT.old"
NODE=/opt/stevedore/node_modules/.bin/node

# The `stevedore` command for operators (status, drain, logs), on Node.js 24.
make_dir "$ROOT/usr/local/bin" 0755
write_file "$ROOT/usr/local/bin/stevedore" 0755 <<EOF
#!/bin/sh
exec $NODE /opt/stevedore/bin/stevedore.js "\$@"
EOF

# --- Configuration --------------------------------------------------------------
make_dir "$ETC" 0755

if [ "$ROLE" = coordinator ]; then
  if [ -e "$ETC/coordinator.env" ]; then
    say "Keeping $ETC/coordinator.env"
  else
    write_file "$ETC/coordinator.env" 0600 <<'EOF'
# Extra flags for `stevedore coordinator` (stevedore-coordinator.service),
# split into words. See docs/operations.md.
#STEVEDORE_COORDINATOR_OPTS=--lease-seconds 30 --tls-ca /run/credentials/stevedore-coordinator.service/ca --tls-cert /run/credentials/stevedore-coordinator.service/cert --tls-key /run/credentials/stevedore-coordinator.service/key
EOF
  fi
fi

CONFIG_VALID=1
if [ "$ROLE" = agent ]; then
  # The local API socket's group: its members may run `stevedore status --agent`.
  if [ -z "$ROOT" ]; then
    if getent group stevedore >/dev/null 2>&1; then
      say "Group stevedore exists"
    else
      run groupadd --system stevedore
    fi
  elif [ -f "$ROOT/etc/group" ]; then
    if grep -q '^stevedore:' "$ROOT/etc/group"; then
      say "Group stevedore exists"
    else
      run groupadd --system --prefix "$ROOT" stevedore
    fi
  else
    say "No $ROOT/etc/group: create the group stevedore on the target host (groupadd --system stevedore)"
  fi

  if [ -e "$ETC/agent.yaml" ]; then
    say "Keeping $ETC/agent.yaml"
  else
    # 0600: it may come to hold registry passwords and S3 keys.
    write_file "$ETC/agent.yaml" 0600 <<'EOF'
# Stevedore agent configuration. Every field and its default:
# /opt/stevedore/docs/configuration.md. Unknown fields are errors.
# After a change: systemctl restart stevedore-agent (running jobs keep running).

# The coordinator, host:port. The default, 127.0.0.1:7443, only suits a
# coordinator on this host. Mutual TLS: all three PEM files, or none.
#coordinator:
#  address: coordinator.example.com:7443
#  tls:
#    ca: /etc/stevedore/pki/ca.pem
#    cert: /etc/stevedore/pki/agent.pem
#    key: /etc/stevedore/pki/agent-key.pem

# Members of this group may use the local API socket (stevedore status --agent).
socketGroup: stevedore

# The node id, the event journal and job logs. Keep it across reboots.
#stateDir: /var/lib/stevedore
# One directory per job, on a fast local disk. A path outside stateDir needs
# this script run again (it lets the sandboxed unit write there).
#workRoot: /var/lib/stevedore/jobs

# What the coordinator schedules by.
#labels:
#  zone: us-east-1a
#  instance-type: p4d.24xlarge
#  spot: "true"

# Object storage for checkpoints, inputs and outputs.
#s3:
#  endpoints:
#    default:
#      region: us-east-1
#      # Servers that reject the AWS SDK's CRC32 checksums (Cloudflare R2,
#      # Ceph RGW, older MinIO): WHEN_REQUIRED.
#      #checksumMode: WHEN_REQUIRED

# Private registries for job images.
#registries:
#  - server: registry.example.com
#    username: robot
#    password: "..."

# Spot/preemption notices: aws, gcp, azure, none, or auto (probe at start).
#preemption:
#  cloud: auto

#logLevel: info
EOF
  fi

  # The agent's own validation tells where state and jobs live; paths outside
  # /var/lib/stevedore need ReadWritePaths= in the sandboxed unit.
  STATE_DIR=/var/lib/stevedore
  WORK_ROOT=/var/lib/stevedore/jobs
  if [ "$DRY_RUN" = 1 ]; then
    say "would check $ETC/agent.yaml with the agent's own validation"
  else
    CHECK_JS='
      const { pathToFileURL } = await import("node:url");
      const [file, src] = process.argv.slice(1);
      const { loadAgentConfig } = await import(pathToFileURL(src + "/src/agent/agent-config.ts").href);
      try {
        const c = loadAgentConfig({ file, fileIsExplicit: true, env: {}, cwd: "/" });
        process.stdout.write(c.stateDir + "\n" + c.workRoot + "\n");
      } catch (err) {
        process.stderr.write((err.code ? err.code + ": " : "") + err.message + "\n");
        process.exitCode = 1;
      }'
    if PATHS=$("$OPT/node_modules/.bin/node" --input-type=module -e "$CHECK_JS" "$ETC/agent.yaml" "$OPT"); then
      STATE_DIR=$(printf '%s\n' "$PATHS" | sed -n 1p)
      WORK_ROOT=$(printf '%s\n' "$PATHS" | sed -n 2p)
      say "$ETC/agent.yaml is valid (stateDir $STATE_DIR, workRoot $WORK_ROOT)"
    else
      CONFIG_VALID=0
      warn "$ETC/agent.yaml is not valid (above): fix it, then run this script again or systemctl restart stevedore-agent"
    fi
  fi

  make_dir "$ROOT$STATE_DIR" 0700
  make_dir "$ROOT$WORK_ROOT" 0755

  RW=
  case $STATE_DIR/ in /var/lib/stevedore/*) ;; *) RW="$RW $STATE_DIR" ;; esac
  case $WORK_ROOT/ in /var/lib/stevedore/*) ;; *) RW="$RW $WORK_ROOT" ;; esac
  DROPIN_DIR=$UNIT_DIR/$UNIT.d
  DROPIN=$DROPIN_DIR/paths.conf
  if [ -n "$RW" ]; then
    make_dir "$DROPIN_DIR" 0755
    write_file "$DROPIN" 0644 <<EOF
$DROPIN_MARK from /etc/stevedore/agent.yaml: the
# state directory and work root outside /var/lib/stevedore stay writable in the
# sandbox (ProtectSystem=strict). Run the script again after changing them.
[Service]
ReadWritePaths=${RW# }
EOF
  elif [ -f "$DROPIN" ] && grep -q "^$DROPIN_MARK" "$DROPIN"; then
    run rm -f "$DROPIN"
  fi

  # Checkpoint watchers use one inotify watch per directory; the kernel's
  # default (8192 on older kernels) runs out with a few large jobs. Never lower
  # a value the host already has.
  current=$(cat /proc/sys/fs/inotify/max_user_watches 2>/dev/null || echo 0)
  [ "$current" -gt "$INOTIFY_WATCHES" ] 2>/dev/null && INOTIFY_WATCHES=$current
  current=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
  [ "$current" -gt "$INOTIFY_INSTANCES" ] 2>/dev/null && INOTIFY_INSTANCES=$current
  make_dir "$ROOT/etc/sysctl.d" 0755
  write_file "$ROOT/etc/sysctl.d/60-stevedore-inotify.conf" 0644 <<EOF
$DROPIN_MARK: the agent watches every job's checkpoint
# directory with inotify.
fs.inotify.max_user_watches = $INOTIFY_WATCHES
fs.inotify.max_user_instances = $INOTIFY_INSTANCES
EOF
  if [ -z "$ROOT" ]; then
    run sysctl -q -p /etc/sysctl.d/60-stevedore-inotify.conf ||
      warn "could not apply /etc/sysctl.d/60-stevedore-inotify.conf now (a container?); it applies at the next boot"
  fi
fi

# --- systemd ------------------------------------------------------------------
make_dir "$UNIT_DIR" 0755
if [ "$DRY_RUN" = 1 ]; then
  say "would install $UNIT_DIR/$UNIT"
else
  cp "$OPT/systemd/$UNIT" "$UNIT_DIR/$UNIT.tmp.$$"
  chmod 0644 "$UNIT_DIR/$UNIT.tmp.$$"
  mv -f "$UNIT_DIR/$UNIT.tmp.$$" "$UNIT_DIR/$UNIT"
fi

if [ -n "$ROOT" ]; then
  say "Installed under $ROOT; systemd left alone. On the target host: systemctl daemon-reload && systemctl enable --now $UNIT"
elif [ ! -d /run/systemd/system ]; then
  say "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): skipped daemon-reload and enable. Start the $ROLE by hand: $NODE /opt/stevedore/bin/stevedore.js $ROLE"
else
  run systemctl daemon-reload
  if [ "$CONFIG_VALID" = 0 ]; then
    run systemctl enable "$UNIT"
    say "Enabled $UNIT but did not start it: fix the configuration first, then systemctl restart $UNIT"
  elif systemctl is-active --quiet "$UNIT"; then
    # A restart is safe for the agent: its jobs keep running and it adopts them again.
    run systemctl enable "$UNIT"
    run systemctl restart "$UNIT"
    say "Restarted $UNIT on the new release"
  else
    run systemctl enable --now "$UNIT"
    say "Enabled and started $UNIT: journalctl -u $UNIT -f"
  fi
fi
say "Done."
