#!/usr/bin/env bash
# The TLS Secrets of the storage cluster (k8s/deploy/storage): one per role,
# each mounted at /etc/brickfs/tls by the containers of that role. Run it
# before `kubectl apply -k k8s/deploy/storage`; see --help.
#
# Not part of the kustomization because the Secrets hold private keys: they
# are made here, from a CA kept outside the cluster and the repository, and
# never committed.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: make-tls-secrets.sh [--apply] [--namespace NS] [--bricks N] [--days N]
                           [--api-host NAME]... [--brickfs PATH] CA_DIR

Makes the Secrets the storage cluster's containers mount at /etc/brickfs/tls,
one per role, each with the keys ca.pem, ROLE.pem and ROLE.key:

  brickfs-tls-brick     brickd (the StatefulSet's pods share it); also
                        scope-keys.json, to check tenants' scope tokens
  brickfs-tls-heal      brickfs heald
  brickfs-tls-gateway   brickfs-nfs
  brickfs-tls-admin     brickfs-api and the volume Job (brickfs volume ...);
                        also api.pem and api.key, the certificate the API
                        serves HTTPS with, and scope-signing.json, the API's
                        key for scope tokens (docs/security.md, "Tenant
                        scope")

CA_DIR is the cluster CA's directory (ca.crt, ca.key, ca.pem). Without a CA
in it, one is made there (`brickfs ca init CA_DIR`). Keep it, off the
cluster: ca.key signs every certificate, and the next run of this script
(new bricks, renewal) needs it. ca.pem, the bundle every process trusts, goes
into each Secret as it is (during a CA rotation, old and new CA together:
docs/security.md). The certificates are issued into a temporary directory,
which is removed afterwards: the Secrets are their only copy.

Without --apply, prints the Namespace and the Secrets as YAML on stdout (it
holds private keys: pipe it to `kubectl apply -f -`, do not commit it).
With --apply, applies them to the current kubectl context instead.

Run again to renew the certificates (before --days run out): with --apply,
running pods see the new files within a minute or two (the kubelet's Secret
refresh) and take them without a restart.

Options:
  --apply           kubectl apply the Secrets instead of printing them
  --namespace NS    the storage cluster's namespace [brickfs-system]
  --bricks N        brick ordinals whose DNS names the brick certificate
                    carries: brickd-0 .. brickd-(N-1) [3]
  --days N          days the certificates are valid [365]
  --api-host NAME   a name or address compute clusters reach the API by,
                    put in its certificate besides brickfs-api.NS.svc
                    (repeat for several; brickfs checks the role, not the
                    name, but curl and other clients check the name)
  --brickfs PATH    the brickfs binary [brickfs, from PATH]
  -h, --help        this help
EOF
}

apply=false
namespace=brickfs-system
bricks=3
days=365
brickfs=brickfs
ca_dir=
api_hosts=()

need_value() {
    if [[ $# -lt 2 || -z $2 ]]; then
        echo "make-tls-secrets.sh: $1 needs a value (see --help)" >&2
        exit 2
    fi
}

while [[ $# -gt 0 ]]; do
    case $1 in
        -h | --help) usage; exit 0 ;;
        --apply) apply=true; shift ;;
        --namespace) need_value "$@"; namespace=$2; shift 2 ;;
        --bricks) need_value "$@"; bricks=$2; shift 2 ;;
        --days) need_value "$@"; days=$2; shift 2 ;;
        --brickfs) need_value "$@"; brickfs=$2; shift 2 ;;
        --api-host) need_value "$@"; api_hosts+=(--host "$2"); shift 2 ;;
        -*) echo "make-tls-secrets.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *)
            if [[ -n $ca_dir ]]; then
                echo "make-tls-secrets.sh: one CA_DIR only (see --help)" >&2
                exit 2
            fi
            ca_dir=$1
            shift
            ;;
    esac
done

if [[ -z $ca_dir ]]; then
    echo "make-tls-secrets.sh: no CA_DIR given (see --help)" >&2
    exit 2
