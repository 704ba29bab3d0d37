/*
 * The CSV reader and writer (see csv.h). The reader is one pass with a
 * field buffer; a record is kept as an array of strings until it is turned
 * into an object under the header's names.
 */
#include "connectors/file/csv.h"

#include <stdio.h>
#include <string.h>

#include "agent/core/json.h"

#define FIELD_MAX (16u << 20)

/* Adds the finished record to out (an object under hdr's names, or as is). */
static op_err add_record(cJSON *out, cJSON *rec, const cJSON *hdr, size_t line, char *err,
                         size_t errlen)
{
	if (hdr == NULL)
		return cJSON_AddItemToArray(out, rec) ? OP_OK : OP_ENOMEM;
	int nh = cJSON_GetArraySize(hdr), nr = cJSON_GetArraySize(rec);
	if (nr > nh) {
		cJSON_Delete(rec);
		return op_errf(err, errlen, OP_EPARSE, "line %zu: %d fields, the header names %d",
		               line, nr, nh);
	}
	cJSON *obj = cJSON_CreateObject();
	op_err rc = obj ? OP_OK : OP_ENOMEM;
	const cJSON *name = hdr->child;
	for (cJSON *f = rec->child; rc == OP_OK && name; name = name->next) {
		cJSON *v = f ? cJSON_CreateString(f->valuestring) : cJSON_CreateString("");
		if (v == NULL || !cJSON_AddItemToObject(obj, name->valuestring, v)) {
			cJSON_Delete(v);
			rc = OP_ENOMEM;
		}
		f = f ? f->next : NULL;
	}
	cJSON_Delete(rec);
	if (rc == OP_OK && !cJSON_AddItemToArray(out, obj))
		rc = OP_ENOMEM;
	if (rc)
		cJSON_Delete(obj);
	return rc;
}

op_err op_csv_parse(const char *s, size_t len, char delim, bool header, cJSON **out, char *err,
                    size_t errlen)
{
	*out = NULL;
	cJSON *rows = cJSON_CreateArray(), *hdr = NULL, *rec = NULL;
	struct op_buf f;
	op_buf_init(&f, FIELD_MAX);
	op_err rc = rows ? OP_OK : OP_ENOMEM;
	size_t line = 1, rec_line = 1;
	bool quoted = false, was_quoted = false, field_open = false;
	for (size_t i = 0; i <= len && rc == OP_OK; i++) {
		bool end = i == len;
		char c = end ? '\n' : s[i];
		if (quoted) {
			if (end) {
				rc = op_errf(err, errlen, OP_EPARSE,
				             "line %zu: a quoted field is not closed", rec_line);
			} else if (c == '"' && i + 1 < len && s[i + 1] == '"') {
				rc = op_buf_addc(&f, '"');
				i++;
			} else if (c == '"') {
				quoted = false;
			} else {
				if (c == '\n')
					line++;
				rc = op_buf_addc(&f, c);
			}
			continue;
		}
		if (c == '"' && !field_open) {
			quoted = was_quoted = field_open = true;
			continue;
		}
		if (c == '"' || (was_quoted && c != delim && c != '\n' && c != '\r')) {
			rc = op_errf(err, errlen, OP_EPARSE,
			             "line %zu: a quote inside a field that is not quoted, or text "
			             "after a quoted one",
			             line);
			break;
		}
		if (c == '\r' && i + 1 < len && s[i + 1] == '\n')
			continue; /* CRLF: the LF ends the record */
		if (c == delim || c == '\n') {
			if (c == '\n' && !field_open && rec == NULL && !was_quoted) {
				if (end)
					break;
				rec_line = ++line; /* a blank line is no record */
				continue;
			}
			if (rec == NULL && (rec = cJSON_CreateArray()) == NULL) {
				rc = OP_ENOMEM;
				break;
			}
			cJSON *v = cJSON_CreateString(op_buf_str(&f));
			if (v == NULL || !cJSON_AddItemToArray(rec, v)) {
				cJSON_Delete(v);
				rc = OP_ENOMEM;
				break;
			}
			op_buf_reset(&f);
			was_quoted = field_open = false;
			if (c == '\n') {
				if (header && hdr == NULL)
					hdr = rec;
				else
					rc = add_record(rows, rec, hdr, rec_line, err, errlen);
				rec = NULL;
				rec_line = ++line;
			} else {
				field_open = false;
			}
			continue;
		}
		field_open = true;
		rc = op_buf_addc(&f, c);
	}
	if (rc == OP_ELIMIT)
		rc = op_errf(err, errlen, OP_EPARSE, "line %zu: a field over %u bytes", rec_line,
		             FIELD_MAX);
	else if (rc == OP_ENOMEM)
		op_errf(err, errlen, rc, "out of memory");
	op_buf_fini(&f);
	cJSON_Delete(rec);
	cJSON_Delete(hdr);
	if (rc) {
		cJSON_Delete(rows);
		return rc;
	}
	*out = rows;
	return OP_OK;
}

