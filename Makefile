# Outpost: one non-recursive GNU Makefile. Out-of-tree builds per variant in
# build/<variant>: debug (default), release, asan (ASan + UBSan). Targets that
# need another variant call make again with VARIANT set.
#
#   make            debug build        make release     hardened optimised build
#   make run        build, run demo    make test        deps + every test
#   make asan       tests under ASan+UBSan
#   make bench      benchmarks         make fuzz        libFuzzer targets, bounded
#   make lint       clang-tidy, cppcheck, banned functions
#   make format-check / make format    make conformance JSON Schema test suite

VARIANT ?= debug
B := build/$(VARIANT)

CORE_PKGS := libcjson wolfssl libpcre2-8 lmdb libxxhash inih libmicrohttpd libsystemd
PLUGIN_PKGS := libcurl libssh2 libpq odbc
PKGS := $(CORE_PKGS) $(PLUGIN_PKGS)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LIBS := $(PKG_LIBS) -ljq -lpaho-mqtt3as -lcrypto -lm -pthread
# outpostd links only the core's libraries; its plugins bring their own, and
# it loads the MQTT library (and OpenSSL) on first use (agent/outpostd/paho.c).
D_LIBS := $(shell pkg-config --libs $(CORE_PKGS) 2>/dev/null) -ljq -lm -pthread
# outpostd's allocator is jemalloc, linked in from Debian's libjemalloc-dev:
# every library the daemon loads allocates through it. It takes about a
# sixth of the CPU of a request off glibc's malloc (tests/bench/README.md).
# The static archive, because the shared library loads libstdc++ as well
# (a megabyte of idle RSS). Not under ASan, which brings its own allocator.
ifneq ($(VARIANT),asan)
D_ALLOC := $(shell $(CC) -print-file-name=libjemalloc_pic.a)
endif

WARN := -Wall -Wextra -Wformat=2 -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wvla -Wimplicit-fallthrough
ifdef WERROR
WARN += -Werror
endif
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS) $(WARN) -pthread -MMD -MP

ifeq ($(VARIANT),release)
V_CFLAGS := -O2 -g -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
V_LDFLAGS := -pie -Wl,-z,relro,-z,now
V_SO_LDFLAGS := -Wl,-z,relro,-z,now
else ifeq ($(VARIANT),asan)
V_CFLAGS := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -DOP_FAULTS
V_LDFLAGS := -fsanitize=address,undefined
V_SO_LDFLAGS := $(V_LDFLAGS)
else
V_CFLAGS := -O0 -g -DOP_FAULTS
V_LDFLAGS :=
V_SO_LDFLAGS :=
endif

