/*
 * MATCHES(text, pattern[, flags]): PCRE2 regular expressions.
 *
 * A literal pattern is compiled (and JIT-compiled) once, when the expression
 * is compiled, so a bad pattern is a load error with its column. A computed
 * pattern is compiled on first use and kept in a small per-call cache behind
 * a mutex; entries are reference counted so that a pattern evicted while
 * another thread matches with it is freed by the last user. Match data is
 * per thread and reused, so a match allocates nothing once warm.
 *
 * Key invariant: every match runs under the match, depth and heap limits of
 * one shared match context (a pathological pattern fails with an error, it
 * does not hang a worker), and all PCRE2 memory goes through op_malloc.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "agent/core/alloc.h"
#include "agent/expr/expr_int.h"

#define RX_CACHE         16
#define RX_MAX_PATTERN   32768
#define RX_MATCH_LIMIT   1000000
#define RX_DEPTH_LIMIT   10000
#define RX_HEAP_LIMIT_KB 8192

/* ---- process-wide PCRE2 contexts ---- */

static pthread_mutex_t init_mu = PTHREAD_MUTEX_INITIALIZER;
static pcre2_general_context *gctx;
static pcre2_compile_context *cctx;
static pcre2_match_context *mctx;
static pthread_key_t md_key;
static bool md_key_ok;
static atomic_bool rx_ready; /* all of the above exist */

static void *rx_malloc(PCRE2_SIZE n, void *data)
{
	(void)data;
	return op_malloc(n);
}

static void rx_free(void *p, void *data)
{
	(void)data;
	op_free(p);
}

static void md_destroy(void *p)
{
	pcre2_match_data_free(p);
}

/* Creates the shared contexts; retried on the next call after a failure. */
static bool rx_init(void)
{
	bool ok;
	if (atomic_load_explicit(&rx_ready, memory_order_acquire))
		return true;
	pthread_mutex_lock(&init_mu);
	if (!md_key_ok)
		md_key_ok = pthread_key_create(&md_key, md_destroy) == 0;
	if (gctx == NULL)
		gctx = pcre2_general_context_create(rx_malloc, rx_free, NULL);
	if (gctx && cctx == NULL) {
		cctx = pcre2_compile_context_create(gctx);
		if (cctx)
			pcre2_set_max_pattern_length(cctx, RX_MAX_PATTERN);
	}
	if (gctx && mctx == NULL) {
		mctx = pcre2_match_context_create(gctx);
		if (mctx) {
			pcre2_set_match_limit(mctx, RX_MATCH_LIMIT);
			pcre2_set_depth_limit(mctx, RX_DEPTH_LIMIT);
			pcre2_set_heap_limit(mctx, RX_HEAP_LIMIT_KB);
		}
	}
	ok = md_key_ok && gctx && cctx && mctx;
	if (ok)
		atomic_store_explicit(&rx_ready, true, memory_order_release);
	pthread_mutex_unlock(&init_mu);
	return ok;
}

/* The calling thread's match data (one ovector pair is all MATCHES needs). */
static pcre2_match_data *thread_md(void)
{
	pcre2_match_data *md = pthread_getspecific(md_key);
	if (md)
		return md;
	md = pcre2_match_data_create(1, gctx);
	if (md && pthread_setspecific(md_key, md) != 0) {
		pcre2_match_data_free(md);
		md = NULL;
	}
	return md;
}

/* ---- compiling ---- */

/* Flags text ("ims") to PCRE2 options; false on an unknown letter (*bad set). */
static bool parse_flags(const char *s, size_t len, uint32_t *opts, char *bad)
{
	*opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF;
	for (size_t i = 0; i < len; i++) {
		switch (s[i]) {
		case 'i':
			*opts |= PCRE2_CASELESS;
			break;
		case 'm':
			*opts |= PCRE2_MULTILINE;
			break;
		case 's':
			*opts |= PCRE2_DOTALL;
			break;
		case 'x':
			*opts |= PCRE2_EXTENDED;
			break;
		default:
			*bad = s[i];
			return false;
		}
	}
	return true;
}

/*
 * Compiles a pattern. Returns OP_OK, OP_ENOMEM, or OP_EINVAL with a message
 * ("invalid pattern at offset 3: missing closing parenthesis") in msg.
 */
