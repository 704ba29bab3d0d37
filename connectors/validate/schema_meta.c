/*
 * The built-in metaschemas: draft-07 and the 2020-12 dialect with its seven
 * vocabulary metaschemas, so that a schema may $ref them (to validate
 * schemas, or because published schemas do) without any fetching. The texts
 * follow the metaschemas published at json-schema.org, with annotations
 * ("title", "$comment") left out. Invariant: every text here parses and
 * compiles; tests/unit/test_schema.c checks it.
 */
#include <string.h>

#include "connectors/validate/schema_int.h"

#define M2020 "https://json-schema.org/draft/2020-12/"

/* Common head of the 2020-12 vocabulary metaschemas. */
#define HEAD2020(name, vocab)                                                              \
	"{\"$schema\":\"" M2020 "schema\",\"$id\":\"" M2020 "meta/" name "\","             \
	"\"$vocabulary\":{\"" M2020 "vocab/" vocab "\":true},\"$dynamicAnchor\":\"meta\"," \
	"\"type\":[\"object\",\"boolean\"],"

static const char draft7[] =
    "{\"$schema\":\"http://json-schema.org/draft-07/schema#\","
    "\"$id\":\"http://json-schema.org/draft-07/schema#\","
    "\"definitions\":{"
    "\"schemaArray\":{\"type\":\"array\",\"minItems\":1,\"items\":{\"$ref\":\"#\"}},"
    "\"nonNegativeInteger\":{\"type\":\"integer\",\"minimum\":0},"
    "\"nonNegativeIntegerDefault0\":{\"allOf\":[{\"$ref\":\"#/definitions/nonNegativeInteger\"},"
    "{\"default\":0}]},"
    "\"simpleTypes\":{\"enum\":[\"array\",\"boolean\",\"integer\",\"null\",\"number\","
    "\"object\",\"string\"]},"
    "\"stringArray\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"uniqueItems\":true,"
    "\"default\":[]}},"
    "\"type\":[\"object\",\"boolean\"],"
    "\"properties\":{"
    "\"$id\":{\"type\":\"string\",\"format\":\"uri-reference\"},"
    "\"$schema\":{\"type\":\"string\",\"format\":\"uri\"},"
    "\"$ref\":{\"type\":\"string\",\"format\":\"uri-reference\"},"
    "\"$comment\":{\"type\":\"string\"},"
    "\"title\":{\"type\":\"string\"},"
    "\"description\":{\"type\":\"string\"},"
    "\"default\":true,"
    "\"readOnly\":{\"type\":\"boolean\",\"default\":false},"
    "\"writeOnly\":{\"type\":\"boolean\",\"default\":false},"
    "\"examples\":{\"type\":\"array\",\"items\":true},"
    "\"multipleOf\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
    "\"maximum\":{\"type\":\"number\"},"
    "\"exclusiveMaximum\":{\"type\":\"number\"},"
    "\"minimum\":{\"type\":\"number\"},"
    "\"exclusiveMinimum\":{\"type\":\"number\"},"
    "\"maxLength\":{\"$ref\":\"#/definitions/nonNegativeInteger\"},"
    "\"minLength\":{\"$ref\":\"#/definitions/nonNegativeIntegerDefault0\"},"
    "\"pattern\":{\"type\":\"string\",\"format\":\"regex\"},"
    "\"additionalItems\":{\"$ref\":\"#\"},"
    "\"items\":{\"anyOf\":[{\"$ref\":\"#\"},{\"$ref\":\"#/definitions/schemaArray\"}],"
    "\"default\":true},"
    "\"maxItems\":{\"$ref\":\"#/definitions/nonNegativeInteger\"},"
    "\"minItems\":{\"$ref\":\"#/definitions/nonNegativeIntegerDefault0\"},"
    "\"uniqueItems\":{\"type\":\"boolean\",\"default\":false},"
    "\"contains\":{\"$ref\":\"#\"},"
    "\"maxProperties\":{\"$ref\":\"#/definitions/nonNegativeInteger\"},"
    "\"minProperties\":{\"$ref\":\"#/definitions/nonNegativeIntegerDefault0\"},"
    "\"required\":{\"$ref\":\"#/definitions/stringArray\"},"
    "\"additionalProperties\":{\"$ref\":\"#\"},"
    "\"definitions\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#\"},"
    "\"default\":{}},"
    "\"properties\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#\"},"
    "\"default\":{}},"
    "\"patternProperties\":{\"type\":\"object\",\"additionalProperties\":{\"$ref\":\"#\"},"
    "\"propertyNames\":{\"format\":\"regex\"},\"default\":{}},"
    "\"dependencies\":{\"type\":\"object\",\"additionalProperties\":{\"anyOf\":["
    "{\"$ref\":\"#\"},{\"$ref\":\"#/definitions/stringArray\"}]}},"
    "\"propertyNames\":{\"$ref\":\"#\"},"
    "\"const\":true,"
    "\"enum\":{\"type\":\"array\",\"items\":true},"
    "\"type\":{\"anyOf\":[{\"$ref\":\"#/definitions/simpleTypes\"},{\"type\":\"array\","
    "\"items\":{\"$ref\":\"#/definitions/simpleTypes\"},\"minItems\":1,\"uniqueItems\":true}]},"
    "\"format\":{\"type\":\"string\"},"
    "\"contentMediaType\":{\"type\":\"string\"},"
    "\"contentEncoding\":{\"type\":\"string\"},"
    "\"if\":{\"$ref\":\"#\"},"
    "\"then\":{\"$ref\":\"#\"},"
    "\"else\":{\"$ref\":\"#\"},"
    "\"allOf\":{\"$ref\":\"#/definitions/schemaArray\"},"
    "\"anyOf\":{\"$ref\":\"#/definitions/schemaArray\"},"
    "\"oneOf\":{\"$ref\":\"#/definitions/schemaArray\"},"
    "\"not\":{\"$ref\":\"#\"}},"
    "\"default\":true}";