CC ?= cc
ALL_CFLAGS = $(BASE_CFLAGS) $(V_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(V_LDFLAGS) $(LDFLAGS)

LIB_SRC := $(filter-out connectors/plugin.c,$(sort $(wildcard agent/core/*.c agent/expr/*.c \
	agent/engine/*.c agent/auth/*.c agent/store/*.c agent/daemon/*.c agent/trigger/*.c \
	agent/http/*.c agent/account/*.c connectors/*.c connectors/*/*.c control-sync/*.c)))
CTL_SRC := $(sort $(wildcard control-sync/outpostctl/*.c))
D_SRC := $(sort $(wildcard agent/outpostd/*.c))
TEST_SRC := $(sort $(wildcard tests/unit/test_*.c))
TESTLIB_SRC := $(filter-out $(TEST_SRC),$(sort $(wildcard tests/unit/*.c)))
BENCH_SRC := $(sort $(wildcard tests/bench/bench_*.c))
CONF_SRC := $(sort $(wildcard tests/conformance/*.c))

# Connectors outpostd loads on first use (connectors/registry.c): one shared
# object each in $(B)/plugins, built from position-independent objects in
# $(B)/pic. outpostctl and the tests link them in (libop.a has everything).
# PLUGIN_DIR: where outpostd looks for them (packages: /usr/lib/outpost);
# empty, the folder plugins beside the executable.
PLUGIN_DIR ?=
PLUGINS := db sftp http
# Each has connectors/plugin.c, the version outpostd checks.
PLUGIN_SRC_db := $(filter-out connectors/db/pool.c,$(sort $(wildcard connectors/db/*.c))) \
	connectors/plugin.c
PLUGIN_SRC_sftp := $(sort $(wildcard connectors/sftp/*.c)) connectors/plugin.c
PLUGIN_SRC_http := $(sort $(wildcard connectors/httpc/*.c connectors/rest/*.c \
	connectors/sap/*.c)) connectors/plugin.c
PLUGIN_SRC := $(sort $(foreach p,$(PLUGINS),$(PLUGIN_SRC_$(p))))
PLUGIN_SO := $(PLUGINS:%=$(B)/plugins/%.so)
D_CORE_OBJ := $(filter-out $(PLUGIN_SRC:%.c=$(B)/%.o) $(B)/connectors/registry.o, \
	$(LIB_SRC:%.c=$(B)/%.o)) $(B)/connectors/registry_dl.o

LIB := $(B)/libop.a
OUTPOSTCTL := $(B)/outpostctl
OUTPOSTD := $(B)/outpostd
TESTS := $(TEST_SRC:%.c=$(B)/%)
BENCHES := $(BENCH_SRC:%.c=$(B)/%)
# Load generators the bench scripts drive (not benchmarks on their own).
BENCH_TOOLS := $(B)/tests/bench/mqtt_load $(B)/tests/bench/outbox_fill
CONFORMANCE := $(if $(CONF_SRC),$(B)/tests/conformance/schema-suite)

all: $(OUTPOSTCTL) $(OUTPOSTD) $(PLUGIN_SO)

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(LIB): $(LIB_SRC:%.c=$(B)/%.o)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

$(OUTPOSTCTL): $(CTL_SRC:%.c=$(B)/%.o) $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

# Every core object, so each op_ function a plugin calls is there, exported.
# Whatever builds outpostd (tests, benchmarks, packages) builds its plugins.
$(OUTPOSTD): $(D_SRC:%.c=$(B)/%.o) $(D_CORE_OBJ) | $(PLUGIN_SO)
	@case "$(D_ALLOC)" in /* | "") ;; *) echo "outpostd links jemalloc:" \
		"install libjemalloc-dev (packaging/install-deps.sh build)" >&2; exit 1 ;; esac
	$(CC) $(ALL_LDFLAGS) -Wl,--export-dynamic-symbol='op_*' -o $@ $(filter %.o,$^) $(D_ALLOC) \
		$(D_LIBS)

$(B)/connectors/registry_dl.o: connectors/registry.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DOP_PLUGINS $(if $(PLUGIN_DIR),-DOP_PLUGIN_DIR='"$(PLUGIN_DIR)"') \
		-c $< -o $@

$(B)/pic/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -fPIC -c $< -o $@

# The agent's own functions stay undefined here: outpostd exports them.
define plugin_rule
$(B)/plugins/$(1).so: $(PLUGIN_SRC_$(1):%.c=$(B)/pic/%.o)
	@mkdir -p $$(@D)
	$$(CC) $$(V_SO_LDFLAGS) $$(LDFLAGS) -shared -Wl,--as-needed -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(PLUGINS),$(eval $(call plugin_rule,$(p))))

CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
$(B)/tests/unit/%: $(B)/tests/unit/%.o $(TESTLIB_SRC:%.c=$(B)/%.o) $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(B)/tests/bench/%: $(B)/tests/bench/%.o $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(B)/tests/conformance/schema-suite: $(CONF_SRC:%.c=$(B)/%.o) $(LIB)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

.SECONDARY:

-include $(shell find $(B) -name '*.d' 2>/dev/null)

.PHONY: all deps deps-test release run test test-only asan bench fuzz lint format \
	format-check conformance clean build-tests

# Man pages for the packages, from packaging/man/*.scd (scdoc: the pkg role of deps.txt).
MAN_PAGES := $(B)/man/outpostd.8 $(B)/man/outpostctl.1 $(B)/man/outpost.conf.5
.PHONY: man
man:
	@packaging/install-deps.sh pkg
	$(MAKE) $(MAN_PAGES)

$(B)/man/%: packaging/man/%.scd
	@mkdir -p $(@D)
	scdoc < $< > $@.tmp && mv -f $@.tmp $@

deps:
	@packaging/install-deps.sh build

deps-test:
	@packaging/install-deps.sh build test lint

release:
	$(MAKE) VARIANT=release all

run: deps
	$(MAKE) VARIANT=debug all
	@echo "outpostd starts in the foreground (Ctrl-C stops it). In another terminal:"
	@echo "  curl -s -XPOST localhost:8080/orders -H 'content-type: application/json' -d @packaging/demo/input.json"
	@echo "  curl -s localhost:9090/metrics"
	build/debug/outpostd --dev --pipelines packaging/demo/pipelines

build-tests: $(OUTPOSTCTL) $(OUTPOSTD) $(TESTS) $(CONFORMANCE)

test-only: build-tests
	tests/run.sh $(B)

test: deps-test
	$(MAKE) VARIANT=debug WERROR=1 test-only
	$(MAKE) test-packages

# The Debian package and the RPM (build/pkg/), checked by lintian and
# rpmlint; test-packages installs, upgrades and purges them (as root).
.PHONY: deb rpm deps-pkg test-packages
deps-pkg:
	@packaging/install-deps.sh build pkg
deb: deps-pkg
	packaging/deb.sh
rpm: deps-pkg
	packaging/rpm.sh
test-packages: deps-pkg
	bash tests/pkg/test_packages.sh
# The .deb under a real systemd in a container (not in make test: it needs
# systemd-nspawn and Debian's mirror).
.PHONY: test-systemd
test-systemd: deps-pkg
	$(MAKE) VARIANT=debug all
	bash tests/pkg/test_systemd.sh

asan: deps-test
	$(MAKE) VARIANT=asan WERROR=1 test-only

bench:
	@packaging/install-deps.sh build bench
	$(MAKE) VARIANT=release bench-run

# The C benchmarks, then the scripts (tests/bench/*.sh: wrk and nginx against
# outpostd) with this variant's binaries.
.PHONY: bench-run
bench-run: $(BENCHES) $(BENCH_TOOLS) $(OUTPOSTD) $(OUTPOSTCTL)
	@for b in $(BENCHES); do $$b || exit 1; done
	@for s in $(sort $(wildcard tests/bench/*.sh)); do \
		OUTPOSTD=$(OUTPOSTD) OUTPOSTCTL=$(OUTPOSTCTL) MQTT_LOAD=$(B)/tests/bench/mqtt_load \
		OUTBOX_FILL=$(B)/tests/bench/outbox_fill \
		bash $$s || exit 1; \
	done

JSON_SCHEMA_SUITE ?= ../shared/json-schema-test-suite
conformance: deps
	$(MAKE) VARIANT=release $(B:build/$(VARIANT)=build/release)/tests/conformance/schema-suite
	@if [ -d "$(JSON_SCHEMA_SUITE)" ]; then \
		build/release/tests/conformance/schema-suite $(JSON_SCHEMA_SUITE); \
	else echo "conformance: $(JSON_SCHEMA_SUITE) not found, skipped"; fi

FUZZ_SECONDS ?= 60
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
fuzz: deps-test
	@mkdir -p build/fuzz
	@for f in $(FUZZ_SRC); do \
		n=$$(basename $$f .c); \
		clang -g -O1 -std=c11 -D_GNU_SOURCE -I. $(PKG_CFLAGS) \
			-fsanitize=fuzzer,address,undefined -o build/fuzz/$$n $$f $(LIB_SRC) \
			$(LIBS) || exit 1; \
		mkdir -p build/fuzz/$$n.corpus; \
		build/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
			build/fuzz/$$n.corpus tests/fuzz/corpus/$${n#fuzz_} || exit 1; \
	done

SRC_ALL = $(shell git ls-files '*.c' '*.h' 2>/dev/null || find agent connectors control-sync tests -name '*.[ch]')
format:
	clang-format -i $(SRC_ALL)

format-check:
	@packaging/install-deps.sh lint
	clang-format --dry-run -Werror $(SRC_ALL)

lint: deps-test
	tests/lint.sh

clean:
	rm -rf build
