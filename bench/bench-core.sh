#!/bin/sh
# bench-core.sh - make bench-core: times the C core kernels and their PyTorch peers on one thread, prints rows/s and speedups.
# Usage: bench/bench-core.sh BUILD/bench/bench_core
# Environment: BENCH_MIN_TIME (seconds per timed run, default 0.2), BENCH_TRIALS
# (best of, default 3), BENCH_SIZES (default 1,256,4096,65536), BENCH_KERNELS
# (comma-separated subset), BENCH_CLOCK (thread: each process's thread CPU
# time, the default, unaffected by other load on the machine; or wall),
# PYTHON (default /usr/bin/python3: Debian's torch).
set -eu
bin=${1:?usage: bench-core.sh path/to/bench_core}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-/usr/bin/python3}
min_time=${BENCH_MIN_TIME:-0.2}
trials=${BENCH_TRIALS:-3}
sizes=${BENCH_SIZES:-1,256,4096,65536}
kernels=${BENCH_KERNELS:-}
clk=${BENCH_CLOCK:-thread}
start=$(date +%s)

# One thread everywhere: the kernels are single-threaded; torch is told so
# too (torch.set_num_threads(1)), and no BLAS or OpenMP pool may add threads.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

if ! "$py" -c 'import torch' 2>/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bench-core: PyTorch is missing; install it with: sudo apt-get install -y python3-torch" >&2
        exit 1
    fi
    echo "bench-core: installing python3-torch" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends python3-torch >&2
    py=/usr/bin/python3
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# 1. Same computation: torch's float64 outputs against the C kernels' on a
#    few rows with the same inputs, noise and draws (aborts on a mismatch).
"$bin" --check 3 >"$tmp/check.tsv"
rc=0
"$py" "$here/torch_core.py" --check "$tmp/check.tsv" >"$tmp/check.out" || rc=$?
sed 's/^check\t/check: /; s/\t/ /g' "$tmp/check.out"
if [ "$rc" -ne 0 ]; then
    echo "bench-core: torch and C disagree (or the check failed): no timings" >&2
    exit 1
fi

# 2. Timings.
kopt=""
[ -n "$kernels" ] && kopt="--kernels $kernels"
# shellcheck disable=SC2086
"$bin" --clock "$clk" --min-time "$min_time" --trials "$trials" --sizes "$sizes" $kopt >"$tmp/c.tsv"
# shellcheck disable=SC2086
"$py" "$here/torch_core.py" --clock "$clk" --min-time "$min_time" --trials "$trials" --sizes "$sizes" $kopt >"$tmp/torch.tsv"
grep '^#' "$tmp/c.tsv" "$tmp/torch.tsv" | sed 's/^[^#]*# */# /'
echo "# cpu: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1), $(getconf _NPROCESSORS_ONLN) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# 3. The table: rows/s and C / torch per kernel and size; "<-- below
#    target" marks C < 10x torch float64, or < 3x torch float32 at B >= 4096.
awk -F'\t' '
function human(x) {
    if (x >= 1e9) return sprintf("%.2fG", x / 1e9)
    if (x >= 1e6) return sprintf("%.2fM", x / 1e6)
    if (x >= 1e3) return sprintf("%.1fk", x / 1e3)
    return sprintf("%.0f", x)
}
FNR == 1 { file++ }
/^#/ { next }
file == 1 { key = $1 SUBSEP $2; c[key] = $3; if (!(key in seen)) { seen[key] = 1; order[n++] = key } }
file == 2 { t[$1 SUBSEP $2 SUBSEP $3] = $4 }
END {
    printf "%-26s %6s %10s %10s %10s %8s %8s\n", "kernel (rows/s, 1 thread)", "B", "C", "torch f64", "torch f32", "C/f64", "C/f32"
    min64 = -1; min32 = -1
    for (i = 0; i < n; i++) {
        split(order[i], kb, SUBSEP)
        k = kb[1]; b = kb[2] + 0
        t64 = t[k SUBSEP kb[2] SUBSEP "float64"]; t32 = t[k SUBSEP kb[2] SUBSEP "float32"]
        if (t64 == "" || t32 == "") { printf "bench-core: no torch figure for %s B=%s\n", k, b > "/dev/stderr"; bad = 1; continue }
        r64 = c[order[i]] / t64; r32 = c[order[i]] / t32
        if (min64 < 0 || r64 < min64) min64 = r64
        if (b >= 4096 && (min32 < 0 || r32 < min32)) min32 = r32
        mark = (r64 < 10 || (b >= 4096 && r32 < 3)) ? "  <-- below target" : ""
        if (k != last && i > 0) print ""
        last = k
        printf "%-26s %6d %10s %10s %10s %7.2fx %7.2fx%s\n", k, b, human(c[order[i]]), human(t64), human(t32), r64, r32, mark
    }
    print ""
    print "C computes standard errors for every M >= 2 estimator (entropy_score_cat, entropy_reparam_tanh,"
    print "sac_discrete_sampled, sac_continuous, reparam_normal); the torch peers compute none."
    print "Targets: C >= 10x torch float64 at every B, >= 3x torch float32 at B >= 4096."
    if (bad || min64 < 0) exit 1
    printf "elapsed\n"
    printf "min speedup vs torch float64: %.2f\n", min64
    if (min32 < 0) printf "min speedup vs torch float32 at B>=4096: n/a\n"
    else printf "min speedup vs torch float32 at B>=4096: %.2f\n", min32
}' "$tmp/c.tsv" "$tmp/torch.tsv" >"$tmp/table.txt"
# The wall time goes just above the two summary lines, which end the run.
elapsed=$(($(date +%s) - start))
sed "s/^elapsed\$/bench-core: ${elapsed} s wall time/" "$tmp/table.txt"
