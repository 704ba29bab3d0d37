/*
 * The jq runtime: libjq 1.6 behind op_jq_compile/op_jq_run. A program is
 * compiled once at load to validate it; each thread that runs it compiles its
 * own jq_state from the same text (libjq cannot share bytecode, and a jq_state
 * and the jv values in it use non-atomic reference counts) and keeps it in a
 * per-thread cache found through a pthread key. Every op_jq has an id that is
 * never reused, and a registry of the states compiled from it, so op_jq_free
 * tears them all down wherever they were made and a later op_jq at the same
 * address never meets a stale state.
 *
 * A program inside the subset of jq_fast.c also has a fast form, which
 * op_jq_run tries first; it answers without libjq or any jq_state, or gives
 * up and leaves the run to libjq.
 *
 * A program whose text hashes into the known set (texts that compiled before,
 * with this libjq) is accepted without a compile and has no spare state; nor
 * has any program when op_jq_keep_validated(false) (the daemon).
 *
 * Locks: reg_lock guards the registries (op_jq.states, slot.owner and the
 * registry links); a thread's cache list and the id of a
 * slot are touched only by that thread, so the run path takes no lock on a
 * cache hit. compile_lock serialises libjq compiles, which read $HOME, stat
 * and open files. known_lock guards the known set; none is taken inside it.
 *
 * The text each state compiles is a one-line prelude followed by the user's
 * program: the prelude shadows the builtins an agent must not expose and binds
 * $ENV, $globals and $metadata from the input array [message, globals,
 * metadata]. It has no newline, so jq's line numbers stay the user's.
 *
 * libjq 1.6 defects worked around here (evidence in README.md): jq_init leaves
 * the nomem handler and input callback uninitialised (compile_locked sets
 * them); jq_reset double-frees a halt_error message (unwind); oniguruma
 * initialises itself unlocked on first use (warm_regex_locked).
 *
 * Conversion between cJSON and jv walks both trees directly, bounded in depth
 * and output size. Every jv handed to a jv_* function is consumed; the few
 * that are not (object iteration, jv_copy) are noted where used.
 */
#define OP_LOG_MODULE "jq"

#include "connectors/transform/jq.h"

#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <jq.h>
#include <jv.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "agent/core/alloc.h"
#include "agent/core/clock.h"
#include "agent/core/fault.h"
#include "agent/core/log.h"
#include "connectors/transform/jq_fast.h"

/*
 * Prepended to every program, on one line. mktime is computed here because
 * Debian's libjq 1.6 implements it as mktime(3) plus tm_gmtoff, which is an
 * hour off during daylight saving time whenever TZ is not UTC; fromdate and
 * fromdateiso8601 are redefined so that they use this mktime.
 */
#define PRELUDE                                                                                 \
	"def env: {}; "                                                                         \
	"def input: error(\"input is not available in transform steps\"); "                     \
	"def inputs: error(\"inputs is not available in transform steps\"); "                   \
	"def modulemeta: error(\"modulemeta is not available in transform steps\"); "           \
	"def stderr: debug; "                                                                   \
	"def mktime: if type != \"array\" or length < 6 "                                       \
	"then error(\"mktime requires array of 6 numbers\") "                                   \
	"elif (.[0:8] | length < 8 or any(.[]; type != \"number\")) "                           \
	"then error(\"mktime requires parsed datetime inputs\") "                               \
	"else (.[1] | trunc) as $mo | (($mo / 12) | floor) as $yc "                             \
	"| ((.[0] | trunc) + $yc) as $y | ($mo - 12 * $yc + 1) as $m "                          \
	"| ($y - (if $m <= 2 then 1 else 0 end)) as $ya | (($ya / 400) | floor) as $era "       \
	"| ($ya - 400 * $era) as $yoe "                                                         \
	"| (((153 * (if $m > 2 then $m - 3 else $m + 9 end) + 2) / 5) | floor) as $doy "        \
	"| ($era * 146097 + $yoe * 365 + (($yoe / 4) | floor) - (($yoe / 100) | floor) + $doy " \
	"- 719468 + (.[2] | trunc) - 1) * 86400 + (.[3] | trunc) * 3600 + (.[4] | trunc) * 60 " \
	"+ (.[5] | trunc) end; "                                                                \
	"def fromdateiso8601: strptime(\"%Y-%m-%dT%H:%M:%SZ\") | mktime; "                      \
	"def fromdate: fromdateiso8601; "                                                       \
	"{} as $ENV | .[1] as $globals | .[2] as $metadata | .[0] | "

/* A slot: one jq_state compiled from one op_jq, living in one thread's cache. */
struct slot {
	uint64_t id;         /* of the op_jq it was compiled from; never changes */
	jq_state *jq;        /* NULL once op_jq_free tore it down */
	struct op_jq *owner; /* NULL once detached from the registry; reg_lock */
	struct slot *onext;  /* owner's registry; reg_lock */
	struct slot *oprev;
	struct slot *tnext; /* thread's cache, most recently used first */
};

struct tcache {
	struct slot *head;
};

struct op_jq {
	uint64_t id;
	char *text; /* PRELUDE + program */
	size_t output_max;
	bool uses_globals;
	bool uses_metadata;
	struct op_jqf *fast;       /* the fast path's form of the program, or NULL */
	struct slot *states;       /* registry of every thread's states; reg_lock */
	_Atomic(jq_state *) spare; /* the state op_jq_compile validated, until a runner takes it */
};

/* One entry of the known set: XXH3-128 of the library identity and text. */
struct known_hash {
	uint8_t b[OP_JQ_KNOWN_SIZE];
};

/* The caller's error buffer, filled by appending and always NUL-terminated. */
struct msgbuf {
	char *p;
	size_t cap;
	size_t len;
};

static atomic_bool fast_on = true;
static _Thread_local uint64_t fast_runs;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t compile_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t last_id;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t tkey;
static bool key_ok;

static void msg_init(struct msgbuf *mb, char *p, size_t cap)
{
	mb->p = p;
	mb->cap = p != NULL ? cap : 0;
	mb->len = 0;
	if (mb->cap)
		p[0] = '\0';
}

