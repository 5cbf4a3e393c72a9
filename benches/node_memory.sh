#!/usr/bin/env bash
# Peak resident memory of two real node processes running one PSI job between them.
#
#   bash benches/node_memory.sh KEYS [ecdh|ot]      (default: 1048576 keys, ot)
#   DETACH=1 bash benches/node_memory.sh 100000000 ot   (submit and poll; for large results)
#
# Builds the release binary, writes a trial federation of two nodes (health, civil) on
# loopback in a temporary directory, gives each a dataset of KEYS people (half of them shared),
# runs `concord run psi` (a cardinality for ecdh, an intersection for ot) and prints each node's
# peak resident memory (VmHWM) before and after the job, the wall time, and the bytes per key.
set -euo pipefail
keys=${1:-1048576}
protocol=${2:-ot}
kind=intersection
[ "$protocol" = ecdh ] && kind=cardinality
cargo build --release -q -p concord-cli
bin=$(pwd)/target/release/concord
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin" federation init --nodes health,civil --out "$dir/fed" --base-port 17710 >/dev/null
people() { # FILE FIRST COUNT
  awk -v a="$2" -v n="$3" 'BEGIN { print "nin,age"; for (i = a; i < a + n; i++) printf "N%010d,%d\n", i, 20 + i % 60 }' >"$1"
}
people "$dir/health.csv" 0 "$keys"
people "$dir/civil.csv" $((keys / 2)) "$keys"
for node in health civil; do
  "$bin" node start --config "$dir/fed/$node/node.toml" >"$dir/$node.log" 2>&1 &
  echo $! >"$dir/$node.pid"
done
sleep 2
for node in health civil; do
  m="$dir/fed/$node/manager.toml"
  "$bin" dataset add --profile "$m" --id people --file "$dir/$node.csv" --key-columns nin \
    --column nin:text:internal --column age:integer:sensitive >/dev/null
  "$bin" budget set --profile "$m" --dataset people --everyone --epsilon 10 --period year >/dev/null
  "$bin" grant propose --profile "$m" --grantee operator.health.concord --dataset people \
    --recipient operator.health.concord --until 2099-01-01 --purpose benchmark \
    --security-owner benchmark --min-set-size 1 --max-runs 5 --runs-period day --epsilon 10 \
    --budget-period month >/dev/null
done
hwm() { awk '/VmHWM/ { print $2 }' "/proc/$(cat "$dir/$1.pid")/status"; }
before_h=$(hwm health) before_c=$(hwm civil)
start=$(date +%s.%N)
if [ "${DETACH:-0}" = 1 ]; then
  # Submit, then poll the job's state every 5 s (printing each node's VmHWM in kB and the
  # coordinator's data directory), instead of printing a large intersection.
  id=$("$bin" run psi --detach --profile "$dir/fed/health/operator.toml" --kind "$kind" \
    --protocol "$protocol" --left health:people:nin --right civil:people:nin --epsilon 1)
  while ! "$bin" job show --profile "$dir/fed/health/operator.toml" "$id" --json |
    grep -q '"state": "\(released\|failed\|cancelled\)"'; do
    sleep 5
    echo "$(date +%T) health $(hwm health) kB, civil $(hwm civil) kB, $(du -sm "$dir/fed/health/data" | cut -f1) MB on disk"
  done
  "$bin" job show --profile "$dir/fed/health/operator.toml" "$id"
else
  "$bin" run psi --profile "$dir/fed/health/operator.toml" --kind "$kind" --protocol "$protocol" \
    --left health:people:nin --right civil:people:nin --epsilon 1 --json >/dev/null
fi
end=$(date +%s.%N)
after_h=$(hwm health) after_c=$(hwm civil)
awk -v k="$keys" -v p="$protocol" -v t0="$start" -v t1="$end" \
  -v bh="$before_h" -v ah="$after_h" -v bc="$before_c" -v ac="$after_c" 'BEGIN {
  printf "%s, %d keys a side, %.1f s\n", p, k, t1 - t0
  printf "health (coordinator, receiver): peak %.0f MB (%.0f MB before the job), %.0f bytes per key\n", ah / 1024, bh / 1024, (ah - bh) * 1024 / k
  printf "civil (participant, sender):    peak %.0f MB (%.0f MB before the job), %.0f bytes per key\n", ac / 1024, bc / 1024, (ac - bc) * 1024 / k
}'
