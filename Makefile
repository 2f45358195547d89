# gradserve - Makefile in Redis's manner: user CFLAGS come last, -MMD deps,
# pkg-config for every library, SANITIZE=address,undefined for sanitizer builds.

PKGS      := jansson libmicrohttpd gnutls openblas sleef
STD       := -std=c11 -D_GNU_SOURCE
WARN      := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
OPT       ?= -O2 -g
# -fno-math-errno lets sqrt() compile to one instruction; no other fast-math.
NUMERICS  := -fno-math-errno

# Each flavour builds into its own folder, so objects never mix flags.
ifdef VMATH
BUILD     ?= build/vm-$(VMATH)
endif
ifdef SANITIZE
BUILD     ?= build/san
SANFLAGS  := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
OPT       := -O1 -g
else
BUILD     ?= build
endif

# Asked of pkg-config at first use, in a recipe, not when make reads this
# file: on a fresh machine the packages (and pkg-config itself) are only
# there once $(DEPS_STAMP) has run deps.sh. Each is asked once, then kept.
PKG_CFLAGS  = $(eval PKG_CFLAGS := $$(shell pkg-config --cflags $$(PKGS) check libcurl))$(PKG_CFLAGS)
PKG_LIBS    = $(eval PKG_LIBS := $$(shell pkg-config --libs $$(PKGS)))$(PKG_LIBS)
CHECK_LIBS  = $(eval CHECK_LIBS := $$(shell pkg-config --libs check))$(CHECK_LIBS)
CURL_LIBS   = $(eval CURL_LIBS := $$(shell pkg-config --libs libcurl))$(CURL_LIBS)

FINAL_CFLAGS  = $(STD) $(WARN) $(OPT) $(NUMERICS) $(SANFLAGS) -Icore -Iapi -Iserver $(PKG_CFLAGS) -MMD -MP $(CFLAGS)
FINAL_LDFLAGS = $(SANFLAGS) $(LDFLAGS)
FINAL_LIBS    = $(PKG_LIBS) -lpthread -lm $(LIBS)