static void msg_add(struct msgbuf *mb, const char *s, size_t n)
{
	if (mb->cap == 0 || mb->len + 1 >= mb->cap)
		return;
	size_t room = mb->cap - 1 - mb->len;
	if (n > room)
		n = room;
	memcpy(mb->p + mb->len, s, n);
	mb->len += n;
	mb->p[mb->len] = '\0';
}

static void msg_vaddf(struct msgbuf *mb, const char *fmt, va_list ap) OP_PRINTF(2, 0);
static void msg_vaddf(struct msgbuf *mb, const char *fmt, va_list ap)
{
	if (mb->cap == 0 || mb->len + 1 >= mb->cap)
		return;
	int n = vsnprintf(mb->p + mb->len, mb->cap - mb->len, fmt, ap);
	if (n < 0)
		return;
	mb->len += (size_t)n < mb->cap - mb->len ? (size_t)n : mb->cap - mb->len - 1;
}

/* Replaces the message with fmt. */
static void msg_setf(struct msgbuf *mb, const char *fmt, ...) OP_PRINTF(2, 3);
static void msg_setf(struct msgbuf *mb, const char *fmt, ...)
{
	va_list ap;
	mb->len = 0;
	if (mb->cap)
		mb->p[0] = '\0';
	va_start(ap, fmt);
	msg_vaddf(mb, fmt, ap);
	va_end(ap);
}

/*
 * Replaces the message with fmt, ... and evaluates to e: the one way errors
 * are set. A macro so that the class returned is visible at each call (the
 * analyzer does not follow variadic calls, so through a function it assumed
 * `return fail(...)` could return OP_OK).
 */
#define fail(mb, e, ...) (msg_setf((mb), __VA_ARGS__), (e))

/*
 * Appends one of jq's compile messages, removing the prelude from the source
 * line jq echoes and the padding jq puts after it.
 */
static void msg_add_jq(struct msgbuf *mb, const char *s, size_t n)
{
	static const char prelude[] = PRELUDE;
	const char *end = s + n;
	while (end > s && end[-1] == '\n')
		end--;
	if (mb->len)
		msg_add(mb, "\n", 1);
	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *le = nl ? nl : end;
		const char *ls = s;
		if ((size_t)(le - ls) >= sizeof(prelude) - 1 &&
		    memcmp(ls, prelude, sizeof(prelude) - 1) == 0)
			ls += sizeof(prelude) - 1;
		const char *te = le;
		while (te > ls && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		msg_add(mb, ls, (size_t)(te - ls));
		if (nl == NULL)
			break;
		msg_add(mb, "\n", 1);
		s = nl + 1;
	}
}

/* jq_msg_cb collecting compile messages into a msgbuf. */
static void collect_cb(void *ud, jv m)
{
	struct msgbuf *mb = ud;
	if (jv_get_kind(m) != JV_KIND_STRING)
		m = jv_dump_string(m, 0);
	msg_add_jq(mb, jv_string_value(m), (size_t)jv_string_length_bytes(jv_copy(m)));
	jv_free(m);
}

/* jq_msg_cb for states that are compiled: libjq's default prints to stderr. */
static void drop_cb(void *ud, jv m)
{
	(void)ud;
	jv_free(m);
}

/* `debug` and `stderr`: the value goes to the debug log, cut short. */
static void debug_cb(void *ud, jv v)
{
	(void)ud;
	if (!op_log_enabled(OP_LOG_DEBUG)) {
		jv_free(v);
		return;
	}
	char buf[256];
	jv_dump_string_trunc(v, buf, sizeof(buf));
	const char *exec = op_log_exec_id();
	OP_LOGD("jq debug exec=%s: %s", exec ? exec : "-", buf);
}

/*
 * Every compile in libjq 1.6 reads $HOME/.jq, if it opens, as a library bound
 * before the program (it may redefine `map`): an strace of Debian's build
 * shows openat("$HOME/.jq") and no other probe. Refuse to compile while
 * anything but a directory is there (a FIFO would also block the open); a
 * directory opens but reads nothing, and libjq ignores it. compile_lock held.
 */
static op_err check_home_jq(struct msgbuf *mb)
{
	const char *home = getenv("HOME");
	if (home == NULL || home[0] == '\0')
		return OP_OK;
	char path[PATH_MAX];
	int n = snprintf(path, sizeof(path), "%s/.jq", home);
	struct stat st;
	if (n < 0 || (size_t)n >= sizeof(path))
		return fail(mb, OP_ECONFIG, "HOME is longer than %d bytes", PATH_MAX - 5);
	if (stat(path, &st) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return OP_OK;
		/* libjq's open could still succeed where stat did not (a race). */
		return fail(mb, OP_ECONFIG, "cannot check %s, which libjq would load: %s", path,
		            errno == EACCES ? "permission denied" : "stat failed");
	}
	if (S_ISDIR(st.st_mode))
		return OP_OK;
	return fail(mb, OP_ECONFIG,
	            "%s exists: libjq would load it into every jq program; remove it or run the "
	            "agent with a HOME that has no .jq file",
	            path);
}

/* `input` and `inputs` are shadowed by the prelude; this is the net under
 * it. libjq 1.6's jq_init leaves the input callback uninitialised (see
 * README.md), and `input_filename`/`input_line_number` compare it. */
static jv no_input_cb(jq_state *jq, void *ud)
{
	(void)jq;
	(void)ud;
	return jv_invalid_with_msg(jv_string("input is not available in transform steps"));
}

/*
 * Compiles text into a new jq_state whose callbacks never write to stdio.
 * OP_ECONFIG with jq's messages, OP_ENOMEM. compile_lock held and $HOME
 * checked.
 */
static atomic_uint_fast64_t ncompiles;

uint64_t op_jq_compiles(void)
{
	return atomic_load(&ncompiles);
}