static op_err rx_compile(const char *pat, size_t len, uint32_t opts, pcre2_code **out, char *msg,
                         size_t msglen)
{
	int ec;
	PCRE2_SIZE off;
	*out = NULL;
	if (!rx_init()) {
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, len, opts, &ec, &off, cctx);
	if (code == NULL) {
		if (ec == PCRE2_ERROR_HEAP_FAILED || ec == PCRE2_ERROR_NOMEMORY) {
			snprintf(msg, msglen, "out of memory");
			return OP_ENOMEM;
		}
		PCRE2_UCHAR text[160];
		if (pcre2_get_error_message(ec, text, sizeof(text)) < 0)
			snprintf((char *)text, sizeof(text), "error %d", ec);
		snprintf(msg, msglen, "invalid pattern at offset %zu: %s", (size_t)off,
		         (char *)text);
		return OP_EINVAL;
	}
	/* JIT is an optimisation: without it (or out of memory) the interpreter runs. */
	(void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
	*out = code;
	return OP_OK;
}

/* ---- the per-call state ---- */

struct rx_entry {
	pcre2_code *code;
	char *pat;
	size_t len;
	uint32_t opts;
	int refs;  /* users matching right now; under aux->mu */
	bool dead; /* evicted: the last user frees it */
};

struct rx_aux {
	pcre2_code *fixed; /* literal pattern and flags */
	pthread_mutex_t mu;
	struct rx_entry *slot[RX_CACHE];
	size_t next; /* slot to replace next */
};

static void entry_free(struct rx_entry *en)
{
	if (en == NULL)
		return;
	pcre2_code_free(en->code);
	op_free(en->pat);
	op_free(en);
}

static void rx_free_aux(void *p)
{
	struct rx_aux *a = p;
	pcre2_code_free(a->fixed);
	for (size_t i = 0; i < RX_CACHE; i++)
		entry_free(a->slot[i]);
	pthread_mutex_destroy(&a->mu);
	op_free(a);
}

static op_err prep_matches(struct op_node *call, char *err, size_t errlen)
{
	const char *pat, *fl = "";
	char msg[200], bad = 0;
	uint32_t opts;
	if (op_expr__lit_str(call, 2, &fl) && !parse_flags(fl, strlen(fl), &opts, &bad))
		return op_expr__perr(
		    err, errlen, call->call.args[2]->col,
		    "MATCHES: argument 3: unknown flag '%c' (expected i, m, s or x)", bad);
	struct rx_aux *a = op_calloc(1, sizeof(*a));
	if (a == NULL)
		goto nomem;
	if (pthread_mutex_init(&a->mu, NULL) != 0) {
		op_free(a);
		goto nomem;
	}
	bool flags_lit = call->call.n < 3 || op_expr__lit_str(call, 2, &fl);
	if (op_expr__lit_str(call, 1, &pat) && flags_lit) {
		(void)parse_flags(fl, strlen(fl), &opts, &bad);
		op_err e = rx_compile(pat, strlen(pat), opts, &a->fixed, msg, sizeof(msg));
		if (e != OP_OK) {
			rx_free_aux(a);
			if (e == OP_ENOMEM)
				goto nomem;
			return op_expr__perr(err, errlen, call->call.args[1]->col,
			                     "MATCHES: argument 2: %s", msg);
		}
	}
	call->call.aux = a;
	return OP_OK;
nomem:
	if (err && errlen)
		snprintf(err, errlen, "out of memory");
	return OP_ENOMEM;
}

/* Drops one use of en (taken by cache_get). */
static void cache_put(struct rx_aux *a, struct rx_entry *en)
{
	pthread_mutex_lock(&a->mu);
	bool gone = --en->refs == 0 && en->dead;
	pthread_mutex_unlock(&a->mu);
	if (gone)
		entry_free(en);
}

/* Finds or compiles the pattern; the entry is held until cache_put. */
static op_err cache_get(struct rx_aux *a, const char *pat, size_t len, uint32_t opts,
                        struct rx_entry **out, char *msg, size_t msglen)
{
	*out = NULL;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < RX_CACHE; i++) {
		struct rx_entry *en = a->slot[i];
		if (en && en->opts == opts && en->len == len && memcmp(en->pat, pat, len) == 0) {
			en->refs++;
			pthread_mutex_unlock(&a->mu);
			*out = en;
			return OP_OK;
		}
	}
	pthread_mutex_unlock(&a->mu);
	/* Compile outside the lock: other patterns keep matching meanwhile. */
	struct rx_entry *en = op_calloc(1, sizeof(*en));
	if (en == NULL || (en->pat = op_strndup(pat, len)) == NULL) {
		entry_free(en);
		snprintf(msg, msglen, "out of memory");
		return OP_ENOMEM;
	}
	en->len = len;
	en->opts = opts;
	en->refs = 1;
	op_err e = rx_compile(pat, len, opts, &en->code, msg, msglen);
	if (e != OP_OK) {
		entry_free(en);
		return e;
	}
	pthread_mutex_lock(&a->mu);
	struct rx_entry *old = a->slot[a->next];
	a->slot[a->next] = en;
	a->next = (a->next + 1) % RX_CACHE;
	bool free_old = false;
	if (old) {
		old->dead = true;
		free_old = old->refs == 0;
	}
	pthread_mutex_unlock(&a->mu);
	if (free_old)
		entry_free(old);
	*out = en;
	return OP_OK;
}

