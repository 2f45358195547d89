#!/bin/sh
# fuzz.sh - builds tests/fuzz_api.c with clang's libFuzzer + ASan + UBSan and fuzzes the api layer for FUZZ_SECONDS (default 60).
set -eu
cd "$(dirname "$0")/.."
# clang and its libFuzzer runtime, installed like the build's packages.
sh .ci/deps.sh clang libclang-rt-14-dev
out=build/fuzz
mkdir -p "$out/obj" "$out/corpus"
san="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -g -O1"
inc="-Icore -Iapi $(pkg-config --cflags jansson openblas sleef)"
objs=""
for f in core/*.c api/*.c; do
    o="$out/obj/$(echo "$f" | tr / _).o"
    isa=""
    case "$f" in
    *avx512*) isa="-mavx512f -mavx2 -mfma" ;;
    *avx2*) isa="-mavx2 -mfma" ;;
    esac
    clang -std=c11 -D_GNU_SOURCE -fno-math-errno $san $isa $inc -c "$f" -o "$o"
    objs="$objs $o"
done
clang++ -std=c++17 -fno-exceptions -fno-rtti $san -I"$(ls -d /usr/include/dragonbox-* | head -1)" -Iapi \
    -c api/api_dtoa.cc -o "$out/obj/api_dtoa.o"
clang $san $inc -c tests/fuzz_api.c -o "$out/obj/fuzz_api.o"
clang++ -fsanitize=fuzzer,address,undefined -o "$out/fuzz_api" "$out/obj/fuzz_api.o" $objs \
    "$out/obj/api_dtoa.o" $(pkg-config --libs jansson openblas sleef) -lpthread -lm
# The corpus starts from the committed seeds (one file per endpoint: first
# byte = endpoint index) and keeps what the fuzzer finds in build/.
cp tests/fuzz-corpus/* "$out/corpus/" 2>/dev/null || true
"$out/fuzz_api" -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 -timeout=10 \
    -rss_limit_mb=2048 -dict=tests/fuzz.dict -print_final_stats=1 "$out/corpus" 2>"$out/fuzz.log" ||
    { tail -50 "$out/fuzz.log"; echo "0 passed, 1 failed"; exit 1; }
grep -E 'stat::number_of_executed_units|stat::peak_rss_mb' "$out/fuzz.log" || true
echo "1 passed, 0 failed"