static op_err compile_locked(const char *text, jq_state **out, struct msgbuf *mb)
{
	*out = NULL;
	jq_state *jq = jq_init();
	if (jq == NULL)
		return fail(mb, OP_ENOMEM, "out of memory creating a jq state");
	/* Debian's libjq 1.6 jq_init leaves these fields uninitialised; jq_next and
	 * jq_compile_args install the nomem handler from them on every call. */
	jq_set_nomem_handler(jq, NULL, NULL);
	jq_set_input_cb(jq, no_input_cb, NULL);
	jq_set_debug_cb(jq, debug_cb, NULL);
	mb->len = 0;
	if (mb->cap)
		mb->p[0] = '\0';
	jq_set_error_cb(jq, collect_cb, mb);
	/* Without a library path, libjq 1.6 asserts (aborts) on `import`. The
	 * prelude makes any import in the user's text a syntax error anyway. */
	jq_set_attr(jq, jv_string("JQ_LIBRARY_PATH"), jv_array());
	/* An object: the array form goes through args2obj, which double-frees in
	 * libjq builds without the GHSA-gf4g-95wj-4q4r fix. */
	int ok = jq_compile_args(jq, text, jv_object());
	jq_set_error_cb(jq, drop_cb, NULL);
	if (!ok) {
		if (mb->len == 0)
			msg_add(mb, "jq program does not compile", 27);
		jq_teardown(&jq);
		return OP_ECONFIG;
	}
	*out = jq;
	return OP_OK;
}

/*
 * Oniguruma (jq's regex library) initialises itself on the first regex
 * compiled (onig_reg_init tests and sets a plain `onig_inited` flag and fills
 * global tables), without a lock. Run one regex before the first state that
 * will run is handed out, so that no two runs can race on it; a compile that
 * only validates does not need it (and a daemon whose programs have not run
 * does not touch the library's tables). compile_lock held, $HOME checked;
 * retried at the next compile if it failed.
 */
static bool regex_warm; /* compile_lock */

static void warm_regex_locked(void)
{
	char buf[256];
	struct msgbuf mb;
	jq_state *jq = NULL;
	msg_init(&mb, buf, sizeof(buf));
	if (compile_locked("\"a\" | test(\"a\")", &jq, &mb) != OP_OK) {
		OP_LOGW("could not initialise jq's regex library: %s", buf);
		return;
	}
	jq_start(jq, jv_null(), 0);
	jv r = jq_next(jq);
	regex_warm = jv_get_kind(r) == JV_KIND_TRUE;
	while (jv_is_valid(r)) {
		jv_free(r);
		r = jq_next(jq);
	}
	jv_free(r);
	jq_teardown(&jq);
}

/* compile_locked under compile_lock, after the $HOME check; to_run: the
 * state will run (not only validate the text). */
static op_err compile_state(const char *text, bool to_run, jq_state **out, struct msgbuf *mb)
{
	*out = NULL;
	pthread_mutex_lock(&compile_lock);
	op_err e = check_home_jq(mb);
	if (e == OP_OK) {
		if (to_run && !regex_warm)
			warm_regex_locked();
		atomic_fetch_add(&ncompiles, 1);
		e = compile_locked(text, out, mb);
	}
	pthread_mutex_unlock(&compile_lock);
	return e;
}

static atomic_bool keep_validated = true;

void op_jq_keep_validated(bool keep)
{
	atomic_store(&keep_validated, keep);
}

/* A compile that only checks a text, on a thread of its own (check_thread). */
struct check {
	const char *text;
	struct msgbuf *mb;
	op_err e;
};

static void *check_main(void *arg)
{
	struct check *c = arg;
	jq_state *jq = NULL;
	c->e = compile_state(c->text, false, &jq, c->mb);
	if (jq != NULL)
		jq_teardown(&jq);
	return NULL;
}

/*
 * check_text's fallback: on a short-lived thread, whose arena goes back
 * (malloc_trim) but for its top pad; on the caller's thread when no thread can
 * start.
 */
static op_err check_thread(const char *text, struct msgbuf *mb)
{
	struct check c = {text, mb, OP_EINTERNAL};
	pthread_t t;
	if (pthread_create(&t, NULL, check_main, &c) == 0) {
		pthread_join(t, NULL);
		return c.e;
	}
	check_main(&c);
	return c.e;
}

/* How long check_text waits for its child (a compile takes about 20 ms). */
static _Atomic int64_t check_apart_ms = 30000;

static atomic_uint_fast64_t nchecks_apart;

void op_jq_set_check_timeout(int64_t ms)
{
	atomic_store(&check_apart_ms, ms);
}

uint64_t op_jq_checks_apart(void)
{
	return atomic_load(&nchecks_apart);
}

/* What a checking child writes to its pipe: the class, then the message. */
static void check_child(int fd, const char *text, struct msgbuf *mb)
{
	jq_state *jq = NULL;
	/* A child that never answers (the fault point stands for a lock that
	 * another thread held at the fork). */
	while (op_fault("jq-check-hang", "child"))
		pause();
	int32_t e = compile_locked(text, &jq, mb);
	char *p = mb->p;
	size_t left = mb->cap ? mb->len : 0;
	ssize_t n = write(fd, &e, sizeof(e));
	while (n > 0 && left > 0) {
		n = write(fd, p, left);
		if (n > 0) {
			p += n;
			left -= (size_t)n;
		}
	}
	_exit(n < 0 ? 1 : 0);
}

/*
 * Compiles text to check it and keeps nothing, in a child process that exits
 * when done. libjq's compiler touches about 190 KiB of libjq's code and leaves
 * about 100 KiB of heap in the arena it ran in, none of which a daemon needs
 * until a program runs; in a child, none of it stays in the agent, and a libjq
 * crash on a hostile program ends the child, not the agent. The child only
 * compiles (no lock, no log, no stdio) and leaves by _exit. On a thread
 * (check_thread) when no child can start.
 */