static const char schema2020[] =
    "{\"$schema\":\"" M2020 "schema\",\"$id\":\"" M2020 "schema\","
    "\"$vocabulary\":{"
    "\"" M2020 "vocab/core\":true,\"" M2020 "vocab/applicator\":true,"
    "\"" M2020 "vocab/unevaluated\":true,\"" M2020 "vocab/validation\":true,"
    "\"" M2020 "vocab/meta-data\":true,\"" M2020 "vocab/format-annotation\":true,"
    "\"" M2020 "vocab/content\":true},"
    "\"$dynamicAnchor\":\"meta\","
    "\"allOf\":[{\"$ref\":\"meta/core\"},{\"$ref\":\"meta/applicator\"},"
    "{\"$ref\":\"meta/unevaluated\"},{\"$ref\":\"meta/validation\"},"
    "{\"$ref\":\"meta/meta-data\"},{\"$ref\":\"meta/format-annotation\"},"
    "{\"$ref\":\"meta/content\"}],"
    "\"type\":[\"object\",\"boolean\"],"
    "\"properties\":{"
    "\"definitions\":{\"type\":\"object\",\"additionalProperties\":{\"$dynamicRef\":\"#meta\"},"
    "\"deprecated\":true,\"default\":{}},"
    "\"dependencies\":{\"type\":\"object\",\"additionalProperties\":{\"anyOf\":["
    "{\"$dynamicRef\":\"#meta\"},{\"$ref\":\"meta/validation#/$defs/stringArray\"}]},"
    "\"deprecated\":true,\"default\":{}},"
    "\"$recursiveAnchor\":{\"$ref\":\"meta/core#/$defs/anchorString\",\"deprecated\":true},"
    "\"$recursiveRef\":{\"$ref\":\"meta/core#/$defs/uriReferenceString\","
    "\"deprecated\":true}}}";

