/*
 * OAuth2 client-credentials tokens (RFC 6749 section 4.4) and their cache.
 *
 * A token is fetched with a POST of grant_type=client_credentials (plus the
 * account's scope and audience) to its tokenUrl, the client authenticated
 * with HTTP Basic over its form-encoded id and secret (section 2.3.1). The
 * cache keeps one token per account version (name and time of its last
 * change, so an account set again gets a new token) and hands out copies
 * until a little before expires_in runs out: a tenth of the lifetime, at
 * most a minute. The lock is never held while fetching: two executions that
 * miss at once both fetch, and both tokens are good.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/clock.h"
#include "connectors/httpc/httpc_int.h"

#define TOKEN_RESPONSE_MAX (64u << 10)
/* When the server gives no expires_in, use a token until it is refused. */
#define NO_EXPIRY_MS (24LL * 3600 * 1000)

op_err op_httpc__tokens_init(struct op_httpc__tokens *t)
{
	memset(t, 0, sizeof(*t));
	return pthread_mutex_init(&t->mu, NULL) == 0 ? OP_OK : OP_ENOMEM;
}

static void entry_clear(struct op_httpc__token *e)
{
	if (e->token)
		op_free_secret(e->token, strlen(e->token) + 1);
	memset(e, 0, sizeof(*e));
}

void op_httpc__tokens_fini(struct op_httpc__tokens *t)
{
	for (size_t i = 0; i < t->n; i++)
		entry_clear(&t->v[i]);
	pthread_mutex_destroy(&t->mu);
}

static struct op_httpc__token *entry_find(struct op_httpc__tokens *t, const struct op_account *a)
{
	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->v[i].account, a->name) == 0)
			return &t->v[i];
	}
	return NULL;
}

/* A copy of the cached token of a, if it is still good; NULL otherwise. */
static char *cached(struct op_httpc__tokens *t, const struct op_account *a)
{
	char *copy = NULL;
	pthread_mutex_lock(&t->mu);
	struct op_httpc__token *e = entry_find(t, a);
	if (e && e->updated_ms == a->updated_ms && op_mono_ms() < e->use_until_ms)
		copy = op_strdup(e->token);
	pthread_mutex_unlock(&t->mu);
	return copy;
}

/* Keeps token (a copy) for a until use_until. */
static void keep(struct op_httpc__tokens *t, const struct op_account *a, const char *token,
                 long long use_until)
{
	char *copy = op_strdup(token);
	if (copy == NULL)
		return; /* the next execution fetches again */
	pthread_mutex_lock(&t->mu);
	struct op_httpc__token *e = entry_find(t, a);
	if (e == NULL && t->n < OP_HTTPC__TOKENS_MAX) {
		e = &t->v[t->n++];
	} else if (e == NULL) {
		/* Full: the token that runs out first goes. */
		e = &t->v[0];
		for (size_t i = 1; i < t->n; i++) {
			if (t->v[i].use_until_ms < e->use_until_ms)
				e = &t->v[i];
		}
	}
	entry_clear(e);
	snprintf(e->account, sizeof(e->account), "%s", a->name);
	e->updated_ms = a->updated_ms;
	e->token = copy;
	e->use_until_ms = use_until;
	pthread_mutex_unlock(&t->mu);
}

void op_httpc__token_drop(struct op_httpc__tokens *t, const struct op_account *a, const char *token)
{
	pthread_mutex_lock(&t->mu);
	struct op_httpc__token *e = entry_find(t, a);
	if (e && e->token && strcmp(e->token, token) == 0) {
		entry_clear(e);
		*e = t->v[--t->n];
		memset(&t->v[t->n], 0, sizeof(t->v[t->n]));
	}
	pthread_mutex_unlock(&t->mu);
}

/* Wipes and deletes a parsed token response (its strings hold the token). */
static void json_wipe_free(cJSON *j)
{
	for (cJSON *i = j ? j->child : NULL; i; i = i->next) {
		if (cJSON_IsString(i) && i->valuestring)
			explicit_bzero(i->valuestring, strlen(i->valuestring));
	}
	cJSON_Delete(j);
}

/* The token endpoint's refusal: "error" and "error_description" of RFC 6749
 * section 5.2 when it sent them, else the start of its body. */
static op_err refusal(const struct op_account *a, const char *where, long status,
                      const struct op_buf *body, const cJSON *j, char *why, size_t whylen)
{
	op_err cls = status == 400 || status == 401 || status == 403
	                 ? OP_EAUTH
	                 : op_httpc_status_class(status);
	const char *err = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error"));
	const char *desc =
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error_description"));
	if (err)
		return op_errf(why, whylen, cls,
		               "account %s: the token endpoint %s answered %ld: %.100s%s%.200s%s",
		               a->name, where, status, err, desc ? " (" : "", desc ? desc : "",
		               desc ? ")" : "");
	return op_errf(why, whylen, cls, "account %s: the token endpoint %s answered %ld%s%.*s",
	               a->name, where, status, body->len ? ": " : "",
	               (int)(body->len < 200 ? body->len : 200), body->data ? body->data : "");
}

