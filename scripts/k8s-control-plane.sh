#!/usr/bin/env bash
# scripts/k8s-control-plane.sh start DIR | stop DIR — a real, minimal
# Kubernetes 1.20.2 control plane on 127.0.0.1 for integration tests:
# Debian's etcd, kube-apiserver and kube-controller-manager (from
# scripts/k8s-bins.sh) running only the persistent-volume controllers, so a
# test can play an external provisioner (brickfs.io/nfs) against the real
# PV/PVC binding logic without nodes, a scheduler or a container runtime.
#
# start DIR  picks free 127.0.0.1 ports, keeps every piece of state in DIR
#            (etcd data, certs, tokens, logs, DIR/<name>.pid, DIR/env), waits
#            until the API server is ready and the controller-manager is
#            serving, and prints DIR/kubeconfig as the last line of stdout.
# stop DIR   stops exactly the processes that start recorded in DIR/*.pid.
#
# Nothing listens anywhere but 127.0.0.1 and no fixed port is used, so runs
# can go side by side. Progress and errors go to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# Stopped in this order: the clients of the API server before it, etcd last.
COMPONENTS=(kube-controller-manager kube-apiserver etcd)
START_TIMEOUT=${K8S_START_TIMEOUT:-90}  # seconds, for all three to come up
STOP_TIMEOUT=20                         # seconds per process before SIGKILL

# Messages go to a copy of stderr (fd 3) because the polling loops silence
# fd 2, and an interrupt's cleanup can run inside one of them.
exec 3>&2
log() { printf '==> %s\n' "$*" >&3; }
die() { printf 'k8s-control-plane: %s\n' "$*" >&3; exit 1; }

usage() {
  cat <<EOF
usage: $0 start DIR | stop DIR | --help

start  runs etcd, kube-apiserver and kube-controller-manager
       (--controllers=persistentvolume-binder,persistentvolume-expander,
       pvc-protection,pv-protection)
       on free 127.0.0.1 ports with all state in DIR; prints DIR/kubeconfig.
       The admin token (group system:masters) is in DIR/kubeconfig; the
       brickfs provisioner's (as ServiceAccount
       brickfs-system/brickfs-provisioner, no rights until RBAC grants
       them) in DIR/provisioner.kubeconfig; DIR/env
       has ETCD_URL, APISERVER_URL and KUBECONFIG for shell use.
