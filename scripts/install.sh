#!/bin/sh
# Installs Stevedore on a Linux host: the package in /opt/stevedore, a systemd
# unit, (agent) /etc/stevedore/agent.yaml, the state directory and the local
# API group, (coordinator) the CA, the coordinator's certificate and the join
# secret in /etc/stevedore/pki. Safe to run again: an upgrade replaces
# /opt/stevedore and the unit, and never touches an existing configuration,
# certificate, key or secret.
#
#   sh scripts/install.sh [--role agent|coordinator] [--from DIR|FILE.tgz]
#                         [--coordinator-host NAME[,NAME...]]
#                         [--root DIR] [--dry-run]
#
# docs/operations.md describes what it does and how to do the same by hand.
set -eu

PROG=install.sh
ROLE=agent
FROM=
ROOT=${STEVEDORE_ROOT:-}
DRY_RUN=0
COORDINATOR_HOSTS=
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
  --coordinator-host NAME[,NAME...]
                            coordinator: the host names and IP addresses agents
                            and operators dial it by, for its certificate
                            (default: hostname -f, the host's addresses and
                            127.0.0.1)
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
# says so with --dry-run. The file is never readable by others on its way.
write_file() {
  if [ "$DRY_RUN" = 1 ]; then
    say "would write $1 (mode $2)"
    cat >/dev/null
    return 0
  fi
  (umask 077 && cat >"$1.tmp.$$")
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
    --coordinator-host)
      [ $# -ge 2 ] || usage_error "--coordinator-host needs host names or IP addresses, such as coord.example.com,10.0.0.5"
      COORDINATOR_HOSTS=$2
      shift 2
      ;;
    --coordinator-host=*) COORDINATOR_HOSTS=${1#--coordinator-host=}; shift ;;
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
if [ -n "$COORDINATOR_HOSTS" ] && [ "$ROLE" != coordinator ]; then
  usage_error "--coordinator-host is for --role coordinator: an agent's certificate comes from the coordinator host (stevedore certs node)"
fi

if [ -n "$ROOT" ]; then
  case $ROOT in
    /*) ;;
    *) ROOT=$(pwd)/$ROOT ;;
  esac
  ROOT=${ROOT%/}
fi

OPT=$ROOT/opt/stevedore
ETC=$ROOT/etc/stevedore
# Certificates, keys, the join secret and a node's join token. PKI is where
# this script writes them; PKI_ON_HOST is the same directory as the units and
# agent.yaml name it.
PKI=$ETC/pki
PKI_ON_HOST=/etc/stevedore/pki
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

# `stevedore ARGS...` of the installed release, its output left out (this
# script says what it made), or only printed with --dry-run.
stevedore_cli() {
  if [ "$DRY_RUN" = 1 ]; then
    say "would run: stevedore $*"
  else
    "$OPT/node_modules/.bin/node" "$OPT/bin/stevedore.js" "$@" >/dev/null
  fi
}

# The host names and addresses for the coordinator's certificate: its fully
# qualified name, its addresses (hostname -I leaves out loopback and IPv6
# link-local ones) and 127.0.0.1 (the CLI's default address), comma-separated.
default_coordinator_hosts() {
  {
    hostname -f 2>/dev/null || hostname 2>/dev/null || true
    for ip in $(hostname -I 2>/dev/null || true); do printf '%s\n' "$ip"; done
    printf '127.0.0.1\n'
  } | awk 'NF && !seen[$1]++ { printf "%s%s", sep, $1; sep = "," }'
}

# A new join secret: 32 random bytes, as 64 hex digits.
new_join_secret() {
  dd if=/dev/urandom bs=32 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n'
  printf '\n'
}

# --- Configuration --------------------------------------------------------------
make_dir "$ETC" 0755
# 0700: root's alone (keys and secrets are 0600 inside it as well).
if [ ! -d "$PKI" ]; then make_dir "$PKI" 0700; fi

# Why the unit must not start yet (empty: it may).
NOT_READY=

if [ "$ROLE" = coordinator ]; then
  if [ -e "$ETC/coordinator.env" ]; then
    say "Keeping $ETC/coordinator.env"
  else
    write_file "$ETC/coordinator.env" 0600 <<'EOF'
# Extra flags for `stevedore coordinator` (stevedore-coordinator.service),
# split into words; they come after the unit's own and win. TLS is on: the
# unit hands /etc/stevedore/pki/ca.pem, coordinator.pem, coordinator-key.pem
# and join-secret to the coordinator. See docs/operations.md.
#STEVEDORE_COORDINATOR_OPTS=--lease-seconds 30
EOF
  fi

  # The PKI: a CA, the coordinator's certificate, the join secret. Whatever
  # exists is kept: a new CA or secret would lock out every node.
  MADE_CA=0
  if [ -e "$PKI/ca.pem" ] || [ -e "$PKI/ca-key.pem" ]; then
    say "Keeping the CA in $PKI"
  else
    stevedore_cli certs ca --out "$PKI" ||
      die "making the CA in $PKI failed (above); run this script again once the cause is fixed"
    MADE_CA=1
    say "Made a CA in $PKI: ca.pem, ca-key.pem (mode 0600) and the join secret join-secret (mode 0600)"
  fi
  if [ "$MADE_CA" = 1 ]; then
    :
  elif [ -e "$PKI/join-secret" ]; then
    say "Keeping the join secret $PKI/join-secret"
  else
    new_join_secret | write_file "$PKI/join-secret" 0600
    say "Made the join secret $PKI/join-secret (mode 0600)"
  fi
  if [ -e "$PKI/coordinator.pem" ] || [ -e "$PKI/coordinator-key.pem" ]; then
    say "Keeping the coordinator's certificate in $PKI"
  elif [ ! -e "$PKI/ca-key.pem" ] && [ "$MADE_CA" = 0 ]; then
    warn "no coordinator certificate in $PKI, and no CA key here to make one: make it where the CA key is (stevedore certs coordinator --ca DIR --host NAME[,IP...] --out DIR) and copy coordinator.pem and coordinator-key.pem (mode 0600) into $PKI_ON_HOST"
  else
    HOSTS=${COORDINATOR_HOSTS:-$(default_coordinator_hosts)}
    stevedore_cli certs coordinator --ca "$PKI" --host "$HOSTS" --out "$PKI" ||
      die "making the coordinator's certificate for $HOSTS failed (above): name the hosts agents dial with --coordinator-host NAME[,IP...] and run this script again"
    say "Made the coordinator's certificate $PKI/coordinator.pem for $HOSTS (key coordinator-key.pem, mode 0600)"
  fi
  if [ "$DRY_RUN" = 0 ]; then
    for f in ca.pem coordinator.pem coordinator-key.pem join-secret; do
      if [ ! -e "$PKI/$f" ]; then
        warn "$PKI/$f is missing: the coordinator refuses to start without it (status=243/CREDENTIALS)"
        NOT_READY="put ca.pem, coordinator.pem, coordinator-key.pem and join-secret into $PKI_ON_HOST first"
      fi
    done
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

# The coordinator, host:port (the default, 127.0.0.1:7443, only suits a
# coordinator on this host), and mutual TLS with it: this node's certificate
# and join token, the four files `stevedore certs node --ca /etc/stevedore/pki
# --out DIR` writes on the coordinator host, copied into /etc/stevedore/pki
# here. The agent refuses plaintext (insecure: true is for a lab only).
coordinator:
  #address: coordinator.example.com:7443
  tls:
    ca: /etc/stevedore/pki/ca.pem
    cert: /etc/stevedore/pki/node.pem
    key: /etc/stevedore/pki/node-key.pem
  joinTokenFile: /etc/stevedore/pki/join-token

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
  # A configuration whose only problem is that the node's certificate, key,
  # CA or join token are not there yet is valid: it waits for its files. The
  # check prints stateDir, workRoot and "missing PATH" for each such file
  # (looked up under --root).
  if [ "$DRY_RUN" = 1 ]; then
    say "would check $ETC/agent.yaml with the agent's own validation"
  else
    CHECK_JS='
      const fs = await import("node:fs");
      const os = await import("node:os");
      const path = await import("node:path");
      const { pathToFileURL } = await import("node:url");
      const { createRequire } = await import("node:module");
      const [file, src, root] = process.argv.slice(1);
      const { loadAgentConfig } = await import(pathToFileURL(src + "/src/agent/agent-config.ts").href);
      const load = (f) => loadAgentConfig({ file: f, fileIsExplicit: true, env: {}, cwd: "/" });
      const fail = (err, shown) => {
        process.stderr.write((err.code ? err.code + ": " : "") + err.message.split(shown).join(file) + "\n");
        process.exitCode = 1;
      };
      const FILE_MISSING = /^  coordinator\.(tls\.(ca|cert|key)|joinTokenFile): cannot read .* \(ENOENT\): /;
      let config;
      const missing = [];
      try {
        config = load(file);
      } catch (err) {
        const problems = err.code === "CONFIG_INVALID" ? err.message.split("\n").slice(1) : [];
        if (problems.length === 0 || !problems.every((l) => FILE_MISSING.test(l))) {
          fail(err, file);
        } else {
          // The rest of the file, checked without those files.
          const yaml = createRequire(src + "/package.json")("yaml");
          const doc = yaml.parse(fs.readFileSync(file, "utf8"));
          const c = doc.coordinator;
          const named = [c.tls?.ca, c.tls?.cert, c.tls?.key, c.joinTokenFile].filter((p) => typeof p === "string");
          delete c.tls;
          delete c.joinTokenFile;
          delete c.joinToken;
          const dir = fs.mkdtempSync(path.join(os.tmpdir(), "stevedore-check-"));
          const copy = path.join(dir, "agent.yaml");
          try {
            fs.writeFileSync(copy, yaml.stringify(doc), { mode: 0o600 });
            config = load(copy);
            for (const p of named.map((p) => path.resolve("/", p))) if (!fs.existsSync(root + p)) missing.push(p);
          } catch (err2) {
            fail(err2, copy);
          } finally {
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }
      }
      if (config) process.stdout.write([config.stateDir, config.workRoot, ...missing.map((p) => "missing " + p)].join("\n") + "\n");'
    if CHECKED=$("$OPT/node_modules/.bin/node" --input-type=module -e "$CHECK_JS" "$ETC/agent.yaml" "$OPT" "$ROOT"); then
      STATE_DIR=$(printf '%s\n' "$CHECKED" | sed -n 1p)
      WORK_ROOT=$(printf '%s\n' "$CHECKED" | sed -n 2p)
      MISSING=$(printf '%s\n' "$CHECKED" | sed -n 's/^missing /  /p')
      say "$ETC/agent.yaml is valid (stateDir $STATE_DIR, workRoot $WORK_ROOT)"
      if [ -n "$MISSING" ]; then
        warn "the agent cannot start yet: its certificate and join token are missing (below)"
        say "This node's certificate and join token are not here yet:"
        say "$MISSING"
        say "Make them on the coordinator host, where $PKI_ON_HOST holds the CA (a new node id, or the one to keep):"
        say "  stevedore certs node [NODE_ID] --ca $PKI_ON_HOST --out ./NODE"
        say "copy the four files it writes (ca.pem, node.pem, node-key.pem, join-token) into $PKI_ON_HOST on this host,"
        say "keeping node-key.pem and join-token mode 0600, set coordinator.address in /etc/stevedore/agent.yaml,"
        say "then: systemctl start stevedore-agent"
        NOT_READY="copy its certificate and join token first (above)"
      fi
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

if [ -n "$ROOT" ] && [ -n "$NOT_READY" ]; then
  say "Installed under $ROOT; systemd left alone. On the target host: systemctl daemon-reload && systemctl enable $UNIT; $NOT_READY, then systemctl start $UNIT"
elif [ -n "$ROOT" ]; then
  say "Installed under $ROOT; systemd left alone. On the target host: systemctl daemon-reload && systemctl enable --now $UNIT"
elif [ ! -d /run/systemd/system ]; then
  say "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): skipped daemon-reload and enable. Start the $ROLE by hand: $NODE /opt/stevedore/bin/stevedore.js $ROLE"
else
  run systemctl daemon-reload
  if [ "$CONFIG_VALID" = 0 ]; then
    run systemctl enable "$UNIT"
    say "Enabled $UNIT but did not start it: fix the configuration first, then systemctl restart $UNIT"
  elif [ -n "$NOT_READY" ]; then
    run systemctl enable "$UNIT"
    say "Enabled $UNIT but did not start it: $NOT_READY, then systemctl start $UNIT"
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
if [ "$ROLE" = coordinator ]; then
  cat <<EOF
Next steps, on this host (docs/operations.md, "Install a fleet"):
  Each node: its certificate and join token, then copy the four files
  (ca.pem, node.pem, node-key.pem, join-token) into $PKI_ON_HOST on the node
  and run this script there:
    stevedore certs node [NODE_ID] --ca $PKI_ON_HOST --out ./NODE
  A node's join token again: stevedore certs token NODE_ID --ca $PKI_ON_HOST
  Each operator: a certificate in ~/.config/stevedore/tls, where the CLI looks
  (--out DIR and \$STEVEDORE_TLS_DIR=DIR for another place):
    stevedore certs operator NAME --ca $PKI_ON_HOST
  Keep $PKI_ON_HOST/ca-key.pem and join-secret secret: whoever holds them can
  make nodes and operators.
EOF
fi
say "Done."