CORE_SRC   := $(wildcard core/*.c)
API_SRC    := $(wildcard api/*.c) $(wildcard api/*.cc)
SERVER_SRC := $(wildcard server/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)

CORE_OBJ   := $(CORE_SRC:%.c=$(BUILD)/%.o)
API_OBJ    := $(patsubst %.cc,$(BUILD)/%.o,$(API_SRC:%.c=$(BUILD)/%.o))
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
# test_http* suites talk to a running server: tests/run-http.sh starts one.
HTTP_SRC   := $(filter tests/test_http%,$(TEST_SRC))
HTTP_BIN   := $(HTTP_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_BIN   := $(filter-out $(HTTP_BIN),$(TEST_SRC:tests/%.c=$(BUILD)/tests/%))

LIB        := $(BUILD)/libgradserve.a
APILIB     := $(BUILD)/libgsapi.a
SERVER     := $(BUILD)/gradserve
DEPS_STAMP := build/.deps-ok

.PHONY: all deps test test-torch unit run bench bench-core bench-service clean format image image-test
all: $(LIB) $(if $(SERVER_SRC),$(SERVER))

# On a fresh machine the first build installs the Debian packages it needs.
deps: $(DEPS_STAMP)
$(DEPS_STAMP): .ci/deps.sh
	@mkdir -p $(dir $@)
	@sh .ci/deps.sh
	@touch $@

# The one file built for AVX2+FMA; gs_vmath.c calls it only on CPUs that have both.
$(BUILD)/core/gs_vmath_avx2.o: CFLAGS_ISA := -mavx2 -mfma
# Likewise the AVX-512F file, called only on CPUs with AVX-512F, AVX2 and FMA.
$(BUILD)/core/gs_vmath_avx512.o: CFLAGS_ISA := -mavx512f -mavx2 -mfma
$(BUILD)/core/gs_rng_avx512.o: CFLAGS_ISA := -mavx512f -mavx2 -mfma
$(BUILD)/core/gs_lanes_avx512.o: CFLAGS_ISA := -mavx512f -mavx2 -mfma
$(BUILD)/core/gs_lanes_cont_avx512.o: CFLAGS_ISA := -mavx512f -mavx2 -mfma
# The AVX2 base64 decoder, called only on CPUs with AVX2.
$(BUILD)/api/api_b64_avx2.o: CFLAGS_ISA := -mavx2
# The core's loops are written to vectorise (restrict, columns summed side
# by side, never reassociated): GCC vectorises them at -O3, not at -O2.
ifndef SANITIZE
$(CORE_OBJ): OPT := -O3 -g
endif
ifeq ($(VMATH),baseline)
FINAL_CFLAGS += -DGS_VM_BASELINE
endif
# make VMATH=avx2: the AVX2 path on a CPU that has AVX-512 too.
ifeq ($(VMATH),avx2)
FINAL_CFLAGS += -DGS_VM_NO_AVX512
endif

$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(FINAL_CFLAGS) $(CFLAGS_ISA) -c $< -o $@

# The one C++ file: Dragonbox's shortest double-to-text (header-only), no
# exceptions or RTTI, so no C++ runtime is needed at link time.
DRAGONBOX_CFLAGS = $(eval DRAGONBOX_CFLAGS := -I$$(firstword $$(wildcard /usr/include/dragonbox-*)))$(DRAGONBOX_CFLAGS)
$(BUILD)/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) -std=c++17 -O2 -g -Wall -Wextra -fno-exceptions -fno-rtti $(SANFLAGS) $(DRAGONBOX_CFLAGS) -Iapi -MMD -MP $(CXXFLAGS) -c $< -o $@

# gradserve_build_info names the commit built; main.o is rebuilt when it changes.
GS_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(BUILD)/server/main.o: FINAL_CFLAGS += -DGS_COMMIT='"$(GS_COMMIT)"'
$(BUILD)/server/main.o: $(BUILD)/.commit
$(BUILD)/.commit: FORCE
	@mkdir -p $(dir $@)
	@echo '$(GS_COMMIT)' | cmp -s - $@ || echo '$(GS_COMMIT)' > $@
.PHONY: FORCE
FORCE:

$(LIB): $(CORE_OBJ)
	$(AR) rcs $@ $^

$(APILIB): $(API_OBJ)
	$(AR) rcs $@ $^

$(SERVER): $(SERVER_OBJ) $(APILIB) $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

# Core suites link the core alone; api and HTTP suites also the api layer
# (and libcurl, the HTTP client of the integration suite).
$(BUILD)/tests/test_api_%: $(BUILD)/tests/test_api_%.o $(APILIB) $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(FINAL_LIBS)

# A static pattern over the list: a pattern rule's % cannot match the empty
# stem, so "test_http%" would miss tests/test_http.c itself.
$(HTTP_BIN): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(APILIB) $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(CURL_LIBS) $(FINAL_LIBS)

# The server unit suite links the server's modules (all but main).
$(BUILD)/tests/test_srv: $(BUILD)/tests/test_srv.o $(filter-out %/main.o,$(SERVER_OBJ)) $(APILIB) $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(FINAL_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(FINAL_LIBS)

# Every unit suite, then the HTTP tests against a server started here.
unit: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; CK_DEFAULT_TIMEOUT=120 $$t; done

test: unit $(if $(SERVER_SRC),$(SERVER)) $(HTTP_BIN)
	@if [ -x tests/run-http.sh ] && [ -n "$(SERVER_SRC)" ]; then BUILD=$(BUILD) tests/run-http.sh; fi
	@# The spec and the manifests do not depend on the build: check them once, in the plain run.
	@if [ -z "$(SANITIZE)" ]; then sh tests/openapi-lint.sh; fi
	@if [ -z "$(SANITIZE)" ]; then sh tests/k8s-validate.sh; fi

# make image: the container image (docker/Dockerfile) with podman, the base
# image made locally when missing; make image-test also runs it, drains it,
# and fails one of 3 replicas behind nginx under load (tests/image-test.sh).
IMAGE ?= gradserve:latest
image:
	sh docker/podman-build.sh $(IMAGE)

image-test: image
	sh tests/image-test.sh $(IMAGE)

run: $(SERVER)
	$(SERVER) --host 127.0.0.1 --port 8080

# make bench: the core kernels against PyTorch, then the HTTP service against
# a Flask + PyTorch service and a bare libmicrohttpd server (the ceiling).
bench: bench-core bench-service

bench-service: $(SERVER) $(BUILD)/bench/bare_mhd $(BUILD)/bench/parse_floor
	sh bench/bench-service.sh $(SERVER) $(BUILD)/bench/bare_mhd

$(BUILD)/bench/bare_mhd: $(BUILD)/bench/bare_mhd.o
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

$(BUILD)/bench/parse_floor: $(BUILD)/bench/parse_floor.o $(BUILD)/api/api_arena.o
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

bench-core: $(BUILD)/bench/bench_core
	sh bench/bench-core.sh $(BUILD)/bench/bench_core

# Every endpoint over HTTP against PyTorch float64 autograd (installs python3-torch as root).
test-torch: $(SERVER)
	sh tests/torch-check.sh $(SERVER)

$(BUILD)/bench/bench_core: $(BUILD)/bench/bench_core.o $(LIB)
	$(CC) $(FINAL_LDFLAGS) -o $@ $^ $(FINAL_LIBS)

clean:
	rm -rf build

format:
	clang-format -i core/*.[ch] api/*.[ch] server/*.[ch] tests/*.c bench/*.c

-include $(shell find build -name '*.d' 2>/dev/null)