stop   stops the processes recorded in DIR/*.pid (and only those).

Environment: K8S_BIN (a directory with kube-apiserver and
kube-controller-manager; default: what scripts/k8s-bins.sh prints),
K8S_START_TIMEOUT (seconds, default 90).
EOF
}

# A pid file alone could name a pid that has since been reused by an
# unrelated process. Every command line we start mentions DIR, so a live pid
# whose command line does not is not ours and is left alone.
our_pid() {  # DIR NAME -> prints the pid if it is alive and ours
  local f="$1/$2.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/" || return 1
  echo "$pid"
}

# kill -0 also succeeds on a zombie: a child of ours that died during start
# stays one until we exit, so a dead process is one that is gone or a zombie.
alive() {  # PID
  local stat state
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  state=${stat##*) }   # the state follows "(comm) ", comm may hold spaces
  state=${state%% *}
  [ -n "$state" ] && [ "$state" != Z ]
}

stop_dir() {
  local dir="$1" name pid deadline
  for name in "${COMPONENTS[@]}"; do
    if pid=$(our_pid "$dir" "$name"); then
      log "stopping $name (pid $pid)"
      kill -TERM "$pid" 2>/dev/null || true
      deadline=$(( $(date +%s) + STOP_TIMEOUT ))
      while alive "$pid" && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 0.2
      done
      if alive "$pid"; then
        log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
    rm -f "$dir/$name.pid"
  done
}

# Ports come from the kernel (bind to port 0), all held open at once so they
# are distinct, then released for the servers to take. Another process could
# grab one in between; start then sees the bind fail and retries with fresh
# ports. perl-base is essential on Debian, so this needs nothing installed.
free_ports() {  # N
  perl -MIO::Socket::INET -e '
    my @s = map { IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                        Proto => "tcp", Listen => 1, ReuseAddr => 0)
                  or die "bind: $!\n" } 1 .. $ARGV[0];
    print join(" ", map { $_->sockport } @s), "\n";' "$1"
}

# Keys and tokens are made once per DIR and kept, so a restart of the same
# DIR keeps its credentials and its etcd data stays usable. (Kubeconfigs are
# rewritten on every start: the ports change.)
make_credentials() {
  local dir="$1"
  umask 077
  if [ ! -f "$dir/sa.key" ]; then
    # Service-account tokens are signed with this key and checked with its
    # public half; 1.20 requires both flags and the issuer to be set.
    openssl genrsa -out "$dir/sa.key" 2048 2>/dev/null
    openssl rsa -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  fi
  if [ ! -f "$dir/tokens.csv" ]; then
    local admin kcm
    admin=$(openssl rand -hex 16)
    kcm=$(openssl rand -hex 16)
    # token,user,uid,"groups". The controller-manager runs every controller
    # with its own credential (no service-account credentials: that would
    # need the token controller too), so, like the admin, it is put in
    # system:masters rather than granted each controller's role by hand.
    {
      echo "$admin,admin,admin,\"system:masters\""
      echo "$kcm,system:kube-controller-manager,kube-controller-manager,\"system:masters\""
    } >"$dir/tokens.csv"
    echo "$admin" >"$dir/admin.token"
    echo "$kcm" >"$dir/kcm.token"
  fi
  if [ ! -f "$dir/provisioner.token" ]; then
    # The brickfs provisioner authenticates as its ServiceAccount would in
    # a cluster (user and groups of a service-account token), so the RBAC
    # of k8s/deploy/provisioner-rbac.yaml applies to it unchanged. A static
    # token, because this control plane runs no token controller.
    local prov
    prov=$(openssl rand -hex 16)
    echo "$prov,system:serviceaccount:brickfs-system:brickfs-provisioner,brickfs-provisioner,\"system:serviceaccounts,system:serviceaccounts:brickfs-system,system:authenticated\"" >>"$dir/tokens.csv"
    echo "$prov" >"$dir/provisioner.token"
  fi
  umask 022
}

write_kubeconfig() {  # FILE SERVER CA TOKEN
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: brickfs-test
  cluster:
    server: $2
    certificate-authority: $3
contexts:
- name: brickfs-test
  context:
    cluster: brickfs-test
    user: brickfs-test
current-context: brickfs-test
users:
- name: brickfs-test
  user:
    token: $4
EOF
  chmod 600 "$1"
}

# Fails as soon as a started process has died, instead of waiting out the
# deadline; its log tail says why.
check_alive() {  # DIR
  local name pid
  for name in "${COMPONENTS[@]}"; do
    [ -f "$1/$name.pid" ] || continue
    pid=$(cat "$1/$name.pid")
    if ! alive "$pid"; then
      log "$name exited during start; last lines of $1/$name.log:"
      tail -n 15 "$1/$name.log" >&3 || true
      return 1
    fi
  done
}

wait_for() {  # DIR DEADLINE WHAT COMMAND...
  local dir="$1" deadline="$2" what="$3"; shift 3
  until "$@" >/dev/null 2>&1; do
    check_alive "$dir" || return 1
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "timed out waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

etcd_healthy() { curl -sf "$1/health" | grep -q '"health":"true"'; }
api_ready() { [ "$(kubectl --kubeconfig "$1" get --raw /readyz 2>/dev/null)" = ok ]; }
kcm_healthy() { [ "$(curl -sf --cacert "$2" "https://127.0.0.1:$1/healthz")" = ok ]; }

# Started detached from our stdin, stdout, stderr (and its copy on fd 3), so
# a caller reading our output, as in $(k8s-control-plane.sh start DIR), is
# not kept waiting by them until they stop.
spawn() {  # DIR NAME COMMAND...
  local dir="$1" name="$2"; shift 2
  "$@" </dev/null >>"$dir/$name.log" 2>&1 3>&- &
  echo $! >"$dir/$name.pid"
}

start_once() {  # DIR BIN: starts all three and waits; non-zero if any failed
  local dir="$1" bin="$2" etcd_port peer_port api_port kcm_port
  read -r etcd_port peer_port api_port kcm_port < <(free_ports 4)
  local etcd_url="http://127.0.0.1:$etcd_port" api_url="https://127.0.0.1:$api_port"
  local deadline=$(( $(date +%s) + START_TIMEOUT ))

  log "etcd on $etcd_url"
  # A single member that listens, advertises and peers only on 127.0.0.1
  # (the defaults would take 2379/2380, shared by every run).
  spawn "$dir" etcd etcd \
    --name=brickfs-test \
    --data-dir="$dir/etcd" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
    --initial-cluster="brickfs-test=http://127.0.0.1:$peer_port"
  wait_for "$dir" "$deadline" etcd etcd_healthy "$etcd_url" || return 1

  log "kube-apiserver on $api_url"
  # --advertise-address: the default would be the host's routable address.
  # Endpoints may not hold a loopback address, so the reconciler that
  # publishes the apiserver as the `kubernetes` service is turned off.
  # The serving certificate is self-signed into --cert-dir for 127.0.0.1;
  # its file holds the signing CA too, which the kubeconfig trusts.
  # The service range is only numbers handed out in etcd: no routes exist.
  # (1.20's plain-HTTP port already defaults to off.)
  spawn "$dir" kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers="$etcd_url" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --endpoint-reconciler-type=none \
    --cert-dir="$dir/apiserver-certs" \
    --token-auth-file="$dir/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-key-file="$dir/sa.pub" \
    --service-account-signing-key-file="$dir/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24
  local ca="$dir/apiserver-certs/apiserver.crt"
  wait_for "$dir" "$deadline" "apiserver certificate" test -s "$ca" || return 1
  write_kubeconfig "$dir/kubeconfig" "$api_url" "$ca" "$(cat "$dir/admin.token")"
  write_kubeconfig "$dir/kcm.kubeconfig" "$api_url" "$ca" "$(cat "$dir/kcm.token")"
  write_kubeconfig "$dir/provisioner.kubeconfig" "$api_url" "$ca" "$(cat "$dir/provisioner.token")"
  wait_for "$dir" "$deadline" "kube-apiserver /readyz" api_ready "$dir/kubeconfig" || return 1

  log "kube-controller-manager (healthz on 127.0.0.1:$kcm_port)"
  # Only the PV/PVC controllers: they add the storage-provisioner
  # annotation for external provisioners and bind claims to volumes; the
  # protection controllers remove the finalizers the API server's
  # StorageObjectInUseProtection admission puts on every PVC and PV
  # (without them a deleted claim or PV stays Terminating forever).
  # One instance, so no leader election (it would delay the first sync).
  # --port=0 turns off the deprecated plain-HTTP port (a fixed 10252).
  # No --authentication/authorization-kubeconfig: they make it read the
  # client CA from a configmap that this API server (no client certs) never
  # writes, and it logs that failure forever. Without them its secure port
  # answers only /healthz, which is all start needs.
  spawn "$dir" kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig="$dir/kcm.kubeconfig" \
    --controllers=persistentvolume-binder,persistentvolume-expander,pvc-protection,pv-protection \
    --leader-elect=false \
    --bind-address=127.0.0.1 \
    --secure-port="$kcm_port" \
    --port=0 \
    --cert-dir="$dir/kcm-certs"
  wait_for "$dir" "$deadline" "kube-controller-manager /healthz" \
    kcm_healthy "$kcm_port" "$dir/kcm-certs/kube-controller-manager.crt" || return 1

  cat >"$dir/env" <<EOF
ETCD_URL=$etcd_url
APISERVER_URL=$api_url
KUBECONFIG=$dir/kubeconfig
EOF
}

port_clash() {  # DIR: did a failed start lose a port race?
  grep -qs 'address already in use' "$1"/*.log
}

start_dir() {
  local dir="$1" bin name running=0 attempt
  for name in "${COMPONENTS[@]}"; do
    our_pid "$dir" "$name" >/dev/null && running=$((running + 1))
  done
  if [ "$running" -eq ${#COMPONENTS[@]} ] && api_ready "$dir/kubeconfig"; then
    log "already running in $dir"
    echo "$dir/kubeconfig"
    return 0
  fi
  # Some running but not all up: starting more would leave two of a kind.
  [ "$running" -eq 0 ] || die "$dir has a control plane that is partly running or not ready; run '$0 stop $dir' first"

  command -v etcd >/dev/null 2>&1 || install_pkgs etcd-server
  command -v kubectl >/dev/null 2>&1 || install_pkgs kubernetes-client
  command -v curl >/dev/null 2>&1 || install_pkgs curl
  command -v openssl >/dev/null 2>&1 || install_pkgs openssl
  if [ -n "${K8S_BIN:-}" ]; then
    bin="$K8S_BIN"
  else
    bin=$("$HERE/k8s-bins.sh" | tail -n1)
  fi
  [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] ||
    die "no kube-apiserver/kube-controller-manager in $bin"

  make_credentials "$dir"
  # Interrupted midway, leave nothing running behind.
  trap 'stop_dir "$dir"; exit 130' INT TERM
  for attempt in 1 2 3; do
    # Fresh logs per attempt, so a port clash is judged on this one alone.
    for name in "${COMPONENTS[@]}"; do : >"$dir/$name.log"; done
    if start_once "$dir" "$bin"; then
      trap - INT TERM
      log "control plane ready; logs in $dir/*.log"
      echo "$dir/kubeconfig"
      return 0
    fi
    stop_dir "$dir"
    port_clash "$dir" && [ "$attempt" -lt 3 ] || break
    log "a port was taken between choosing and binding it; retrying"
  done
  die "control plane did not start; see $dir/*.log"
}

install_pkgs() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  log "installing $*"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >&2
}

case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  start|stop)
    [ $# -eq 2 ] || { usage >&2; exit 2; }
    if [ "$1" = start ]; then
      mkdir -p "$2"
      start_dir "$(cd "$2" && pwd)"
    else
      [ -d "$2" ] || die "no such directory: $2"
      stop_dir "$(cd "$2" && pwd)"
    fi
    ;;
  *) usage >&2; exit 2 ;;
esac