/* Fetches a token; *token and *expires_in (seconds, -1 if not said) on OP_OK. */
static op_err fetch(struct op_httpc *c, const struct op_httpc_req *r, char **token,
                    long long *expires_in, char *why, size_t whylen)
{
	const struct op_account *a = r->auth;
	char where[512];
	op_httpc_url_for_humans(a->token_url, where, sizeof(where));
	struct op_buf form, id, secret;
	op_buf_init(&form, 16384);
	op_buf_init(&id, 4 * OP_ACCOUNT_FIELD_MAX);
	op_buf_init(&secret, 4 * OP_ACCOUNT_FIELD_MAX);
	char *auth = NULL;
	cJSON *j = NULL;
	struct op_httpc_resp resp = {0};
	op_err rc = op_httpc_form_add(&form, "grant_type", "client_credentials");
	if (rc == OP_OK && a->scope)
		rc = op_httpc_form_add(&form, "scope", a->scope);
	if (rc == OP_OK && a->audience)
		rc = op_httpc_form_add(&form, "audience", a->audience);
	if (rc == OP_OK)
		rc = op_httpc_escape(&id, a->client_id, strlen(a->client_id));
	if (rc == OP_OK)
		rc = op_httpc_escape(&secret, a->client_secret, strlen(a->client_secret));
	if (rc == OP_OK)
		rc = op_httpc__basic("Authorization: Basic ", op_buf_str(&id), op_buf_str(&secret),
		                     &auth);
	if (rc) {
		rc = op_errf(why, whylen, rc == OP_ENOMEM ? OP_ENOMEM : OP_EINVAL, "account %s: %s",
		             a->name,
		             rc == OP_ENOMEM ? "out of memory" : "scope or audience too long");
		goto out;
	}
	static const struct op_httpc_header hdrs[] = {
	    {"Content-Type", "application/x-www-form-urlencoded"},
	    {"Accept", "application/json"},
	};
	struct op_httpc_req tr = {
	    .method = "POST",
	    .url = a->token_url,
	    .headers = hdrs,
	    .n_headers = sizeof(hdrs) / sizeof(hdrs[0]),
	    .body = form.data,
	    .body_len = form.len,
	    .ca_file = r->ca_file,
	    .insecure = r->insecure,
	    .timeout_ms = r->timeout_ms,
	    .connect_timeout_ms = r->connect_timeout_ms,
	    .max_body = TOKEN_RESPONSE_MAX,
	    .cancelled = r->cancelled,
	    .cancel_ud = r->cancel_ud,
	};
	char inner[768];
	rc = op_httpc__exchange(c, &tr, auth, &resp, inner, sizeof(inner));
	if (rc) {
		rc = op_errf(why, whylen, rc, "account %s: no token: %s", a->name, inner);
		goto out;
	}
	j = cJSON_ParseWithLength(resp.body.data ? resp.body.data : "", resp.body.len);
	if (resp.status != 200) {
		rc = refusal(a, where, resp.status, &resp.body, j, why, whylen);
		goto out;
	}
	const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "access_token");
	const cJSON *tt = cJSON_GetObjectItemCaseSensitive(j, "token_type");
	const cJSON *ei = cJSON_GetObjectItemCaseSensitive(j, "expires_in");
	if (!cJSON_IsString(at) || at->valuestring[0] == '\0') {
		rc = op_errf(why, whylen, OP_EPARSE,
		             "account %s: the token endpoint %s answered 200 without an "
		             "access_token",
		             a->name, where);
		goto out;
	}
	if (tt && (!cJSON_IsString(tt) || strcasecmp(tt->valuestring, "bearer") != 0)) {
		rc = op_errf(why, whylen, OP_EUNSUPPORTED,
		             "account %s: the token endpoint %s gave a token of type \"%.40s\"; "
		             "only bearer tokens are supported",
		             a->name, where, cJSON_IsString(tt) ? tt->valuestring : "?");
		goto out;
	}
	*expires_in = cJSON_IsNumber(ei) && ei->valuedouble > 0 && ei->valuedouble < 1e9
	                  ? (long long)ei->valuedouble
	                  : -1;
	*token = op_strdup(at->valuestring);
	if (*token == NULL)
		rc = op_errf(why, whylen, OP_ENOMEM, "out of memory");
out:
	json_wipe_free(j);
	if (resp.body.data)
		explicit_bzero(resp.body.data, resp.body.len);
	op_httpc_resp_fini(&resp);
	if (auth)
		op_free_secret(auth, strlen(auth) + 1);
	if (secret.data)
		explicit_bzero(secret.data, secret.len);
	op_buf_fini(&secret);
	op_buf_fini(&id);
	op_buf_fini(&form);
	return rc;
}

op_err op_httpc__token_get(struct op_httpc *c, struct op_httpc__tokens *t,
                           const struct op_httpc_req *r, bool force, char **token, bool *fresh,
                           char *why, size_t whylen)
{
	*token = NULL;
	*fresh = false;
	if (!force && (*token = cached(t, r->auth)) != NULL)
		return OP_OK;
	long long expires_in = -1;
	long long t0 = op_mono_ms();
	op_err rc = fetch(c, r, token, &expires_in, why, whylen);
	if (rc)
		return rc;
	*fresh = true;
	long long life = expires_in < 0 ? NO_EXPIRY_MS : expires_in * 1000;
	long long skew = life / 10 < 60000 ? life / 10 : 60000;
	keep(t, r->auth, *token, t0 + life - skew);
	return OP_OK;
}