static const char core2020[] = HEAD2020(
    "core",
    "core") "\"properties\":{"
            "\"$id\":{\"$ref\":\"#/$defs/uriReferenceString\",\"pattern\":\"^[^#]*#?$\"},"
            "\"$schema\":{\"$ref\":\"#/$defs/uriString\"},"
            "\"$ref\":{\"$ref\":\"#/$defs/uriReferenceString\"},"
            "\"$anchor\":{\"$ref\":\"#/$defs/anchorString\"},"
            "\"$dynamicRef\":{\"$ref\":\"#/$defs/uriReferenceString\"},"
            "\"$dynamicAnchor\":{\"$ref\":\"#/$defs/anchorString\"},"
            "\"$vocabulary\":{\"type\":\"object\",\"propertyNames\":{\"$ref\":\"#/$defs/"
            "uriString\"},"
            "\"additionalProperties\":{\"type\":\"boolean\"}},"
            "\"$comment\":{\"type\":\"string\"},"
            "\"$defs\":{\"type\":\"object\",\"additionalProperties\":{\"$dynamicRef\":\"#meta\"}}},"
            "\"$defs\":{"
            "\"anchorString\":{\"type\":\"string\",\"pattern\":\"^[A-Za-z_][-A-Za-z0-9._]*$\"},"
            "\"uriString\":{\"type\":\"string\",\"format\":\"uri\"},"
            "\"uriReferenceString\":{\"type\":\"string\",\"format\":\"uri-reference\"}}}";

static const char applicator2020[] =
    HEAD2020("applicator",
             "applicator") "\"properties\":{"
                           "\"prefixItems\":{\"$ref\":\"#/$defs/schemaArray\"},"
                           "\"items\":{\"$dynamicRef\":\"#meta\"},"
                           "\"contains\":{\"$dynamicRef\":\"#meta\"},"
                           "\"additionalProperties\":{\"$dynamicRef\":\"#meta\"},"
                           "\"properties\":{\"type\":\"object\",\"additionalProperties\":{\"$"
                           "dynamicRef\":\"#meta\"},"
                           "\"default\":{}},"
                           "\"patternProperties\":{\"type\":\"object\",\"additionalProperties\":{"
                           "\"$dynamicRef\":"
                           "\"#meta\"},\"propertyNames\":{\"format\":\"regex\"},\"default\":{}},"
                           "\"dependentSchemas\":{\"type\":\"object\",\"additionalProperties\":{\"$"
                           "dynamicRef\":"
                           "\"#meta\"},\"default\":{}},"
                           "\"propertyNames\":{\"$dynamicRef\":\"#meta\"},"
                           "\"if\":{\"$dynamicRef\":\"#meta\"},"
                           "\"then\":{\"$dynamicRef\":\"#meta\"},"
                           "\"else\":{\"$dynamicRef\":\"#meta\"},"
                           "\"allOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
                           "\"anyOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
                           "\"oneOf\":{\"$ref\":\"#/$defs/schemaArray\"},"
                           "\"not\":{\"$dynamicRef\":\"#meta\"}},"
                           "\"$defs\":{\"schemaArray\":{\"type\":\"array\",\"minItems\":1,"
                           "\"items\":{\"$dynamicRef\":\"#meta\"}}}}";

static const char unevaluated2020[] = HEAD2020(
    "unevaluated", "unevaluated") "\"properties\":{"
                                  "\"unevaluatedItems\":{\"$dynamicRef\":\"#meta\"},"
                                  "\"unevaluatedProperties\":{\"$dynamicRef\":\"#meta\"}}}";