static op_err write_field(struct op_buf *b, const cJSON *v, char delim)
{
	struct op_buf t;
	op_buf_init(&t, b->max);
	op_err rc = OP_OK;
	if (cJSON_IsString(v))
		rc = op_buf_adds(&t, v->valuestring);
	else if (v != NULL && !cJSON_IsNull(v))
		rc = op_json_append(&t, v, OP_JSON_COMPACT);
	const char *s = op_buf_str(&t);
	char special[] = {delim, '"', '\r', '\n', '\0'};
	if (rc == OP_OK && strpbrk(s, special) == NULL) {
		rc = op_buf_add(b, s, t.len);
	} else if (rc == OP_OK) {
		rc = op_buf_addc(b, '"');
		for (size_t i = 0; i < t.len && rc == OP_OK; i++)
			rc = s[i] == '"' ? op_buf_adds(b, "\"\"") : op_buf_addc(b, s[i]);
		if (rc == OP_OK)
			rc = op_buf_addc(b, '"');
	}
	op_buf_fini(&t);
	return rc;
}

op_err op_csv_write(struct op_buf *b, const cJSON *rows, char delim, bool header, char *err,
                    size_t errlen)
{
	if (!cJSON_IsArray(rows))
		return op_errf(err, errlen, OP_EINVAL, "CSV takes an array of rows, got %s",
		               op_json_kind(rows));
	const cJSON *first = rows->child;
	bool objects = cJSON_IsObject(first);
	op_err rc = OP_OK;
	if (header && objects) {
		for (const cJSON *k = first->child; k && rc == OP_OK; k = k->next) {
			struct cJSON name = {.type = cJSON_String, .valuestring = k->string};
			if (k != first->child)
				rc = op_buf_addc(b, delim);
			if (rc == OP_OK)
				rc = write_field(b, &name, delim);
		}
		if (rc == OP_OK)
			rc = op_buf_adds(b, "\r\n");
	}
	size_t i = 0;
	for (const cJSON *r = rows->child; r && rc == OP_OK; r = r->next, i++) {
		if (objects ? !cJSON_IsObject(r) : !cJSON_IsArray(r))
			return op_errf(err, errlen, OP_EINVAL,
			               "row %zu: expected %s like the first row, got %s", i,
			               objects ? "an object" : "an array", op_json_kind(r));
		if (objects) {
			for (const cJSON *k = first->child; k && rc == OP_OK; k = k->next) {
				if (k != first->child)
					rc = op_buf_addc(b, delim);
				if (rc == OP_OK)
					rc = write_field(
					    b, cJSON_GetObjectItemCaseSensitive(r, k->string),
					    delim);
			}
		} else {
			for (const cJSON *v = r->child; v && rc == OP_OK; v = v->next) {
				if (v != r->child)
					rc = op_buf_addc(b, delim);
				if (rc == OP_OK)
					rc = write_field(b, v, delim);
			}
		}
		if (rc == OP_OK)
			rc = op_buf_adds(b, "\r\n");
	}
	if (rc == OP_ELIMIT)
		return op_errf(err, errlen, rc, "the CSV text is over %zu bytes", b->max);
	if (rc)
		return op_errf(err, errlen, rc, "out of memory");
	return OP_OK;
}
