/*
 * Unit tests of the JSON Schema validator (connectors/validate/schema.h),
 * self-contained (the official suite runs separately, in `make
 * conformance`): compile errors and their messages, error lines with
 * instance and schema paths, the max-errors cap, formats, $ref / $defs /
 * $anchor / $dynamicRef, draft-07 against 2020-12, ECMA-262 patterns,
 * nesting and recursion bounds, concurrent validation and out-of-memory.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/buf.h"
#include "connectors/validate/schema.h"
#include "tests/unit/test.h"

static char err[1024];

/* Compiles schema text with opts (NULL: defaults); returns the class. */
static op_err compile_text(const char *text, const struct op_schema_opts *opts,
                           struct op_schema **out)
{
	cJSON *j = op_test_json(text);
	op_err e = op_schema_compile_opts(j, opts, out, err, sizeof(err));
	cJSON_Delete(j);
	return e;
}

static struct op_schema *compile_ok(const char *text, const struct op_schema_opts *opts)
{
	struct op_schema *s = NULL;
	op_err e = compile_text(text, opts, &s);
	ck_assert_msg(e == OP_OK, "compile %s: %s (%s)", text, op_err_name(e), err);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* Asserts that compiling text fails with OP_ECONFIG and a message holding
 * want. */
static void compile_fails(const char *text, int draft, const char *want)
{
	struct op_schema_opts o = {.draft = draft};
	struct op_schema *s = (struct op_schema *)&s; /* must be reset to NULL */
	op_err e = compile_text(text, &o, &s);
	ck_assert_msg(e == OP_ECONFIG, "compile %s: %s, expected config", text, op_err_name(e));
	ck_assert_ptr_null(s);
	ck_assert_msg(strstr(err, want) != NULL, "compile %s: message \"%s\" lacks \"%s\"", text,
	              err, want);
}

/* Validates instance text; asserts OP_OK and that errors lines come iff
 * invalid. Returns the verdict. */
static bool valid_with(const struct op_schema *s, const char *instance)
{
	cJSON *in = op_test_json(instance);
	bool v1 = true, v2 = true;
	struct op_buf b;
	op_buf_init(&b, 1 << 16);
	ck_assert_int_eq(op_schema_validate(s, in, &v1, NULL, 0), OP_OK);
	ck_assert_int_eq(op_schema_validate(s, in, &v2, &b, 10), OP_OK);
	ck_assert_msg(v1 == v2, "%s: verdict changes with an error sink", instance);
	ck_assert_msg(v1 == (b.len == 0), "%s: valid=%d with errors \"%s\"", instance, v1,
	              op_buf_str(&b));
	op_buf_fini(&b);
	cJSON_Delete(in);
	return v1;
}

static bool valid(const char *schema, int draft, const char *instance)
{
	struct op_schema_opts o = {.draft = draft};
	struct op_schema *s = compile_ok(schema, &o);
	bool v = valid_with(s, instance);
	op_schema_free(s);
	return v;
}

/* The error lines of validating instance, max lines at most; caller frees. */
static char *errors_of(const struct op_schema *s, const char *instance, size_t max)
{
	cJSON *in = op_test_json(instance);
	bool v = true;
	struct op_buf b;
	op_buf_init(&b, 1 << 16);
	ck_assert_int_eq(op_schema_validate(s, in, &v, &b, max), OP_OK);
	ck_assert(!v);
	cJSON_Delete(in);
	char *text = op_buf_take(&b);
	return text != NULL ? text : op_strdup("");
}

static size_t count_lines(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

START_TEST(compile_errors_name_the_location)
{
	compile_fails("{\"minimum\": \"5\"}", 0, "#/minimum: expected a number");
	compile_fails("{\"properties\": {\"age\": {\"maxLength\": -1}}}", 0,
	              "#/properties/age/maxLength: expected a non-negative integer");
	compile_fails("{\"required\": [\"a\", 3]}", 0, "#/required/1: expected a string");
	compile_fails("{\"type\": \"text\"}", 0, "#/type");
	compile_fails("{\"allOf\": []}", 0, "#/allOf: expected a non-empty array of schemas");
	compile_fails("{\"items\": 3}", 0, "#/items: expected a schema");
	compile_fails("{\"multipleOf\": 0}", 0, "#/multipleOf: expected a number > 0");
	compile_fails("{\"$ref\": \"#/$defs/missing\"}", 0, "#/$ref: cannot resolve");
	compile_fails("{\"$ref\": \"#nowhere\"}", 0, "no such anchor");
	compile_fails("{\"$ref\": \"https://example.com/other.json\"}", 0,
	              "unknown document https://example.com/other.json");
	compile_fails("{\"pattern\": \"(a\"}", 0, "#/pattern: invalid regular expression");
	compile_fails("{\"patternProperties\": {\"[z-a]\": true}}", 0,
	              "#/patternProperties/[z-a]: invalid regular expression");
	/* PCRE2 would take these; ECMA-262 does not. */
	compile_fails("{\"pattern\": \"\\\\Aabc\"}", 0, "not in ECMA-262");
	compile_fails("{\"pattern\": \"(?i)abc\"}", 0, "not in ECMA-262");
	compile_fails("{\"pattern\": \"\\\\p{NoSuchProperty}\"}", 0, "invalid regular expression");
	/* A $ref loop that never reaches into the instance. */
	compile_fails("{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/b\"}, \"b\": {\"$ref\": "
	              "\"#/$defs/a\"}}, \"$ref\": \"#/$defs/a\"}",
	              0, "#");
	compile_fails("{\"$schema\": \"http://json-schema.org/draft-04/schema#\"}", 0, "$schema");
	/* Unknown keywords are not errors. */
	struct op_schema *s = compile_ok("{\"x-vendor\": {\"minimum\": \"no\"}}", NULL);
	op_schema_free(s);

	/* Argument errors. */
	struct op_schema *out = NULL;
	cJSON *t = cJSON_CreateTrue();
	ck_assert_int_eq(op_schema_compile(NULL, 0, &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_int_eq(op_schema_compile(t, 0, NULL, err, sizeof(err)), OP_EINVAL);
	ck_assert_int_eq(op_schema_compile(t, 6, &out, err, sizeof(err)), OP_EINVAL);
	ck_assert_ptr_null(out);
	/* A short error buffer truncates, never overflows. */
	char small[8];
	cJSON *bad = op_test_json("{\"minimum\": \"5\"}");
	ck_assert_int_eq(op_schema_compile(bad, 0, &out, small, sizeof(small)), OP_ECONFIG);
	ck_assert_uint_eq(strlen(small), sizeof(small) - 1);
	ck_assert_int_eq(op_schema_compile(bad, 0, &out, NULL, 0), OP_ECONFIG);
	cJSON_Delete(bad);
	cJSON_Delete(t);
	op_schema_free(NULL);
}
END_TEST

START_TEST(errors_give_instance_and_schema_paths)
{
	struct op_schema *s =
	    compile_ok("{\"type\": \"object\", \"required\": [\"id\", \"items\"],"
	               " \"properties\": {\"id\": {\"type\": \"string\", \"minLength\": 3},"
	               "  \"items\": {\"type\": \"array\", \"items\": {\"type\": \"object\","
	               "   \"properties\": {\"price\": {\"type\": \"number\", \"minimum\": 0},"
	               "    \"a/b~c\": {\"const\": 1}}}}},"
	               " \"additionalProperties\": false}",
	               NULL);
	char *e = errors_of(s,
	                    "{\"id\": \"ab\", \"items\": [{\"price\": 1}, {\"price\": -2, "
	                    "\"a/b~c\": 2}], \"x\": 1}",
	                    10);
	ck_assert_str_eq(
	    e, "/id: must be at least 3 characters long (found 2) "
	       "(#/properties/id/minLength)\n"
	       "/items/1/price: must be >= 0 "
	       "(#/properties/items/items/properties/price/minimum)\n"
	       "/items/1/a~1b~0c: must be equal to the constant "
	       "(#/properties/items/items/properties/a~1b~0c/const)\n"
	       "/x: is not allowed here (the schema is false) (#/additionalProperties)\n");
	op_free(e);
	e = errors_of(s, "{\"items\": []}", 10);
	ck_assert_msg(strstr(e, "(root): ") == e, "%s", e);
	ck_assert_msg(strstr(e, "\"id\"") != NULL && strstr(e, "(#/required)") != NULL, "%s", e);
	op_free(e);
	e = errors_of(s, "[]", 10);
	ck_assert_msg(strstr(e, "(root): ") == e && strstr(e, "(#/type)\n") != NULL, "%s", e);
	op_free(e);
	ck_assert(valid_with(s, "{\"id\": \"abc\", \"items\": [{\"price\": 0}]}"));
	op_schema_free(s);

	/* Under anyOf, one line for the keyword, not the branches' reasons. */
	s = compile_ok("{\"properties\": {\"v\": {\"anyOf\": [{\"type\": \"string\"}, "
	               "{\"minimum\": 10}]}}}",
	               NULL);
	e = errors_of(s, "{\"v\": 3}", 10);
	ck_assert_int_eq(count_lines(e), 1);
	ck_assert_msg(strncmp(e, "/v: ", 4) == 0 && strstr(e, "(#/properties/v/anyOf)\n"), "%s", e);
	op_free(e);
	op_schema_free(s);

	/* A $ref into another document names that document. */
	cJSON *defs = op_test_json("{\"$defs\": {\"pos\": {\"minimum\": 0}}}");
	struct op_schema_doc doc = {.uri = "http://example.com/defs.json", .json = defs};
	struct op_schema_opts o = {.docs = &doc, .ndocs = 1};
	s = compile_ok("{\"$ref\": \"http://example.com/defs.json#/$defs/pos\"}", &o);
	cJSON_Delete(defs); /* the schema keeps its own copy */
	e = errors_of(s, "-1", 10);
	ck_assert_str_eq(
	    e, "(root): must be >= 0 (http://example.com/defs.json#/$defs/pos/minimum)\n");
	op_free(e);
	ck_assert(valid_with(s, "1"));
	op_schema_free(s);
}
END_TEST

START_TEST(max_errors_caps_the_lines)
{
	struct op_schema *s =
	    compile_ok("{\"items\": {\"type\": \"integer\"}, \"maxItems\": 2}", NULL);
	const char *bad = "[\"a\", \"b\", \"c\", \"d\", \"e\"]";
	char *e = errors_of(s, bad, 100);
	ck_assert_uint_eq(count_lines(e), 6);
	op_free(e);
	e = errors_of(s, bad, 2);
	ck_assert_uint_eq(count_lines(e), 2);
	op_free(e);
	e = errors_of(s, bad, 1);
	ck_assert_uint_eq(count_lines(e), 1);
	op_free(e);
	/* max_errors 0: the verdict without lines. */
	cJSON *in = op_test_json(bad);
	struct op_buf b;
	bool v = true;
	op_buf_init(&b, 1 << 16);
	ck_assert_int_eq(op_schema_validate(s, in, &v, &b, 0), OP_OK);
	ck_assert(!v);
	ck_assert_uint_eq(b.len, 0);
	/* A full error buffer is a limit, not silent truncation. */
	struct op_buf tiny;
	op_buf_init(&tiny, 16);
	ck_assert_int_eq(op_schema_validate(s, in, &v, &tiny, 10), OP_ELIMIT);
	ck_assert(!v);
	op_buf_fini(&tiny);
	/* NULL arguments. */
	ck_assert_int_eq(op_schema_validate(NULL, in, &v, NULL, 0), OP_EINVAL);
	ck_assert_int_eq(op_schema_validate(s, NULL, &v, NULL, 0), OP_EINVAL);
	ck_assert_int_eq(op_schema_validate(s, in, NULL, NULL, 0), OP_EINVAL);
	op_buf_fini(&b);
	cJSON_Delete(in);
	op_schema_free(s);
}
END_TEST

struct fcase {
	const char *format, *value;
	bool ok;
};

START_TEST(formats_asserted_on_request)
{
	static const struct fcase cases[] = {
	    {"date-time", "2024-02-29T23:59:60Z", true},
	    {"date-time", "2024-02-29T12:00:00.5+02:00", true},
	    {"date-time", "2023-02-29T12:00:00Z", false},
	    {"date-time", "2024-01-01 12:00:00Z", false},
	    {"date-time", "2024-01-01T12:00:00", false},
	    {"date", "2024-12-31", true},
	    {"date", "2024-13-01", false},
	    {"time", "08:30:06.283185Z", true},
	    {"time", "8:30:06Z", false},
	    {"duration", "P1Y2M3DT4H5M6S", true},
	    {"duration", "P2W", true},
	    {"duration", "P1Y2D", false},
	    {"duration", "PT", false},
	    {"email", "joe.bloggs@example.com", true},
	    {"email", "\"joe bloggs\"@example.com", true},
	    {"email", "joe@[127.0.0.1]", true},
	    {"email", "joe..bloggs@example.com", false},
	    {"email", "joe.example.com", false},
	    {"email", "café@example.com", false},
	    {"idn-email", "café@example.com", true},
	    {"hostname", "www.example.com", true},
	    {"hostname", "-bad.example.com", false},
	    {"hostname", "a_b.example.com", false},
	    {"uuid", "2EB8AA08-AA98-11EA-B4AA-73B441D16380", true},
	    {"uuid", "2eb8aa08-aa98-11ea-b4aa-73b441d1638", false},
	    {"ipv4", "192.168.0.1", true},
	    {"ipv4", "192.168.0.256", false},
	    {"ipv4", "087.10.0.1", false},
	    {"ipv6", "::ffff:192.168.0.1", true},
	    {"ipv6", "1:2:3:4:5:6:7:8:9", false},
	    {"uri", "http://example.com/a?b=c#d", true},
	    {"uri", "urn:isbn:0451450523", true},
	    {"uri", "/relative/path", false},
	    {"uri", "http://example.com/a b", false},
	    {"uri", "http://example.com/%zz", false},
	    {"uri-reference", "/relative/path?x", true},
	    {"uri-reference", "#frag\\ment", false},
	    {"iri", "http://ƒøø.ßår/?∂éœ=πîx", true},
	    {"uri-template", "http://example.com/{id}{?q,lang}", true},
	    {"uri-template", "http://example.com/{id", false},
	    {"json-pointer", "/a~1b/0", true},
	    {"json-pointer", "/a~2", false},
	    {"relative-json-pointer", "1/a", true},
	    {"relative-json-pointer", "01/a", false},
	    {"regex", "^[a-z]+\\d$", true},
	    {"regex", "^(abc]", false},
	    {"no-such-format", "anything", true},
	};
	struct op_schema_opts on = {.format_assert = true};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char schema[128];
		snprintf(schema, sizeof(schema), "{\"format\": \"%s\"}", cases[i].format);
		cJSON *str = cJSON_CreateString(cases[i].value);
		char *inst = cJSON_PrintUnformatted(str);
		ck_assert_ptr_nonnull(inst);
		cJSON_Delete(str);
		struct op_schema *s = compile_ok(schema, &on);
		bool v = valid_with(s, inst);
		ck_assert_msg(v == cases[i].ok, "format %s, %s: got %s", cases[i].format,
		              cases[i].value, v ? "valid" : "invalid");
		/* Non-strings are never format failures. */
		ck_assert(valid_with(s, "42"));
		op_schema_free(s);
		/* Off by default: an annotation only. */
		s = compile_ok(schema, NULL);
		ck_assert(valid_with(s, inst));
		op_schema_free(s);
		cJSON_free(inst);
	}
	/* The message names the format. */
	struct op_schema *s = compile_ok("{\"properties\": {\"at\": {\"format\": \"date\"}}}", &on);
	char *e = errors_of(s, "{\"at\": \"yesterday\"}", 10);
	ck_assert_str_eq(e, "/at: must be a valid date (#/properties/at/format)\n");
	op_free(e);
	op_schema_free(s);
	/* The format-assertion vocabulary turns assertion on by itself. */
	cJSON *meta = op_test_json(
	    "{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\","
	    " \"$id\": \"http://example.com/meta\","
	    " \"$vocabulary\": {\"https://json-schema.org/draft/2020-12/vocab/core\": true,"
	    "  \"https://json-schema.org/draft/2020-12/vocab/format-assertion\": true}}");
	struct op_schema_doc doc = {.uri = "http://example.com/meta", .json = meta};
	struct op_schema_opts o = {.docs = &doc, .ndocs = 1};
	s = compile_ok("{\"$schema\": \"http://example.com/meta\", \"format\": \"ipv4\"}", &o);
	ck_assert(!valid_with(s, "\"1.2.3\""));
	ck_assert(valid_with(s, "\"1.2.3.4\""));
	op_schema_free(s);
	cJSON_Delete(meta);
}
END_TEST

START_TEST(refs_defs_anchors_dynamic_refs)
{
	/* $defs and JSON Pointer refs, with escaping. */
	const char *s1 =
	    "{\"$defs\": {\"a/b\": {\"type\": \"integer\"}, \"pos\": {\"minimum\": 0}},"
	    " \"properties\": {\"n\": {\"$ref\": \"#/$defs/a~1b\"},"
	    "  \"p\": {\"$ref\": \"#/$defs/pos\"}}}";
	ck_assert(valid(s1, 0, "{\"n\": 1, \"p\": 0}"));
	ck_assert(!valid(s1, 0, "{\"n\": 1.5}"));
	ck_assert(!valid(s1, 0, "{\"p\": -1}"));
	/* $anchor. */
	const char *s2 = "{\"$defs\": {\"x\": {\"$anchor\": \"name\", \"type\": \"string\"}},"
	                 " \"items\": {\"$ref\": \"#name\"}}";
	ck_assert(valid(s2, 0, "[\"a\", \"b\"]"));
	ck_assert(!valid(s2, 0, "[\"a\", 2]"));
	/* $id changes the base URI of the refs below it. */
	const char *s3 = "{\"$id\": \"http://example.com/root.json\","
	                 " \"$defs\": {\"t\": {\"$id\": \"tree.json\", \"type\": \"object\","
	                 "  \"properties\": {\"kids\": {\"items\": {\"$ref\": \"tree.json\"}}}}},"
	                 " \"$ref\": \"http://example.com/tree.json\"}";
	ck_assert(valid(s3, 0, "{\"kids\": [{\"kids\": []}, {}]}"));
	ck_assert(!valid(s3, 0, "{\"kids\": [{\"kids\": [3]}]}"));
	/* Recursion through the root. */
	const char *s4 = "{\"type\": [\"array\", \"integer\"], \"items\": {\"$ref\": \"#\"}}";
	ck_assert(valid(s4, 0, "[1, [2, [3, []]]]"));
	ck_assert(!valid(s4, 0, "[1, [2, [\"3\"]]]"));
	/* $dynamicRef: a generic list whose items an extending schema fixes. */
	const char *s5 =
	    "{\"$id\": \"http://example.com/strlist\", \"$ref\": \"list\","
	    " \"$defs\": {\"item\": {\"$dynamicAnchor\": \"item\", \"type\": \"string\"},"
	    "  \"list\": {\"$id\": \"list\", \"type\": \"array\","
	    "   \"items\": {\"$dynamicRef\": \"#item\"},"
	    "   \"$defs\": {\"any\": {\"$dynamicAnchor\": \"item\"}}}}}";
	ck_assert(valid(s5, 0, "[\"a\", \"b\"]"));
	ck_assert(!valid(s5, 0, "[\"a\", 1]"));
	/* Caller documents, by absolute URI. */
	cJSON *d =
	    op_test_json("{\"$defs\": {\"id\": {\"type\": \"string\", \"pattern\": \"^X\"}}}");
	struct op_schema_doc doc = {.uri = "http://example.com/common.json", .json = d};
	struct op_schema_opts o = {.docs = &doc, .ndocs = 1};
	struct op_schema *s =
	    compile_ok("{\"$id\": \"http://example.com/main.json\","
	               " \"properties\": {\"id\": {\"$ref\": \"common.json#/$defs/id\"}}}",
	               &o);
	cJSON_Delete(d);
	ck_assert(valid_with(s, "{\"id\": \"X1\"}"));
	ck_assert(!valid_with(s, "{\"id\": \"Y1\"}"));
	op_schema_free(s);
	/* The built-in metaschemas. */
	const char *meta = "{\"$ref\": \"https://json-schema.org/draft/2020-12/schema\"}";
	ck_assert(valid(meta, 0, "{\"type\": \"string\"}"));
	ck_assert(!valid(meta, 0, "{\"type\": 12}"));
	ck_assert(!valid(meta, 0, "{\"properties\": {\"a\": {\"minLength\": -1}}}"));
	const char *meta7 = "{\"$ref\": \"http://json-schema.org/draft-07/schema#\"}";
	ck_assert(valid(meta7, OP_SCHEMA_DRAFT7, "{\"items\": [{}, true]}"));
	ck_assert(!valid(meta7, OP_SCHEMA_DRAFT7, "{\"required\": \"a\"}"));
}
END_TEST

START_TEST(draft7_and_2020_differ)
{
	struct op_schema *s;
	/* Dialect: forced, from $schema, or 2020-12 by default. */
	s = compile_ok("{\"$schema\": \"http://json-schema.org/draft-07/schema#\"}", NULL);
	ck_assert_int_eq(op_schema_draft(s), OP_SCHEMA_DRAFT7);
	op_schema_free(s);
	s = compile_ok("{}", NULL);
	ck_assert_int_eq(op_schema_draft(s), OP_SCHEMA_2020);
	op_schema_free(s);
	struct op_schema_opts o7 = {.draft = OP_SCHEMA_DRAFT7};
	s = compile_ok("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\"}", &o7);
	ck_assert_int_eq(op_schema_draft(s), OP_SCHEMA_DRAFT7);
	op_schema_free(s);

	/* Draft-07: $ref hides its siblings. 2020-12: they apply too. */
	const char *ref =
	    "{\"$defs\": {\"i\": {\"type\": \"integer\"}},"
	    " \"definitions\": {\"i\": {\"type\": \"integer\"}},"
	    " \"properties\": {\"a\": {\"$ref\": \"#/definitions/i\", \"maximum\": 5}}}";
	ck_assert(valid(ref, OP_SCHEMA_DRAFT7, "{\"a\": 10}"));
	ck_assert(!valid(ref, OP_SCHEMA_2020, "{\"a\": 10}"));
	ck_assert(!valid(ref, OP_SCHEMA_DRAFT7, "{\"a\": 1.5}"));

	/* Tuples: items array (draft-07) against prefixItems (2020-12). */
	const char *tuple7 = "{\"items\": [{\"type\": \"string\"}], \"additionalItems\": false}";
	ck_assert(valid(tuple7, OP_SCHEMA_DRAFT7, "[\"a\"]"));
	ck_assert(!valid(tuple7, OP_SCHEMA_DRAFT7, "[\"a\", 1]"));
	ck_assert(!valid(tuple7, OP_SCHEMA_DRAFT7, "[1]"));
	compile_fails(tuple7, OP_SCHEMA_2020, "#/items: expected a schema");
	const char *tuple20 = "{\"prefixItems\": [{\"type\": \"string\"}], \"items\": false}";
	ck_assert(valid(tuple20, OP_SCHEMA_2020, "[\"a\"]"));
	ck_assert(!valid(tuple20, OP_SCHEMA_2020, "[\"a\", 1]"));
	/* prefixItems is unknown, hence ignored, in draft-07; items: false
	 * then refuses any item. */
	ck_assert(!valid(tuple20, OP_SCHEMA_DRAFT7, "[\"a\"]"));
	ck_assert(valid(tuple20, OP_SCHEMA_DRAFT7, "[]"));

	/* dependencies (draft-07) against dependentRequired (2020-12). */
	const char *dep7 = "{\"dependencies\": {\"card\": [\"billing\"]}}";
	ck_assert(!valid(dep7, OP_SCHEMA_DRAFT7, "{\"card\": 1}"));
	ck_assert(valid(dep7, OP_SCHEMA_DRAFT7, "{\"card\": 1, \"billing\": 2}"));
	const char *dep20 = "{\"dependentRequired\": {\"card\": [\"billing\"]}}";
	ck_assert(!valid(dep20, OP_SCHEMA_2020, "{\"card\": 1}"));
	ck_assert(valid(dep20, OP_SCHEMA_DRAFT7, "{\"card\": 1}"));

	/* unevaluatedProperties exists only in 2020-12. */
	const char *uneval = "{\"allOf\": [{\"properties\": {\"a\": true}}],"
	                     " \"unevaluatedProperties\": false}";
	ck_assert(valid(uneval, OP_SCHEMA_2020, "{\"a\": 1}"));
	ck_assert(!valid(uneval, OP_SCHEMA_2020, "{\"a\": 1, \"b\": 2}"));
	ck_assert(valid(uneval, OP_SCHEMA_DRAFT7, "{\"a\": 1, \"b\": 2}"));

	/* Boolean schemas and the integer type (1.0 is an integer). */
	ck_assert(valid("true", 0, "{\"any\": 1}"));
	ck_assert(!valid("false", 0, "null"));
	ck_assert(valid("{\"type\": \"integer\"}", OP_SCHEMA_DRAFT7, "1.0"));
	ck_assert(valid("{\"type\": \"integer\"}", OP_SCHEMA_2020, "1.0"));
}
END_TEST

START_TEST(patterns_follow_ecma262)
{
	/* Long Unicode property names, which PCRE2 does not know. */
	ck_assert(valid("{\"pattern\": \"^\\\\p{Letter}+$\"}", 0, "\"élan\""));
	ck_assert(!valid("{\"pattern\": \"^\\\\p{Letter}+$\"}", 0, "\"a1\""));
	ck_assert(valid("{\"pattern\": \"^\\\\p{Lu}\\\\P{Uppercase_Letter}$\"}", 0, "\"Ab\""));
	ck_assert(valid("{\"pattern\": \"^\\\\p{gc=Decimal_Number}+$\"}", 0, "\"\\u0967\""));
	ck_assert(valid("{\"pattern\": \"^\\\\p{Script=Greek}+$\"}", 0, "\"αβ\""));
	ck_assert(!valid("{\"pattern\": \"^\\\\p{Script=Greek}+$\"}", 0, "\"ab\""));
	/* \d and \w are ASCII; \s takes the Unicode spaces. */
	ck_assert(!valid("{\"pattern\": \"^\\\\d$\"}", 0, "\"\\u0967\""));
	ck_assert(!valid("{\"pattern\": \"^\\\\w$\"}", 0, "\"é\""));
	ck_assert(valid("{\"pattern\": \"^\\\\s$\"}", 0, "\"\\u00a0\""));
	ck_assert(valid("{\"pattern\": \"^\\\\s$\"}", 0, "\"\\ufeff\""));
	ck_assert(!valid("{\"pattern\": \"^\\\\S$\"}", 0, "\"\\u2003\""));
	ck_assert(valid("{\"pattern\": \"^[\\\\s]$\"}", 0, "\"\\u3000\""));
	/* "." stops at line terminators; $ only at the very end. */
	ck_assert(!valid("{\"pattern\": \"^a.b$\"}", 0, "\"a\\nb\""));
	ck_assert(!valid("{\"pattern\": \"^a.b$\"}", 0, "\"a\\u2028b\""));
	ck_assert(valid("{\"pattern\": \"^a.b$\"}", 0, "\"a\\u00e9b\""));
	ck_assert(!valid("{\"pattern\": \"^abc$\"}", 0, "\"abc\\n\""));
	/* Empty classes; "[" inside a class is a plain character. */
	ck_assert(!valid("{\"pattern\": \"[]\"}", 0, "\"a\""));
	ck_assert(valid("{\"pattern\": \"^[^]$\"}", 0, "\"\\n\""));
	ck_assert(valid("{\"pattern\": \"^[[:a]+$\"}", 0, "\"[:a\""));
	/* Unanchored, as in ECMA-262. \u escapes. */
	ck_assert(valid("{\"pattern\": \"b\"}", 0, "\"abc\""));
	ck_assert(valid("{\"pattern\": \"^\\\\u00e9$\"}", 0, "\"é\""));
	/* patternProperties goes through the same translation. */
	const char *pp = "{\"patternProperties\": {\"^\\\\p{Letter}+$\": {\"type\": \"integer\"}},"
	                 " \"additionalProperties\": false}";
	ck_assert(valid(pp, 0, "{\"ñandú\": 1}"));
	ck_assert(!valid(pp, 0, "{\"ñandú\": \"x\"}"));
	ck_assert(!valid(pp, 0, "{\"n1\": 1}"));
}
END_TEST

/* Builds depth nested arrays [[[...]]] iteratively. */
static cJSON *deep_array(int depth)
{
	cJSON *v = cJSON_CreateArray();
	for (int i = 1; i < depth && v != NULL; i++) {
		cJSON *up = cJSON_CreateArray();
		ck_assert_ptr_nonnull(up);
		cJSON_AddItemToArray(up, v);
		v = up;
	}
	ck_assert_ptr_nonnull(v);
	return v;
}

/* Builds depth nested schemas {"items": {"items": ...}}. */
static cJSON *deep_schema(int depth, const char *kw)
{
	cJSON *v = cJSON_CreateObject();
	for (int i = 1; i < depth && v != NULL; i++) {
		cJSON *up = cJSON_CreateObject();
		ck_assert_ptr_nonnull(up);
		cJSON_AddItemToObject(up, kw, v);
		v = up;
	}
	ck_assert_ptr_nonnull(v);
	return v;
}

START_TEST(nesting_and_recursion_are_bounded)
{
	struct op_schema *s = NULL;
	/* A hostile schema: too deep to compile, refused without recursing
	 * through all of it. */
	cJSON *sch = deep_schema(3000, "items");
	ck_assert_int_eq(op_schema_compile(sch, 0, &s, err, sizeof(err)), OP_ECONFIG);
	ck_assert_msg(strncmp(err, "#/items/items/items/", 20) == 0, "%s", err);
	ck_assert_ptr_null(s);
	cJSON_Delete(sch);
	sch = deep_schema(3000, "not");
	ck_assert_int_eq(op_schema_compile(sch, 0, &s, err, sizeof(err)), OP_ECONFIG);
	cJSON_Delete(sch);
	/* Just under the limit compiles. */
	sch = deep_schema(150, "items");
	ck_assert_int_eq(op_schema_compile(sch, 0, &s, err, sizeof(err)), OP_OK);
	op_schema_free(s);
	cJSON_Delete(sch);

	/* A hostile instance on a recursive schema: the depth limit stops it. */
	s = compile_ok("{\"items\": {\"$ref\": \"#\"}}", NULL);
	cJSON *in = deep_array(5000);
	bool v = true;
	struct op_buf b;
	op_buf_init(&b, 1 << 16);
	ck_assert_int_eq(op_schema_validate(s, in, &v, NULL, 0), OP_ELIMIT);
	ck_assert(!v);
	ck_assert_int_eq(op_schema_validate(s, in, &v, &b, 10), OP_ELIMIT);
	ck_assert(!v);
	op_buf_fini(&b);
	cJSON_Delete(in);
	in = deep_array(100);
	ck_assert_int_eq(op_schema_validate(s, in, &v, NULL, 0), OP_OK);
	ck_assert(v);
	cJSON_Delete(in);
	op_schema_free(s);

	/* max_depth is the caller's to lower. */
	struct op_schema_opts o = {.max_depth = 20};
	s = compile_ok("{\"items\": {\"$ref\": \"#\"}}", &o);
	in = deep_array(50);
	ck_assert_int_eq(op_schema_validate(s, in, &v, NULL, 0), OP_ELIMIT);
	cJSON_Delete(in);
	in = deep_array(5);
	ck_assert_int_eq(op_schema_validate(s, in, &v, NULL, 0), OP_OK);
	ck_assert(v);
	cJSON_Delete(in);
	op_schema_free(s);

	/* Infinite $ref loops are compile errors, including through a
	 * $dynamicRef that always lands on itself. */
	compile_fails("{\"$ref\": \"#\"}", 0, "#");
	compile_fails("{\"$defs\": {\"a\": {\"allOf\": [{\"$ref\": \"#/$defs/a\"}]}},"
	              " \"$ref\": \"#/$defs/a\"}",
	              0, "#");
	/* Exponential fan-out: each level refers twice to the next. Bounded
	 * by the number of distinct paths the instance offers. */
	s = compile_ok("{\"$defs\": {\"t\": {\"anyOf\": [{\"items\": {\"$ref\": \"#/$defs/t\"}},"
	               " {\"items\": {\"$ref\": \"#/$defs/t\"}, \"minItems\": 0}]}},"
	               " \"$ref\": \"#/$defs/t\"}",
	               NULL);
	in = deep_array(12);
	ck_assert_int_eq(op_schema_validate(s, in, &v, NULL, 0), OP_OK);
	ck_assert(v);
	cJSON_Delete(in);
	op_schema_free(s);
}
END_TEST

struct worker {
	const struct op_schema *s;
	cJSON *good, *bad;
	int rounds, wrong;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < w->rounds; i++) {
		bool v = false;
		struct op_buf b;
		op_buf_init(&b, 1 << 16);
		if (op_schema_validate(w->s, w->good, &v, &b, 10) != OP_OK || !v || b.len != 0)
			w->wrong++;
		op_buf_reset(&b);
		if (op_schema_validate(w->s, w->bad, &v, &b, 10) != OP_OK || v ||
		    strcmp(op_buf_str(&b), "/code: must match the pattern \"^[A-Z]{3}-\\d+$\" "
		                           "(#/properties/code/pattern)\n") != 0)
			w->wrong++;
		op_buf_fini(&b);
	}
	return NULL;
}

START_TEST(one_schema_many_threads)
{
	struct op_schema *s =
	    compile_ok("{\"type\": \"object\", \"properties\": {\"code\": {\"pattern\": "
	               "\"^[A-Z]{3}-\\\\d+$\"}, \"tags\": {\"uniqueItems\": true}},"
	               " \"unevaluatedProperties\": false}",
	               NULL);
	/* Many tags: unevaluated and uniqueItems bookkeeping leave the stack. */
	struct op_buf g;
	op_buf_init(&g, 1 << 20);
	ck_assert_int_eq(op_buf_adds(&g, "{\"code\": \"ABC-12\", \"tags\": ["), OP_OK);
	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(op_buf_addf(&g, "%s%d", i ? "," : "", i), OP_OK);
	ck_assert_int_eq(op_buf_adds(&g, "]}"), OP_OK);
	struct worker w[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){.s = s, .rounds = 300};
		w[i].good = op_test_json(op_buf_str(&g));
		w[i].bad = op_test_json("{\"code\": \"abc-12\"}");
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(pthread_join(t[i], NULL), 0);
		ck_assert_int_eq(w[i].wrong, 0);
		cJSON_Delete(w[i].good);
		cJSON_Delete(w[i].bad);
	}
	op_buf_fini(&g);
	op_schema_free(s);
}
END_TEST

START_TEST(out_of_memory_is_an_error)
{
	const char *schema =
	    "{\"$id\": \"http://example.com/s\", \"$defs\": {\"pos\": {\"minimum\": 0}},"
	    " \"type\": \"object\", \"required\": [\"id\"],"
	    " \"properties\": {\"id\": {\"pattern\": \"^\\\\p{Letter}+-\\\\d+$\"},"
	    "  \"n\": {\"$ref\": \"#/$defs/pos\"}, \"at\": {\"format\": \"regex\"},"
	    "  \"list\": {\"uniqueItems\": true, \"items\": {\"type\": \"integer\"}}},"
	    " \"unevaluatedProperties\": false}";
	struct op_buf inst;
	op_buf_init(&inst, 1 << 20);
	ck_assert_int_eq(op_buf_adds(&inst, "{\"id\": \"ab-1\", \"n\": -1, \"at\": \"[a-z]\", "
	                                    "\"list\": ["),
	                 OP_OK);
	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(op_buf_addf(&inst, "%s%d", i ? "," : "", i % 299), OP_OK);
	ck_assert_int_eq(op_buf_adds(&inst, "], \"x\": 1}"), OP_OK);
	cJSON *sch = op_test_json(schema), *in = op_test_json(op_buf_str(&inst));
	op_buf_fini(&inst);
	struct op_schema_opts o = {.format_assert = true};
	int saw_nomem = 0, saw_ok = 0;
	for (uint64_t n = 1; n < 5000 && saw_ok < 2; n++) {
		struct op_schema *s = NULL;
		struct op_buf b;
		bool v = true;
		op_buf_init(&b, 1 << 16);
		op_alloc_fail_at(n);
		op_err e = op_schema_compile_opts(sch, &o, &s, err, sizeof(err));
		if (e == OP_OK)
			e = op_schema_validate(s, in, &v, &b, 10);
		if (e == OP_OK)
			e = op_schema_validate(s, in, &v, NULL, 0);
		op_alloc_fail_at(0);
		ck_assert_msg(e == OP_OK || e == OP_ENOMEM, "n=%d: %s (%s)", (int)n, op_err_name(e),
		              err);
		if (e == OP_OK) {
			ck_assert(!v);
			saw_ok++;
		} else {
			ck_assert(!v || s == NULL);
			saw_nomem++;
		}
		op_buf_fini(&b);
		op_schema_free(s);
	}
	ck_assert_int_eq(saw_ok, 2);
	ck_assert_int_gt(saw_nomem, 20);
	/* And once memory is back, the full answer. */
	struct op_schema *s = NULL;
	ck_assert_int_eq(op_schema_compile_opts(sch, &o, &s, err, sizeof(err)), OP_OK);
	char *e = errors_of(s, "{\"id\": \"ab-1\", \"n\": -1, \"list\": [1, 1], \"x\": 1}", 10);
	ck_assert_str_eq(
	    e, "/n: must be >= 0 (#/$defs/pos/minimum)\n"
	       "/list: must not contain duplicates (items 0 and 1 are equal) "
	       "(#/properties/list/uniqueItems)\n"
	       "/x: is not allowed here (the schema is false) (#/unevaluatedProperties)\n");
	op_free(e);
	op_schema_free(s);
	cJSON_Delete(sch);
	cJSON_Delete(in);
}
END_TEST

static Suite *schema_suite(void)
{
	Suite *s = suite_create("schema");
	TCase *tc = tcase_create("schema");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, compile_errors_name_the_location);
	tcase_add_test(tc, errors_give_instance_and_schema_paths);
	tcase_add_test(tc, max_errors_caps_the_lines);
	tcase_add_test(tc, formats_asserted_on_request);
	tcase_add_test(tc, refs_defs_anchors_dynamic_refs);
	tcase_add_test(tc, draft7_and_2020_differ);
	tcase_add_test(tc, patterns_follow_ecma262);
	tcase_add_test(tc, nesting_and_recursion_are_bounded);
	tcase_add_test(tc, one_schema_many_threads);
	tcase_add_test(tc, out_of_memory_is_an_error);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(schema_suite)