static const char validation2020[] = HEAD2020(
    "validation",
    "validation") "\"properties\":{"
                  "\"type\":{\"anyOf\":[{\"$ref\":\"#/$defs/simpleTypes\"},{\"type\":\"array\","
                  "\"items\":{\"$ref\":\"#/$defs/"
                  "simpleTypes\"},\"minItems\":1,\"uniqueItems\":true}]},"
                  "\"const\":true,"
                  "\"enum\":{\"type\":\"array\",\"items\":true},"
                  "\"multipleOf\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
                  "\"maximum\":{\"type\":\"number\"},"
                  "\"exclusiveMaximum\":{\"type\":\"number\"},"
                  "\"minimum\":{\"type\":\"number\"},"
                  "\"exclusiveMinimum\":{\"type\":\"number\"},"
                  "\"maxLength\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
                  "\"minLength\":{\"$ref\":\"#/$defs/nonNegativeIntegerDefault0\"},"
                  "\"pattern\":{\"type\":\"string\",\"format\":\"regex\"},"
                  "\"maxItems\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
                  "\"minItems\":{\"$ref\":\"#/$defs/nonNegativeIntegerDefault0\"},"
                  "\"uniqueItems\":{\"type\":\"boolean\",\"default\":false},"
                  "\"maxContains\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
                  "\"minContains\":{\"$ref\":\"#/$defs/nonNegativeInteger\",\"default\":1},"
                  "\"maxProperties\":{\"$ref\":\"#/$defs/nonNegativeInteger\"},"
                  "\"minProperties\":{\"$ref\":\"#/$defs/nonNegativeIntegerDefault0\"},"
                  "\"required\":{\"$ref\":\"#/$defs/stringArray\"},"
                  "\"dependentRequired\":{\"type\":\"object\",\"additionalProperties\":"
                  "{\"$ref\":\"#/$defs/stringArray\"}}},"
                  "\"$defs\":{"
                  "\"nonNegativeInteger\":{\"type\":\"integer\",\"minimum\":0},"
                  "\"nonNegativeIntegerDefault0\":{\"$ref\":\"#/$defs/"
                  "nonNegativeInteger\",\"default\":0},"
                  "\"simpleTypes\":{\"enum\":[\"array\",\"boolean\",\"integer\",\"null\","
                  "\"number\","
                  "\"object\",\"string\"]},"
                  "\"stringArray\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},"
                  "\"uniqueItems\":true,"
                  "\"default\":[]}}}";

static const char metadata2020[] =
    HEAD2020("meta-data", "meta-data") "\"properties\":{"
                                       "\"title\":{\"type\":\"string\"},"
                                       "\"description\":{\"type\":\"string\"},"
                                       "\"default\":true,"
                                       "\"deprecated\":{\"type\":\"boolean\",\"default\":false},"
                                       "\"readOnly\":{\"type\":\"boolean\",\"default\":false},"
                                       "\"writeOnly\":{\"type\":\"boolean\",\"default\":false},"
                                       "\"examples\":{\"type\":\"array\",\"items\":true}}}";

static const char format2020[] = HEAD2020(
    "format-annotation", "format-annotation") "\"properties\":{\"format\":{\"type\":\"string\"}}}";

static const char content2020[] =
    HEAD2020("content", "content") "\"properties\":{"
                                   "\"contentEncoding\":{\"type\":\"string\"},"
                                   "\"contentMediaType\":{\"type\":\"string\"},"
                                   "\"contentSchema\":{\"$dynamicRef\":\"#meta\"}}}";

static const struct {
	const char *uri;
	const char *text;
} metas[] = {
    {"http://json-schema.org/draft-07/schema", draft7},
    {M2020 "schema", schema2020},
    {M2020 "meta/core", core2020},
    {M2020 "meta/applicator", applicator2020},
    {M2020 "meta/unevaluated", unevaluated2020},
    {M2020 "meta/validation", validation2020},
    {M2020 "meta/meta-data", metadata2020},
    {M2020 "meta/format-annotation", format2020},
    {M2020 "meta/content", content2020},
};

const char *op_schema__meta_text(const char *uri)
{
	for (size_t i = 0; i < sizeof(metas) / sizeof(metas[0]); i++)
		if (strcmp(metas[i].uri, uri) == 0)
			return metas[i].text;
	return NULL;
}