static op_err check_text(const char *text, struct msgbuf *mb)
{
	int fd[2];
	/* The pipe is made under the lock too: no other check's child can
	 * inherit it. */
	pthread_mutex_lock(&compile_lock);
	op_err e = check_home_jq(mb);
	if (e != OP_OK) {
		pthread_mutex_unlock(&compile_lock);
		return e;
	}
	if (pipe2(fd, O_CLOEXEC) != 0) {
		pthread_mutex_unlock(&compile_lock);
		return check_thread(text, mb);
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		check_child(fd[1], text, mb);
	}
	/* Closed before the lock goes, so that no other check's child inherits
	 * the write end and holds off this one's end of file. */
	close(fd[1]);
	if (pid > 0) {
		atomic_fetch_add(&ncompiles, 1);
		atomic_fetch_add(&nchecks_apart, 1);
	}
	pthread_mutex_unlock(&compile_lock);
	if (pid < 0) {
		close(fd[0]);
		return check_thread(text, mb);
	}

	int32_t ce = OP_EINTERNAL;
	size_t got = 0;
	bool late = false;
	char buf[512];
	mb->len = 0;
	if (mb->cap)
		mb->p[0] = '\0';
	struct pollfd pfd = {.fd = fd[0], .events = POLLIN};
	int64_t apart_ms = atomic_load(&check_apart_ms);
	int64_t deadline = op_mono_ms() + apart_ms;
	for (;;) {
		int64_t left = deadline - op_mono_ms();
		int pr = left > 0 ? poll(&pfd, 1, (int)left) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0) { /* the deadline, or poll itself failed */
			late = true;
			break;
		}
		ssize_t n = read(fd[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		size_t off = 0;
		while (got < sizeof(ce) && off < (size_t)n)
			((char *)&ce)[got++] = buf[off++];
		msg_add(mb, buf + off, (size_t)n - off);
	}
	close(fd[0]);
	if (late)
		kill(pid, SIGKILL);
	int st = 0;
	pid_t r;
	while ((r = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
		continue;
	if (late) {
		/* Stuck (a lock some other thread held at the fork): here instead. */
		OP_LOGW("the process checking a jq program gave no answer in %lld ms; checking it "
		        "here",
		        (long long)apart_ms);
		return check_thread(text, mb);
	}
	if (r == pid && WIFSIGNALED(st))
		return fail(mb, OP_EINTERNAL, "libjq was killed by signal %d checking the program",
		            WTERMSIG(st));
	/* Without a status (reaped elsewhere), the pipe's answer counts. */
	if (got < sizeof(ce) || (r == pid && (!WIFEXITED(st) || WEXITSTATUS(st) != 0)))
		return fail(mb, OP_EINTERNAL, "the process checking the jq program failed");
	return (op_err)ce;
}

/* ---- programs known to compile ---- */

static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;
static struct known_hash *known; /* oldest first; known_lock */
static size_t nknown, capknown;  /* known_lock */
static uint64_t known_gen;       /* known_lock */
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;
static char lib_id[PATH_MAX + 128]; /* the loaded libjq file; set once */
static size_t lib_id_len;

/*
 * Names the libjq file this process runs: its path, inode, size and change
 * time, so that a rebuilt or upgraded library does not trust hashes recorded
 * by another one. Without dladdr the known set still works within a version
 * string that never matches a file ("libjq").
 */
static void lib_identify(void)
{
	Dl_info info;
	struct stat st;
	int (*fn)(jq_state *, const char *, jv) = jq_compile_args;
	void *addr;
	memcpy(&addr, &fn, sizeof(addr));
	int n = -1;
	if (dladdr(addr, &info) && info.dli_fname != NULL && stat(info.dli_fname, &st) == 0)
		n = snprintf(lib_id, sizeof(lib_id), "%s:%ju:%jd:%jd.%ld", info.dli_fname,
		             (uintmax_t)st.st_ino, (intmax_t)st.st_size,
		             (intmax_t)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	if (n < 0 || (size_t)n >= sizeof(lib_id))
		n = snprintf(lib_id, sizeof(lib_id), "libjq");
	lib_id_len = (size_t)n;
}

static struct known_hash hash_text(const char *text)
{
	pthread_once(&lib_once, lib_identify);
	XXH128_hash_t h =
	    XXH3_128bits_withSeed(text, strlen(text), XXH3_64bits(lib_id, lib_id_len));
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, h);
	struct known_hash k;
	memcpy(k.b, c.digest, sizeof(k.b));
	return k;
}

/* The text a program compiles as: PRELUDE + program, in a new string. */
static char *full_text(const char *program)
{
	size_t plen = sizeof(PRELUDE) - 1, len = strlen(program);
	char *t = op_malloc(plen + len + 1);
	if (t != NULL) {
		memcpy(t, PRELUDE, plen);
		memcpy(t + plen, program, len + 1);
	}
	return t;
}

op_err op_jq_known_hash(const char *program, uint8_t out[OP_JQ_KNOWN_SIZE])
{
	char *t = full_text(program);
	if (t == NULL)
		return OP_ENOMEM;
	struct known_hash h = hash_text(t);
	memcpy(out, h.b, OP_JQ_KNOWN_SIZE);
	op_free(t);
	return OP_OK;
}

/* Index of h in the known set, or nknown. known_lock held. */
static size_t known_find_locked(const struct known_hash *h)
{
	for (size_t i = nknown; i-- > 0;) {
		if (memcmp(known[i].b, h->b, sizeof(h->b)) == 0)
			return i;
	}
	return nknown;
}

/* Appends h as the most recent entry, dropping the oldest past the bound.
 * known_lock held. */
static op_err known_push_locked(const struct known_hash *h)
{
	if (nknown == OP_JQ_KNOWN_MAX) {
		memmove(known, known + 1, (nknown - 1) * sizeof(*known));
		nknown--;
	}
	if (nknown == capknown) {
		size_t cap = capknown ? capknown * 2 : 64;
		struct known_hash *k = op_realloc(known, cap * sizeof(*k));
		if (k == NULL)
			return OP_ENOMEM;
		known = k;
		capknown = cap;
	}
	known[nknown++] = *h;
	return OP_OK;
}

/* True if h is known; it becomes the most recent entry. */
static bool known_hit(const struct known_hash *h)
{
	pthread_mutex_lock(&known_lock);
	size_t i = known_find_locked(h);
	bool hit = i < nknown;
	if (hit && i + 1 < nknown) {
		memmove(known + i, known + i + 1, (nknown - i - 1) * sizeof(*known));
		known[nknown - 1] = *h;
	}
	pthread_mutex_unlock(&known_lock);
	return hit;
}

/* Records h after a successful compile; a failure only costs a later compile. */
static void known_add(const struct known_hash *h)
{
	pthread_mutex_lock(&known_lock);
	if (known_find_locked(h) == nknown && known_push_locked(h) == OP_OK)
		known_gen++;
	pthread_mutex_unlock(&known_lock);
}

op_err op_jq_known_import(const void *buf, size_t len)
{
	if (len % OP_JQ_KNOWN_SIZE != 0 || (len != 0 && buf == NULL))
		return OP_EINVAL;
	op_err e = OP_OK;
	const uint8_t *p = buf;
	pthread_mutex_lock(&known_lock);
	for (size_t off = 0; off < len && e == OP_OK; off += OP_JQ_KNOWN_SIZE) {
		struct known_hash h;
		memcpy(h.b, p + off, sizeof(h.b));
		if (known_find_locked(&h) == nknown)
			e = known_push_locked(&h);
	}
	known_gen++;
	pthread_mutex_unlock(&known_lock);
	return e;
}

op_err op_jq_known_export(void **buf, size_t *len, uint64_t *gen)
{
	*buf = NULL;
	*len = 0;
	pthread_mutex_lock(&known_lock);
	op_err e = OP_OK;
	if (nknown > 0) {
		*buf = op_malloc(nknown * sizeof(*known));
		if (*buf == NULL)
			e = OP_ENOMEM;
		else {
			memcpy(*buf, known, nknown * sizeof(*known));
			*len = nknown * sizeof(*known);
		}
	}
	*gen = known_gen;
	pthread_mutex_unlock(&known_lock);
	return e;
}

uint64_t op_jq_known_gen(void)
{
	pthread_mutex_lock(&known_lock);
	uint64_t g = known_gen;
	pthread_mutex_unlock(&known_lock);
	return g;
}

void op_jq_known_clear(void)
{
	pthread_mutex_lock(&known_lock);
	op_free(known);
	known = NULL;
	nknown = capknown = 0;
	known_gen++;
	pthread_mutex_unlock(&known_lock);
}

static void free_slots(struct slot *s)
{
	while (s != NULL) {
		struct slot *next = s->tnext;
		if (s->jq != NULL)
			jq_teardown(&s->jq);
		op_free(s);
		s = next;
	}
}

/* Takes s out of its owner's registry, if it is still in one. reg_lock held. */
static void detach_locked(struct slot *s)
{
	if (s->owner == NULL)
		return;
	if (s->oprev != NULL)
		s->oprev->onext = s->onext;
	else
		s->owner->states = s->onext;
	if (s->onext != NULL)
		s->onext->oprev = s->oprev;
	s->owner = NULL;
}

static void tcache_destroy(void *p)
{
	struct tcache *tc = p;
	pthread_mutex_lock(&reg_lock);
	for (struct slot *s = tc->head; s != NULL; s = s->tnext)
		detach_locked(s);
	pthread_mutex_unlock(&reg_lock);
	/* Detached slots are reachable from this thread only: tear down unlocked. */
	free_slots(tc->head);
	op_free(tc);
}

static void make_key(void)
{
	key_ok = pthread_key_create(&tkey, tcache_destroy) == 0;
}

static op_err tcache_get(struct tcache **out, struct msgbuf *mb)
{
	*out = NULL;
	pthread_once(&key_once, make_key);
	if (!key_ok)
		return fail(mb, OP_EINTERNAL, "cannot create a thread key for jq states");
	struct tcache *tc = pthread_getspecific(tkey);
	if (tc == NULL) {
		tc = op_calloc(1, sizeof(*tc));
		if (tc == NULL)
			return fail(mb, OP_ENOMEM, "out of memory");
		if (pthread_setspecific(tkey, tc) != 0) {
			op_free(tc);
			return fail(mb, OP_ENOMEM, "out of memory");
		}
	}
	*out = tc;
	return OP_OK;
}

/* This thread's state for program id, moved to the front; NULL on a miss. */
static struct slot *tcache_find(struct tcache *tc, uint64_t id)
{
	struct slot **pp = &tc->head;
	for (struct slot *s = tc->head; s != NULL; pp = &s->tnext, s = s->tnext) {
		if (s->id != id)
			continue;
		if (pp != &tc->head) {
			*pp = s->tnext;
			s->tnext = tc->head;
			tc->head = s;
		}
		return s;
	}
	return NULL;
}

/*
 * Drops slots whose program was freed, and the least recently used live ones
 * so that one more fits under OP_JQ_THREAD_CACHE_MAX.
 */
static void tcache_trim(struct tcache *tc)
{
	struct slot *dead = NULL;
	size_t live = 0;
	pthread_mutex_lock(&reg_lock);
	struct slot **pp = &tc->head;
	while (*pp != NULL) {
		struct slot *s = *pp;
		if (s->owner != NULL && live < OP_JQ_THREAD_CACHE_MAX - 1) {
			live++;
			pp = &s->tnext;
			continue;
		}
		detach_locked(s);
		*pp = s->tnext;
		s->tnext = dead;
		dead = s;
	}
	pthread_mutex_unlock(&reg_lock);
	free_slots(dead);
}

/* Creates this thread's state for q, registered with q and cached in tc. */
static op_err tcache_add(struct tcache *tc, struct op_jq *q, struct slot **out, struct msgbuf *mb)
{
	tcache_trim(tc);
	struct slot *s = op_calloc(1, sizeof(*s));
	if (s == NULL)
		return fail(mb, OP_ENOMEM, "out of memory");
	jq_state *jq = atomic_exchange(&q->spare, NULL);
	if (jq == NULL) {
		op_err e = compile_state(q->text, true, &jq, mb);
		if (e) {
			op_free(s);
			/* It compiled at load, so this is the host or the library. */
			return e == OP_ENOMEM ? e : OP_EINTERNAL;
		}
	}
	s->id = q->id;
	s->jq = jq;
	pthread_mutex_lock(&reg_lock);
	s->owner = q;
	s->onext = q->states;
	if (q->states != NULL)
		q->states->oprev = s;
	q->states = s;
	pthread_mutex_unlock(&reg_lock);
	s->tnext = tc->head;
	tc->head = s;
	*out = s;
	return OP_OK;
}

void op_jq_thread_cleanup(void)
{
	pthread_once(&key_once, make_key);
	if (!key_ok)
		return;
	struct tcache *tc = pthread_getspecific(tkey);
	if (tc == NULL)
		return;
	(void)pthread_setspecific(tkey, NULL);
	tcache_destroy(tc);
}

/* ---- program text ---- */

static bool is_ident(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

/* Skips white space and # comments. */
static const char *skip_blank(const char *p)
{
	for (;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '#')
			return p;
		while (*p != '\0' && *p != '\n')
			p++;
	}
}

/* True if the word appears as a whole identifier anywhere in text. Over-
 * approximates (strings, comments) so that it never misses a reference. */
static bool mentions(const char *text, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = text; (p = strstr(p, word)) != NULL; p += n) {
		if ((p == text || !is_ident(p[-1])) && !is_ident(p[n]))
			return true;
	}
	return false;
}

op_err op_jq_compile(const char *program, struct op_jq **out, char *err, size_t errlen)
{
	struct msgbuf mb;
	struct op_jq *q = NULL;
	jq_state *jq = NULL;
	op_err e = OP_OK;
	msg_init(&mb, err, errlen);
	if (out != NULL)
		*out = NULL;
	if (program == NULL || out == NULL)
		return fail(&mb, OP_EINVAL, "no jq program");

	const char *body = skip_blank(program);
	if (*body == '\0')
		program = ".";
	size_t w = 0;
	while (is_ident(body[w]))
		w++;
	if ((w == 6 && (memcmp(body, "import", 6) == 0 || memcmp(body, "module", 6) == 0)) ||
	    (w == 7 && memcmp(body, "include", 7) == 0))
		return fail(&mb, OP_ECONFIG,
		            "jq modules are not supported in transform steps (%.*s): put the "
		            "definitions in the program",
		            (int)w, body);

	q = op_calloc(1, sizeof(*q));
	if (q == NULL) {
		e = fail(&mb, OP_ENOMEM, "out of memory");
		goto out;
	}
	q->text = full_text(program);
	if (q->text == NULL) {
		e = fail(&mb, OP_ENOMEM, "out of memory");
		goto out;
	}
	struct known_hash h = hash_text(q->text);
	bool hit = known_hit(&h);
	if (hit) {
		/* Still refuse what the lazy compile would refuse. */
		pthread_mutex_lock(&compile_lock);
		e = check_home_jq(&mb);
		pthread_mutex_unlock(&compile_lock);
	} else {
		if (atomic_load(&keep_validated))
			e = compile_state(q->text, true, &jq, &mb);
		else
			e = check_text(q->text, &mb);
		if (e == OP_OK)
			known_add(&h);
	}
	if (e)
		goto out;
	q->id = atomic_fetch_add(&last_id, 1) + 1;
	q->output_max = OP_JQ_OUTPUT_MAX_DEFAULT;
	q->uses_globals = mentions(program, "globals");
	q->uses_metadata = mentions(program, "metadata");
	q->fast = op_jqf_compile(program);
	atomic_init(&q->spare, jq);
	*out = q;
	q = NULL;
out:
	if (q != NULL) {
		op_free(q->text);
		op_free(q);
	}
	return e;
}

void op_jq_set_output_max(struct op_jq *q, size_t max)
{
	q->output_max = max ? max : OP_JQ_OUTPUT_MAX_DEFAULT;
}

void op_jq_free(struct op_jq *q)
{
	if (q == NULL)
		return;
	/* Slots stay in their threads' caches, marked dead by owner == NULL;
	 * their ids are never reused. */
	pthread_mutex_lock(&reg_lock);
	for (struct slot *s = q->states; s != NULL; s = s->onext) {
		if (s->jq != NULL)
			jq_teardown(&s->jq);
		s->owner = NULL;
	}
	q->states = NULL;
	pthread_mutex_unlock(&reg_lock);
	jq_state *spare = atomic_load(&q->spare);
	if (spare != NULL)
		jq_teardown(&spare);
	op_jqf_free(q->fast);
	op_free(q->text);
	op_free(q);
}

/* ---- cJSON -> jv ---- */

static op_err to_jv(const cJSON *c, int depth, jv *out, struct msgbuf *mb)
{
	*out = jv_invalid();
	switch (c->type & 0xFF) {
	case cJSON_NULL:
		*out = jv_null();
		return OP_OK;
	case cJSON_False:
		*out = jv_false();
		return OP_OK;
	case cJSON_True:
		*out = jv_true();
		return OP_OK;
	case cJSON_Number:
		*out = jv_number(c->valuedouble);
		return OP_OK;
	case cJSON_String: {
		if (c->valuestring == NULL)
			return fail(mb, OP_EINVAL, "input string without a value");
		size_t n = strlen(c->valuestring);
		if (n > INT_MAX)
			return fail(mb, OP_ELIMIT, "input string longer than %d bytes", INT_MAX);
		/* jv_string_sized replaces invalid UTF-8 with U+FFFD. */
		*out = jv_string_sized(c->valuestring, (int)n);
		return OP_OK;
	}
	case cJSON_Array:
	case cJSON_Object:
		break;
	case cJSON_Raw:
		return fail(mb, OP_EINVAL, "raw JSON values cannot be given to jq");
	default:
		return fail(mb, OP_EINVAL, "input holds an invalid JSON value");
	}
	if (depth >= OP_JQ_DEPTH_MAX)
		return fail(mb, OP_ELIMIT, "input nests deeper than %d levels", OP_JQ_DEPTH_MAX);
	bool is_obj = (c->type & 0xFF) == cJSON_Object;
	jv acc = is_obj ? jv_object() : jv_array();
	for (const cJSON *ch = c->child; ch != NULL; ch = ch->next) {
		jv v;
		op_err e = to_jv(ch, depth + 1, &v, mb);
		if (e) {
			jv_free(acc);
			return e;
		}
		if (!is_obj) {
			acc = jv_array_append(acc, v);
			continue;
		}
		if (ch->string == NULL) {
			jv_free(v);
			jv_free(acc);
			return fail(mb, OP_EINVAL, "input object member without a key");
		}
		size_t n = strlen(ch->string);
		if (n > INT_MAX) {
			jv_free(v);
			jv_free(acc);
			return fail(mb, OP_ELIMIT, "input key longer than %d bytes", INT_MAX);
		}
		acc = jv_object_set(acc, jv_string_sized(ch->string, (int)n), v);
	}
	*out = acc;
	return OP_OK;
}

/* ---- jv -> cJSON ---- */

static op_err spend(size_t *budget, size_t n, struct msgbuf *mb, size_t max)
{
	if (n > *budget)
		return fail(mb, OP_ELIMIT, "jq output is larger than %zu bytes", max);
	*budget -= n;
	return OP_OK;
}

/* A jv string as a C string for cJSON, which cannot carry NUL. */
static op_err jv_cstr(jv s, const char **out, size_t *len, const char *what, struct msgbuf *mb)
{
	*out = NULL;
	*len = 0;
	int n = jv_string_length_bytes(jv_copy(s));
	const char *p = jv_string_value(s);
	if (memchr(p, '\0', (size_t)n) != NULL)
		return fail(mb, OP_EINVAL, "jq output %s contains a NUL character", what);
	*out = p;
	*len = (size_t)n;
	return OP_OK;
}

struct outctx {
	size_t budget;
	size_t max;
	struct msgbuf *mb;
};

/* Converts v (consumed) into a new cJSON tree. */
static op_err to_cjson(jv v, int depth, struct outctx *ox, cJSON **out)
{
	op_err e = OP_OK;
	cJSON *c = NULL;
	const char *s;
	size_t n;
	*out = NULL;
	switch (jv_get_kind(v)) {
	case JV_KIND_NULL:
		e = spend(&ox->budget, 4, ox->mb, ox->max);
		c = e ? NULL : cJSON_CreateNull();
		break;
	case JV_KIND_FALSE:
		e = spend(&ox->budget, 5, ox->mb, ox->max);
		c = e ? NULL : cJSON_CreateFalse();
		break;
	case JV_KIND_TRUE:
		e = spend(&ox->budget, 4, ox->mb, ox->max);
		c = e ? NULL : cJSON_CreateTrue();
		break;
	case JV_KIND_NUMBER: {
		double d = jv_number_value(v);
		e = spend(&ox->budget, 8, ox->mb, ox->max);
		if (e)
			break;
		/* As jq prints them: NaN as null, infinities as the largest double. */
		if (isnan(d))
			c = cJSON_CreateNull();
		else
			c = cJSON_CreateNumber(isinf(d) ? (d > 0 ? DBL_MAX : -DBL_MAX) : d);
		break;
	}
	case JV_KIND_STRING:
		e = jv_cstr(v, &s, &n, "string", ox->mb);
		if (e == OP_OK)
			e = spend(&ox->budget, n + 2, ox->mb, ox->max);
		c = e ? NULL : cJSON_CreateString(s);
		break;
	case JV_KIND_ARRAY: {
		if (depth >= OP_JQ_DEPTH_MAX) {
			e = fail(ox->mb, OP_ELIMIT, "jq output nests deeper than %d levels",
			         OP_JQ_DEPTH_MAX);
			break;
		}
		int len = jv_array_length(jv_copy(v));
		e = spend(&ox->budget, 2 + (size_t)len, ox->mb, ox->max);
		if (e)
			break;
		c = cJSON_CreateArray();
		for (int i = 0; c != NULL && i < len; i++) {
			cJSON *item;
			e = to_cjson(jv_array_get(jv_copy(v), i), depth + 1, ox, &item);
			if (e)
				break;
			if (!cJSON_AddItemToArray(c, item)) {
				cJSON_Delete(item);
				e = OP_ENOMEM;
				break;
			}
		}
		break;
	}
	case JV_KIND_OBJECT: {
		if (depth >= OP_JQ_DEPTH_MAX) {
			e = fail(ox->mb, OP_ELIMIT, "jq output nests deeper than %d levels",
			         OP_JQ_DEPTH_MAX);
			break;
		}
		e = spend(&ox->budget, 2, ox->mb, ox->max);
		if (e)
			break;
		c = cJSON_CreateObject();
		/* The iterator does not consume v; key and value are new references.
		 * Iteration follows insertion order, as jq prints objects. */
		for (int it = jv_object_iter(v); c != NULL && jv_object_iter_valid(v, it);
		     it = jv_object_iter_next(v, it)) {
			jv k = jv_object_iter_key(v, it);
			cJSON *item;
			e = jv_cstr(k, &s, &n, "object key", ox->mb);
			if (e == OP_OK)
				e = spend(&ox->budget, n + 4, ox->mb, ox->max);
			if (e) {
				jv_free(k);
				break;
			}
			e = to_cjson(jv_object_iter_value(v, it), depth + 1, ox, &item);
			if (e) {
				jv_free(k);
				break;
			}
			bool ok = cJSON_AddItemToObject(c, s, item);
			jv_free(k);
			if (!ok) {
				cJSON_Delete(item);
				e = OP_ENOMEM;
				break;
			}
		}
		break;
	}
	default:
		e = fail(ox->mb, OP_EINTERNAL, "jq produced an invalid value");
		break;
	}
	jv_free(v);
	if (e == OP_OK && c == NULL)
		e = OP_ENOMEM;
	if (e) {
		if (e == OP_ENOMEM)
			(void)fail(ox->mb, OP_ENOMEM, "out of memory converting jq output");
		cJSON_Delete(c);
		return e;
	}
	*out = c;
	return OP_OK;
}

/* ---- runs ---- */

/* Error for an invalid jv from jq_next (consumed): a jq error or a halt. */
static op_err run_error(jq_state *jq, jv r, struct msgbuf *mb)
{
	op_err e;
	if (jq_halted(jq)) {
		jv_free(r);
		jv code = jq_get_exit_code(jq);
		jv msg = jq_get_error_message(jq);
		if (!jv_is_valid(code))
			e = fail(mb, OP_EINVAL,
			         "jq program called halt, which transform steps do "
			         "not support");
		else if (jv_get_kind(msg) == JV_KIND_STRING)
			e = fail(mb, OP_EINVAL, "jq program called halt_error: %s",
			         jv_string_value(msg));
		else {
			msg = jv_is_valid(msg) ? jv_dump_string(msg, 0) : jv_string("");
			e = fail(mb, OP_EINVAL, "jq program called halt_error: %s",
			         jv_string_value(msg));
		}
		jv_free(code);
		jv_free(msg);
		return e;
	}
	jv msg = jv_invalid_get_msg(r);
	if (jv_get_kind(msg) == JV_KIND_STRING) {
		e = fail(mb, OP_EINVAL, "jq error: %s", jv_string_value(msg));
	} else {
		msg = jv_dump_string(msg, 0);
		e = fail(mb, OP_EINVAL, "jq error (not a string): %s", jv_string_value(msg));
	}
	jv_free(msg);
	return e;
}

/*
 * Frees what a failed run left on jq's stack (forks, the input) now rather
 * than at the state's next run, and makes a halted state safe to reset.
 *
 * libjq 1.6's jq_reset (called by jq_start and jq_teardown) frees the
 * exit_code and error_message that `halt_error` stored with jq_halt but leaves
 * them in place, so the next reset frees them again. For `"bye" |
 * halt_error(1)` the message is the program's own string constant: the
 * second free drops it to zero references while the bytecode still holds it,
 * and the bytecode's own free later writes into the freed block (glibc:
 * "malloc_consolidate(): unaligned fastbin chunk detected"; the next run
 * reads freed memory). jq 1.7 resets both to jv_invalid() there. Here: one
 * reset frees them once, then jq_halt overwrites the stale pair with values
 * that own nothing; the next reset clears the halted flag again.
 */
static void unwind(jq_state *jq)
{
	bool halted = jq_halted(jq);
	jq_start(jq, jv_null(), 0);
	if (halted)
		jq_halt(jq, jv_invalid(), jv_invalid());
}

static bool is_error(jq_state *jq, jv r)
{
	return jq_halted(jq) || jv_invalid_has_msg(jv_copy(r));
}

/* Pulls the outputs of a started run and converts the single one. */
static op_err collect(jq_state *jq, size_t output_max, cJSON **out, struct msgbuf *mb)
{
	jv first = jq_next(jq);
	if (!jv_is_valid(first)) {
		if (is_error(jq, first))
			return run_error(jq, first, mb);
		jv_free(first);
		*out = cJSON_CreateNull();
		return *out ? OP_OK : fail(mb, OP_ENOMEM, "out of memory");
	}
	size_t n = 1;
	for (;;) {
		jv r = jq_next(jq);
		if (!jv_is_valid(r)) {
			if (is_error(jq, r)) {
				jv_free(first);
				return run_error(jq, r, mb);
			}
			jv_free(r);
			break;
		}
		jv_free(r);
		if (++n > OP_JQ_OUTPUTS_COUNTED)
			break;
	}
	if (n > OP_JQ_OUTPUTS_COUNTED) {
		jv_free(first);
		return fail(
		    mb, OP_EINVAL,
		    "jq program produced more than %d outputs; wrap it in [ ... ] to collect "
		    "them",
		    OP_JQ_OUTPUTS_COUNTED);
	}
	if (n > 1) {
		jv_free(first);
		return fail(mb, OP_EINVAL,
		            "jq program produced %zu outputs; wrap it in [ ... ] to collect them",
		            n);
	}
	struct outctx ox = {.budget = output_max, .max = output_max, .mb = mb};
	return to_cjson(first, 0, &ox, out);
}

op_err op_jq_run(const struct op_jq *cq, const cJSON *in, const cJSON *globals,
                 const cJSON *metadata, cJSON **out, char *err, size_t errlen)
{
	/* The per-thread cache is bookkeeping behind a logically const program. */
	struct op_jq *q = (struct op_jq *)cq;
	struct msgbuf mb;
	struct tcache *tc;
	jv vin = jv_null(), vg = jv_null(), vm = jv_null();
	op_err e;
	msg_init(&mb, err, errlen);
	if (out != NULL)
		*out = NULL;
	if (q == NULL || in == NULL || out == NULL)
		return fail(&mb, OP_EINVAL, "no jq program or input");
	if (q->fast != NULL && atomic_load_explicit(&fast_on, memory_order_relaxed) &&
	    op_jqf_run(q->fast, in, q->uses_globals ? globals : NULL,
	               q->uses_metadata ? metadata : NULL, q->output_max, out)) {
		fast_runs++;
		return OP_OK;
	}
	e = tcache_get(&tc, &mb);
	if (e)
		return e;
	struct slot *s = tcache_find(tc, q->id);
	if (s == NULL) {
		e = tcache_add(tc, q, &s, &mb);
		if (e)
			return e;
	}
	e = to_jv(in, 0, &vin, &mb);
	if (e == OP_OK && q->uses_globals && globals != NULL)
		e = to_jv(globals, 0, &vg, &mb);
	if (e == OP_OK && q->uses_metadata && metadata != NULL)
		e = to_jv(metadata, 0, &vm, &mb);
	if (e) {
		jv_free(vin);
		jv_free(vg);
		jv_free(vm);
		return e;
	}
	jq_start(s->jq, JV_ARRAY(vin, vg, vm), 0);
	e = collect(s->jq, q->output_max, out, &mb);
	if (e)
		unwind(s->jq);
	return e;
}

void op_jq_fast_enable(bool on)
{
	atomic_store(&fast_on, on);
}

bool op_jq_is_fast(const struct op_jq *q)
{
	return q != NULL && q->fast != NULL;
}

uint64_t op_jq_fast_runs(void)
{
	return fast_runs;
}
