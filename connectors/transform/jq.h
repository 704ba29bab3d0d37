/*
 * The jq runtime behind the `transform` step: a jq program (libjq 1.6) is
 * compiled once when its pipeline loads and then run on messages by many
 * worker threads at once. libjq cannot share compiled bytecode between
 * jq_state objects and a jq_state is not thread-safe, so each thread keeps its
 * own cache of states compiled from the program; this header hides all of it.
 * Key invariant: a run never sees the agent's environment, files, stdin or
 * stdout, and never ends the process through jq's `halt`.
 *
 * What the program sees: `.` is the message, `$globals` and `$metadata` are
 * bound per run, `$ENV` and `env` are `{}`, `input`/`inputs`/`modulemeta`
 * raise errors, `debug` and `stderr` go to the debug log, `halt` and
 * `halt_error` fail the run, and `mktime`/`fromdate` are computed in UTC
 * whatever the agent's TZ. See connectors/transform/README.md for why, and
 * for what libjq 1.6 cannot bound (memory, loops that produce no output).
 */
#ifndef OP_CONNECTORS_TRANSFORM_JQ_H
#define OP_CONNECTORS_TRANSFORM_JQ_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/core/err.h"

/* Deepest nesting of arrays and objects converted in either direction. */
#define OP_JQ_DEPTH_MAX 1000
/* Default cap on one output, counted as the length of its compact JSON text
 * (escapes not counted). Change it per program with op_jq_set_output_max. */
#define OP_JQ_OUTPUT_MAX_DEFAULT ((size_t)16 << 20)
/* Outputs consumed when a program produces more than one, to report how many
 * it produced; past this the run stops ("more than 100 outputs"). */
#define OP_JQ_OUTPUTS_COUNTED 100
/* jq states cached per thread; the least recently used is dropped past it. */
#define OP_JQ_THREAD_CACHE_MAX 64

/* A jq program, compiled once at pipeline load. */
struct op_jq;

/*
 * Compiles a jq program and checks that libjq accepts it.
 *
 * program: jq program text (NUL-terminated, borrowed for the call). An empty
 *     program, or one of comments only, is `.`.
 * out: on success, the new program, which the caller frees with op_jq_free.
 *     NULL on error.
 * err, errlen: on error, a message for the user, truncated to errlen (may be
 *     NULL/0). For a syntax or binding error it holds every message libjq
 *     reported, one per line, as jq prints them.
 *
 * Errors:
 *   OP_ECONFIG  the program does not compile; it uses `import`, `include` or
 *               `module`; or $HOME/.jq exists (libjq 1.6 would silently load it
 *               into every program). Fix the pipeline or the host.
 *   OP_EINVAL   program or out is NULL.
 *   OP_ENOMEM   out of memory; the call may be retried.
 *   OP_EINTERNAL libjq or pthreads could not be set up.
 *
 * Takes a process-wide lock for the duration of the libjq compile (about 20
 * ms), so compiles on several threads run one at a time. A program in the
 * known set (see op_jq_known_import) is accepted without compiling.
 */
op_err op_jq_compile(const char *program, struct op_jq **out, char *err, size_t errlen) OP_WUR;

/*
 * Whether op_jq_compile keeps the state it validated with, for the first
 * thread that runs the program (default: kept, which saves that thread one
 * compile). A daemon that holds many programs, most of them idle, turns it
 * off: each state costs about 70 KiB until its program first runs. Off, the
 * check runs in a child process (fork), so that neither libjq's compiler
 * pages nor its heap stay in the caller's; on a thread if no child can start.
 * Call it before the first compile.
 */
void op_jq_keep_validated(bool keep);

/* How many times this process has run libjq's compiler (for tests). */
uint64_t op_jq_compiles(void);

/* How many of those ran in a child process (op_jq_keep_validated(false)). */
uint64_t op_jq_checks_apart(void);

/* How long a check in a child process may take before the child is killed
 * and the check runs on a thread instead (default 30 s; a compile takes
 * about 20 ms). For tests. */
void op_jq_set_check_timeout(int64_t ms);

/*
 * Sets the cap on the size of one output (default OP_JQ_OUTPUT_MAX_DEFAULT).
 * Call it before q is shared with other threads.
 */
void op_jq_set_output_max(struct op_jq *q, size_t max);

/*
 * Frees a program and every jq state any thread compiled from it. NULL is a
 * no-op. The caller must make sure no thread is inside op_jq_run(q) and none
 * will call it again (quiesce the pipeline first). Other threads may still
 * hold cache entries for q: they are recognised as stale by q's unique id,
 * never reused, and their few bytes are reclaimed at that thread's next cache
 * miss or exit.
 */
