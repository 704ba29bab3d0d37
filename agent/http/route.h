/*
 * Path templates and the route table used by HTTP triggers and the admin
 * endpoint. A template is a '/'-separated list of segments, each either a
 * literal ("orders"), a parameter ("{id}") or, as the last segment only, a
 * wildcard ("{rest*}") that takes zero or more remaining segments. A request
 * path is split on '/' before percent-decoding, so an encoded slash can never
 * change which route matches; it is rejected (400) because parameters are
 * later used to build file names, SQL keys and URLs. Key invariant: matching
 * is deterministic and independent of the order routes were added in (except
 * that exact duplicates are refused): at the first segment where two matching
 * routes differ, a literal beats a parameter and a parameter beats a wildcard.
 */
#ifndef OP_HTTP_ROUTE_H
#define OP_HTTP_ROUTE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "agent/core/err.h"

/* Limits on templates and on the paths matched against them. */
#define OP_HTTP_ROUTE_MAX_SEGMENTS 32
#define OP_HTTP_ROUTE_MAX_NAME     64

struct op_http_route;
struct op_http_router;

/*
 * Compiles a template ("/orders/{id}"). Errors: OP_ECONFIG with a message in
 * err naming the problem and its position (missing leading '/', empty or
 * unterminated "{}", bad name characters, a parameter that is not a whole
 * segment, a duplicate name, a wildcard that is not last, '%' or characters
 * outside RFC 3986 pchar in a literal, too many segments); OP_ENOMEM. On error
 * *out is NULL. The caller frees the route with op_http_route_free().
 */
op_err op_http_route_compile(const char *tmpl, struct op_http_route **out, char *err,
                             size_t errlen) OP_WUR;
void op_http_route_free(struct op_http_route *r);
/* The template text the route was compiled from; valid while r lives. */
const char *op_http_route_template(const struct op_http_route *r);

/*
 * Matches a raw (still percent-encoded, no query) request path against r.
 * On a match returns OP_OK and, when params is not NULL, a new object
 * {name: decoded value} that the caller deletes. Errors: OP_ENOTFOUND (no
 * match), OP_EINVAL (bad percent-encoding, an encoded '/' or NUL, too many
 * segments: answer 400), OP_ENOMEM. On error *params is NULL.
 */
op_err op_http_route_match(const struct op_http_route *r, const char *path, cJSON **params) OP_WUR;

/* A route table: method + template -> a caller pointer (borrowed). */
struct op_http_router *op_http_router_new(void);
void op_http_router_free(struct op_http_router *rt);

/*
 * Adds a route. method is an upper-case token ("GET") or "*" for any method.
 * target is stored, not owned; it must outlive the table. Errors: OP_ECONFIG
 * for a bad template or method or when a route with the same method and the
 * same shape (same literals, parameters in the same places, names aside)
 * exists, with the reason in err; OP_ENOMEM. On error the table is unchanged.
 * Not thread-safe against concurrent matches: build the table, then share it.
 */
op_err op_http_router_add(struct op_http_router *rt, const char *method, const char *tmpl,
                          void *target, char *err, size_t errlen) OP_WUR;

struct op_http_match {
	void *target;     /* the matched route's target */
	const char *tmpl; /* its template; valid while the table lives */
	cJSON *params;    /* owned by the match: op_http_match_fini() */
	char allow[128];  /* on OP_EUNSUPPORTED: "GET, POST" for the Allow header */
};

/*
 * Finds the most specific route for method and raw path. HEAD also matches
 * GET routes. Returns OP_OK with m filled; OP_ENOTFOUND when no template
 * matches the path (404); OP_EUNSUPPORTED when templates match the path but
 * not for this method (405, m->allow lists the methods); OP_EINVAL for a
 * malformed path (400); OP_ENOMEM. Thread-safe for concurrent readers.
 */
op_err op_http_router_match(const struct op_http_router *rt, const char *method, const char *path,
                            struct op_http_match *m) OP_WUR;
void op_http_match_fini(struct op_http_match *m);

#endif