/* ---- MATCHES ---- */

static op_err fn_matches(struct op_expr__ctx *c, const struct op_node *call, struct op_xv *argv,
                         size_t argc, struct op_xv *out)
{
	struct rx_aux *a = call->call.aux;
	const char *name = call->call.fn->name;
	struct rx_entry *en = NULL;
	const pcre2_code *code = a->fixed;
	char msg[200];
	op_err e = op_expr__want_str(c, call, 0, &argv[0]);
	if (e != OP_OK)
		return e;
	if (code == NULL) {
		uint32_t opts = 0;
		char bad = 0;
		e = op_expr__want_str(c, call, 1, &argv[1]);
		if (e == OP_OK && argc > 2)
			e = op_expr__want_str(c, call, 2, &argv[2]);
		if (e != OP_OK)
			return e;
		if (!parse_flags(argc > 2 ? argv[2].s : "", argc > 2 ? argv[2].len : 0, &opts,
		                 &bad))
			return op_expr__fail(
			    c, OP_EINVAL,
			    "%s: argument 3: unknown flag '%c' (expected i, m, s or x)", name, bad);
		e = cache_get(a, argv[1].s, argv[1].len, opts, &en, msg, sizeof(msg));
		if (e == OP_ENOMEM)
			return op_expr__buf_fail(c, call, e);
		if (e != OP_OK)
			return op_expr__fail(c, e, "%s: argument 2: %s", name, msg);
		code = en->code;
	}
	int r = PCRE2_ERROR_NOMEMORY;
	pcre2_match_data *md = rx_init() ? thread_md() : NULL;
	if (md) {
		r = pcre2_match(code, (PCRE2_SPTR)argv[0].s, argv[0].len, 0, 0, md, mctx);
		if (r == PCRE2_ERROR_JIT_STACKLIMIT)
			r = pcre2_match(code, (PCRE2_SPTR)argv[0].s, argv[0].len, 0, PCRE2_NO_JIT,
			                md, mctx);
	}
	if (en)
		cache_put(a, en);
	if (r >= 0 || r == PCRE2_ERROR_NOMATCH) {
		op_expr__xv_bool(out, r >= 0);
		return OP_OK;
	}
	if (r == PCRE2_ERROR_NOMEMORY)
		return op_expr__buf_fail(c, call, OP_ENOMEM);
	if (r == PCRE2_ERROR_MATCHLIMIT || r == PCRE2_ERROR_DEPTHLIMIT ||
	    r == PCRE2_ERROR_HEAPLIMIT || r == PCRE2_ERROR_JIT_STACKLIMIT)
		return op_expr__fail(
		    c, OP_ELIMIT, "%s: the pattern needs too much backtracking on this text", name);
	PCRE2_UCHAR text[160];
	if (pcre2_get_error_message(r, text, sizeof(text)) < 0)
		snprintf((char *)text, sizeof(text), "error %d", r);
	return op_expr__fail(c, OP_EINVAL, "%s: %s", name, (char *)text);
}

const struct op_expr__fn op_expr__fns_regex[] = {
    {"MATCHES", 2, 3, false, fn_matches, prep_matches, rx_free_aux},
    {NULL, 0, 0, false, NULL, NULL, NULL},
};