void op_jq_free(struct op_jq *q);

/*
 * Runs the program on one message.
 *
 * q: the program; may be used by many threads at once.
 * in: the message, bound to `.` (borrowed).
 * globals, metadata: bound to $globals and $metadata (borrowed); NULL binds
 *     null. They are converted only if the program text mentions them.
 * out: on success, the program's single output, or a JSON null if it produced
 *     none; a new tree the caller deletes with cJSON_Delete. NULL on error.
 * err, errlen: on error, a message for the user, truncated to errlen.
 *
 * Errors:
 *   OP_EINVAL   a jq runtime error (`error("x")`, type errors), with jq's
 *               message; the program produced more than one output ("wrap it
 *               in [ ... ] to collect them"); it called halt or halt_error; an
 *               input holds a cJSON raw value; an output string holds a NUL
 *               character, which cJSON cannot carry. Retrying the same
 *               message fails again.
 *   OP_ELIMIT   an input or output nests deeper than OP_JQ_DEPTH_MAX, an input
 *               string is over 2 GiB, or the output is over the output cap.
 *   OP_ENOMEM   our side ran out of memory (libjq's own allocations abort the
 *               process, see README.md); nothing is leaked.
 *   OP_EINTERNAL a thread's jq state could not be compiled.
 *
 * A program entirely inside the subset of jq_fast.c (paths, literals,
 * object and array construction, map and select, arithmetic, comparisons) is
 * run on the cJSON values directly, without libjq, whenever the answer is
 * sure to be libjq's; anything else runs on libjq. The first libjq run of q
 * on a thread compiles a jq state for that thread (about 15 ms); later runs
 * reuse it. A program that loops forever without producing
 * output blocks the calling thread: libjq 1.6 cannot be interrupted.
 */
op_err op_jq_run(const struct op_jq *q, const cJSON *in, const cJSON *globals,
                 const cJSON *metadata, cJSON **out, char *err, size_t errlen) OP_WUR;

/* Whether q has a fast form (jq_fast.h); its runs may still fall back to libjq. */
bool op_jq_is_fast(const struct op_jq *q);

/* For tests and benchmarks: off, every run goes to libjq. On by default. */
void op_jq_fast_enable(bool on);

/* How many runs the fast path answered on the calling thread. */
uint64_t op_jq_fast_runs(void);

/*
 * Programs known to compile. libjq 1.6 spends about 20 ms compiling its
 * builtins for every program, so a daemon with many transform steps would
 * start slowly. op_jq_compile remembers the hash (XXH3-128) of each program
 * text it compiled successfully, mixed with the identity of the libjq file the
 * process loaded (path, inode, size, time), so an upgraded libjq knows
 * nothing. A program whose hash is known is accepted without a compile; the
 * first run on each thread compiles it as usual (without a known set, the
 * first thread gets the state the validation compiled). The daemon keeps the
 * set in its store so that a restart is fast. At most OP_JQ_KNOWN_MAX hashes, least recently used
 * dropped first.
 */
#define OP_JQ_KNOWN_MAX  4096
#define OP_JQ_KNOWN_SIZE 16 /* bytes per hash in the exported form */

/*
 * Adds the hashes in buf (len bytes, a multiple of OP_JQ_KNOWN_SIZE, as
 * op_jq_known_export wrote them) to the known set. OP_EINVAL (nothing added)
 * for another length; OP_ENOMEM.
 */
op_err op_jq_known_import(const void *buf, size_t len) OP_WUR;

/*
 * The known set as bytes, oldest first, in a new buffer the caller frees with
 * op_free (NULL and 0 for an empty set); *gen gets op_jq_known_gen() of that
 * content. OP_ENOMEM.
 */
op_err op_jq_known_export(void **buf, size_t *len, uint64_t *gen) OP_WUR;

/* The entry the known set holds for a (non-empty) program once it compiled
 * (tests, tools). OP_ENOMEM. */
op_err op_jq_known_hash(const char *program, uint8_t out[OP_JQ_KNOWN_SIZE]) OP_WUR;

/* A counter that changes whenever a hash is added to the known set. */
uint64_t op_jq_known_gen(void);

/* Empties the known set (tests, and `outpostd --check-config` never uses it). */
void op_jq_known_clear(void);

/*
 * Frees the calling thread's cached jq states. Worker threads call it when
 * they exit; a thread-exit hook also does it for threads that end through
 * pthread_exit or by returning from their start routine (not for the main
 * thread, which ends with exit()). The thread may run programs again later.
 */
void op_jq_thread_cleanup(void);

#endif