fi
for n in "$bricks" "$days"; do
    if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
        echo "make-tls-secrets.sh: not a positive number: $n" >&2
        exit 2
    fi
done
for tool in "$brickfs" kubectl; do
    if ! command -v "$tool" >/dev/null; then
        echo "make-tls-secrets.sh: $tool not found" >&2
        exit 1
    fi
done

# A CA, or none yet; half of one (a lost key) is not made anew over it.
if [[ -e $ca_dir/ca.crt && -e $ca_dir/ca.key ]]; then
    echo "using the CA in $ca_dir" >&2
elif [[ -e $ca_dir/ca.crt || -e $ca_dir/ca.key ]]; then
    echo "make-tls-secrets.sh: $ca_dir has only one of ca.crt and ca.key" >&2
    exit 1
else
    "$brickfs" ca init "$ca_dir" >&2
fi
if [[ ! -f $ca_dir/ca.pem ]]; then
    echo "make-tls-secrets.sh: $ca_dir/ca.pem (the trusted bundle) is missing" >&2
    exit 1
fi

# A CA made before scope tokens existed gets their key now.
if [[ ! -f $ca_dir/scope-signing.json ]]; then
    "$brickfs" ca scope-key --ca "$ca_dir" >&2
fi

umask 077
work=$(mktemp -d)
trap 'rm -rf -- "$work"' EXIT

# The brick certificate's names: the per-ordinal Services the volume is made
# of (brickd-N.NS.svc, brickd.yaml) and the pods' own names behind the
# headless Service (brickd-N.brickd.NS.svc). brickfs clients check a brick's
# role and UUID, not its name; the names are for tools that do check them.
hosts=()
for ((i = 0; i < bricks; i++)); do
    hosts+=(--host "brickd-$i.$namespace.svc" --host "brickd-$i.brickd.$namespace.svc")
done

# The name is the role: a process finds its certificate as ROLE.pem. (What
# `ca issue` prints names the temporary files: not shown.)
"$brickfs" ca issue --ca "$ca_dir" --out "$work" --days "$days" --role brick brick "${hosts[@]}" >/dev/null
for role in heal gateway admin; do
    "$brickfs" ca issue --ca "$ca_dir" --out "$work" --days "$days" --role "$role" "$role" >/dev/null
done
"$brickfs" ca issue --ca "$ca_dir" --out "$work" --days "$days" --role api api \
    --host "brickfs-api.$namespace.svc" "${api_hosts[@]}" >/dev/null
echo "issued brick (brickd-0..$((bricks - 1))), heal, gateway, admin, api: valid $days days" >&2

# The Namespace first: a Secret cannot be made in one that does not exist
# yet, and this runs before the kustomization that makes it.
namespace_yaml() {
    kubectl create namespace "$namespace" --dry-run=client -o yaml
}

secret_yaml() {
    local role=$1
    local extra=()
    case $role in
        brick) extra=(--from-file=scope-keys.json="$ca_dir/scope-keys.json") ;;
        admin)
            extra=(--from-file=scope-signing.json="$ca_dir/scope-signing.json"
                --from-file=api.pem="$work/api.pem" --from-file=api.key="$work/api.key")
            ;;
    esac
    kubectl -n "$namespace" create secret generic "brickfs-tls-$role" \
        --from-file=ca.pem="$ca_dir/ca.pem" \
        --from-file="$role.pem=$work/$role.pem" \
        --from-file="$role.key=$work/$role.key" \
        "${extra[@]}" \
        --dry-run=client -o yaml |
        kubectl label --local -f - -o yaml app.kubernetes.io/part-of=brickfs
}

roles=(brick heal gateway admin)
if $apply; then
    namespace_yaml | kubectl apply -f -
    for role in "${roles[@]}"; do
        secret_yaml "$role" | kubectl apply -f -
    done
    echo "applied brickfs-tls-brick, -heal, -gateway and -admin in $namespace" >&2
else
    namespace_yaml
    for role in "${roles[@]}"; do
        echo ---
        secret_yaml "$role"
    done
    echo "printed the Namespace and the Secrets (private keys: do not commit them)" >&2
fi
