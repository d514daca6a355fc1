#!/usr/bin/env bash
# scripts/fuzz.sh — builds the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer)
# and runs each for a time or a number of executions, with the allocation
# bounds fuzz/README.md states per target. Exits non-zero when any target
# found a crash, a panic, a leak, or an allocation over its bound; the
# input that did it is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: scripts/fuzz.sh [--runs N | --seconds S] [--dev] [--seed] [--cmin] [target...] [-- libFuzzer args]

Builds every fuzz target (fuzz/fuzz_targets/) and runs the given ones (all
when none is given), one after the other, each on its corpus
fuzz/corpus/<target>/. New inputs go to a scratch corpus
($FUZZ_WORK/<target>, default fuzz/target/work/<target>), not to the
repository's.

  --runs N      run each target for N executions
  --seconds S   run each target for S seconds (default: 60)
  --dev         unoptimised build (compiles faster, runs slower; CI)
  --seed        first rewrite the seed inputs from the real encoders
                (fuzz/seeds), into fuzz/corpus/
  --cmin        afterwards, fold the scratch corpus into fuzz/corpus/<target>
                and minimise it (cargo fuzz cmin); regress-* inputs stay
  --list        print the targets and their bounds, and exit
  -h, --help    this text

Env: FUZZ_TARGET_DIR (cargo's target directory for the fuzz build, default
fuzz/target), FUZZ_WORK. Installs cargo-fuzz (cargo install --locked) when
it is missing. Needs only stable Rust: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass
the -Z flags of AddressSanitizer, whose runtime ships with stable rustc.
EOF
}

# target  malloc_limit_mb  rss_limit_mb — why each bound is what it is:
# fuzz/README.md. malloc: the largest single allocation allowed; rss: the
# whole process (AddressSanitizer's quarantine and shadow included).
TARGETS="
brick_rpc        6 1024
brick_data       6 1024
rpc_record       5 1024
nfs_args         1 1024
mount_args       1 1024
portmap_args     1 1024
nlm_args         1 1024
nfs_handle       1 1024
volume_spec      1 1024
subvolume_record 1 1024
tenant_record    1 1024
tenant_token     1 1024
scope_token      1 1024
"

mode=seconds amount=60 dev=0 seed=0 cmin=0
targets=() extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) mode=runs amount=${2:?--runs needs a number}; shift 2 ;;
    --seconds) mode=seconds amount=${2:?--seconds needs a number}; shift 2 ;;
    --dev) dev=1; shift ;;
    --seed) seed=1; shift ;;
    --cmin) cmin=1; shift ;;
    --list) echo "target malloc_limit_mb rss_limit_mb"; echo "$TARGETS" | sed '/^$/d'; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$amount" in ''|*[!0-9]*) echo "--runs/--seconds take a whole number, not $amount" >&2; exit 2 ;; esac

known=$(echo "$TARGETS" | awk 'NF {print $1}')
[ ${#targets[@]} -eq 0 ] && read -r -a targets <<<"$(echo $known)"
for t in "${targets[@]}"; do
  echo "$known" | grep -qx "$t" || { echo "unknown target $t (known: $(echo $known))" >&2; exit 2; }
done

log() { printf '==> fuzz: %s\n' "$*" >&2; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz (cargo install --locked cargo-fuzz)"
  cargo install --locked cargo-fuzz
fi

# cargo-fuzz builds with -Zsanitizer=address and a few other -Z flags;
# stable rustc takes them with RUSTC_BOOTSTRAP=1 (its ASan runtime ships
# with the stable toolchain). Nothing else in the project needs this.
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
work="${FUZZ_WORK:-$CARGO_TARGET_DIR/work}"
triple=$(rustc -vV | sed -n 's/^host: //p')
profile_flag=() profile=release
[ "$dev" = 1 ] && profile_flag=(--dev) profile=debug
bin="$CARGO_TARGET_DIR/$triple/$profile"

if [ "$seed" = 1 ]; then
  log "writing seeds into fuzz/corpus/"
  cargo run --quiet --manifest-path fuzz/Cargo.toml -p brickfs-fuzz-seeds -- "$PWD/fuzz/corpus"
fi

log "cargo fuzz build ${profile_flag[*]} (target dir $CARGO_TARGET_DIR)"
(cd fuzz && cargo fuzz build "${profile_flag[@]}")

failed=() summary=()
for t in "${targets[@]}"; do
  read -r malloc rss <<<"$(echo "$TARGETS" | awk -v t="$t" '$1 == t {print $2, $3}')"
  mkdir -p "$work/$t" "fuzz/artifacts/$t" "fuzz/corpus/$t"
  if [ "$mode" = runs ]; then limit=(-runs="$amount"); else limit=(-max_total_time="$amount"); fi
  log "$t: ${limit[*]} -malloc_limit_mb=$malloc -rss_limit_mb=$rss"
  out="$work/$t.log"
  set +e
  "$bin/$t" "${limit[@]}" -malloc_limit_mb="$malloc" -rss_limit_mb="$rss" \
    -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
    "${extra[@]}" "$work/$t" "fuzz/corpus/$t" >"$out" 2>&1
  rc=$?
  set -e
  # The last status line says executions and coverage (cov: edges, ft:
  # features); the final stats give the exact execution count.
  status=$(grep -E '^#[0-9]+' "$out" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$out" | tail -1)
  line="$t: ${runs:-?} runs, ${speed:-?} exec/s, ${status:-no coverage line}"
  if [ $rc -ne 0 ]; then
    tail -40 "$out" >&2
    line="$line: FAILED (rc $rc; log $out; input in fuzz/artifacts/$t/)"
    failed+=("$t")
  fi
  summary+=("$line")
  log "$line"
  if [ "$cmin" = 1 ] && [ $rc -eq 0 ]; then
    log "$t: folding $work/$t into fuzz/corpus/$t and minimising"
    keep=$(mktemp -d)
    cp fuzz/corpus/"$t"/regress-* "$keep"/ 2>/dev/null || true
    cp -n "$work/$t"/* "fuzz/corpus/$t"/ 2>/dev/null || true
    (cd fuzz && cargo fuzz cmin "${profile_flag[@]}" "$t" "corpus/$t" -- -rss_limit_mb="$rss" -malloc_limit_mb="$malloc") \
      >"$work/$t.cmin.log" 2>&1 || { tail -20 "$work/$t.cmin.log" >&2; failed+=("$t(cmin)"); }
    cp "$keep"/* "fuzz/corpus/$t"/ 2>/dev/null || true
    rm -rf "$keep"
  fi
done

printf '%s\n' "${summary[@]}"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
