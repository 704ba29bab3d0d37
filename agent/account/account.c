/*
 * The account model: one table of fields says, per type, which fields exist
 * and which are required; parse, to_json, describe and free all walk it, so a
 * field added to the table is parsed, sealed, shown (if not secret) and wiped
 * without further code.
 */
#include "agent/account/account.h"

#include <ctype.h>
#include <stddef.h>
#include <string.h>

#include "agent/core/alloc.h"

/* Per type: absent (0), optional (1) or required (2). */
struct field {
	const char *key;
	size_t off;
	bool secret;
	unsigned char use[5]; /* indexed by enum op_account_type */
};

#define OFF(m) offsetof(struct op_account, m)
static const struct field fields[] = {
    /*                                    basic key bearer oauth2 cert */
    {"username", OFF(username), false, {2, 2, 0, 0, 0}},
    {"password", OFF(password), true, {2, 0, 0, 0, 0}},
    {"privateKey", OFF(private_key), true, {0, 2, 0, 0, 2}},
    {"passphrase", OFF(passphrase), true, {0, 1, 0, 0, 1}},
    {"token", OFF(token), true, {0, 0, 2, 0, 0}},
    {"tokenUrl", OFF(token_url), false, {0, 0, 0, 2, 0}},
    {"clientId", OFF(client_id), false, {0, 0, 0, 2, 0}},
    {"clientSecret", OFF(client_secret), true, {0, 0, 0, 2, 0}},
    {"scope", OFF(scope), false, {0, 0, 0, 1, 0}},
    {"audience", OFF(audience), false, {0, 0, 0, 1, 0}},
    {"certificate", OFF(certificate), false, {0, 0, 0, 0, 2}},
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static const char *const type_names[] = {"basic", "key", "bearer", "oauth2", "certificate"};

static char **slot(struct op_account *a, const struct field *f)
{
	return (char **)((char *)a + f->off);
}

static char *const *cslot(const struct op_account *a, const struct field *f)
{
	return (char *const *)((const char *)a + f->off);
}

bool op_account_name_ok(const char *name)
{
	if (name == NULL || !isalnum((unsigned char)name[0]))
		return false;
	size_t n = 0;
	for (; name[n]; n++) {
		unsigned char c = (unsigned char)name[n];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return n <= OP_ACCOUNT_NAME_MAX;
}

const char *op_account_type_name(enum op_account_type t)
{
	return (unsigned)t < sizeof(type_names) / sizeof(type_names[0]) ? type_names[t] : "?";
}

bool op_account_type_parse(const char *s, enum op_account_type *out)
{
	for (size_t i = 0; s && i < sizeof(type_names) / sizeof(type_names[0]); i++) {
		if (strcmp(s, type_names[i]) == 0) {
			*out = (enum op_account_type)i;
			return true;
		}
	}
	return false;
}

static const struct field *field_of(const char *key)
{
	for (size_t i = 0; i < NFIELDS; i++) {
		if (strcmp(fields[i].key, key) == 0)
			return &fields[i];
	}
	return NULL;
}

/* Checks the type's fields in doc and copies them into a. */
static op_err take_fields(struct op_account *a, const cJSON *doc, struct op_diag *d)
{
	op_err rc = OP_OK;
	const char *tname = op_account_type_name(a->type);
	for (const cJSON *c = doc->child; c; c = c->next) {
		const char *k = c->string ? c->string : "";
		if (strcmp(k, "type") == 0)
			continue;
		if (strcmp(k, "updated") == 0) {
			if (!cJSON_IsNumber(c) || c->valuedouble < 0) {
				op_diag_add_at(d, "updated",
				               "expected a time in Unix milliseconds");
				rc = OP_ECONFIG;
			} else {
				a->updated_ms = (int64_t)c->valuedouble;
			}
			continue;
		}
		const struct field *f = field_of(k);
		if (f == NULL || f->use[a->type] == 0) {
			op_diag_add_at(d, k, "unknown key for a %s account", tname);
			rc = OP_ECONFIG;
			continue;
		}
		if (!cJSON_IsString(c) || c->valuestring == NULL) {
			op_diag_add_at(d, k, "expected a string");
			rc = OP_ECONFIG;
			continue;
		}
		size_t n = strlen(c->valuestring);
		if (n > OP_ACCOUNT_FIELD_MAX) {
			op_diag_add_at(d, k, "longer than %u bytes", OP_ACCOUNT_FIELD_MAX);
			rc = OP_ECONFIG;
			continue;
		}
		if (n == 0 && f->use[a->type] == 2) {
			op_diag_add_at(d, k, "must not be empty");
			rc = OP_ECONFIG;
			continue;
		}
		char **p = slot(a, f);
		if (*p != NULL) {
			op_diag_add_at(d, k, "given twice");
			rc = OP_ECONFIG;
			continue;
		}
		if ((*p = op_strdup(c->valuestring)) == NULL)
			return OP_ENOMEM;
	}
	for (size_t i = 0; i < NFIELDS; i++) {
		if (fields[i].use[a->type] == 2 && *slot(a, &fields[i]) == NULL &&
		    cJSON_GetObjectItemCaseSensitive(doc, fields[i].key) == NULL) {
			op_diag_add_at(d, fields[i].key, "missing: a %s account needs it", tname);
			rc = OP_ECONFIG;
		}
	}
	if (a->type == OP_ACCOUNT_OAUTH2 && a->token_url != NULL &&
	    strncmp(a->token_url, "https://", 8) != 0 && strncmp(a->token_url, "http://", 7) != 0) {
		op_diag_add_at(d, "tokenUrl", "expected an http:// or https:// URL");
		rc = OP_ECONFIG;
	}
	return rc;
}

op_err op_account_parse(const char *name, const cJSON *doc, struct op_account **out,
                        struct op_diag *d)
{
	*out = NULL;
	op_err rc = OP_OK;
	if (!op_account_name_ok(name)) {
		op_diag_add_at(d, "name",
		               "'%s' is not an account name: 1 to %d letters, digits, '.', '_' "
		               "or '-', starting with a letter or digit",
		               name ? name : "", OP_ACCOUNT_NAME_MAX);
		rc = OP_ECONFIG;
	}
	if (!cJSON_IsObject(doc)) {
		op_diag_add_at(d, "", "expected a JSON object");
		return OP_ECONFIG;
	}
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "type");
	enum op_account_type type;
	if (!cJSON_IsString(t) || !op_account_type_parse(t->valuestring, &type)) {
		op_diag_add_at(d, "type",
		               "expected one of basic, key, bearer, oauth2, certificate");
		return OP_ECONFIG;
	}
	struct op_account *a = op_calloc(1, sizeof(*a));
	if (a == NULL)
		return OP_ENOMEM;
	a->type = type;
	if (rc == OP_OK)
		memcpy(a->name, name, strlen(name) + 1);
	op_err e = take_fields(a, doc, d);
	if (e == OP_ENOMEM || rc != OP_OK || e != OP_OK) {
		op_account_free(a);
		return e == OP_ENOMEM ? OP_ENOMEM : OP_ECONFIG;
	}
	*out = a;
	return OP_OK;
}

static cJSON *to_json(const struct op_account *a, bool secrets)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL)
		return NULL;
	bool ok = cJSON_AddStringToObject(o, "type", op_account_type_name(a->type)) != NULL;
	if (!secrets)
		ok = ok && cJSON_AddStringToObject(o, "name", a->name) != NULL;
	for (size_t i = 0; ok && i < NFIELDS; i++) {
		const char *v = *cslot(a, &fields[i]);
		if (v != NULL && (secrets || !fields[i].secret))
			ok = cJSON_AddStringToObject(o, fields[i].key, v) != NULL;
	}
	if (ok && a->updated_ms > 0)
		ok = cJSON_AddNumberToObject(o, "updated", (double)a->updated_ms) != NULL;
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

cJSON *op_account_to_json(const struct op_account *a)
{
	return to_json(a, true);
}

cJSON *op_account_describe(const struct op_account *a)
{
	return to_json(a, false);
}

void op_account_json_free(cJSON *doc)
{
	if (doc == NULL)
		return;
	for (cJSON *c = doc->child; c; c = c->next) {
		if (cJSON_IsString(c) && c->valuestring)
			explicit_bzero(c->valuestring, strlen(c->valuestring));
	}
	cJSON_Delete(doc);
}

void op_account_free(struct op_account *a)
{
	if (a == NULL)
		return;
	for (size_t i = 0; i < NFIELDS; i++) {
		char **p = slot(a, &fields[i]);
		if (*p != NULL) {
			explicit_bzero(*p, strlen(*p));
			op_free(*p);
		}
	}
	explicit_bzero(a, sizeof(*a));
	op_free(a);
}
