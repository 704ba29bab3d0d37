/*
 * CSV as RFC 4180 writes it, with a choice of delimiter: fields in double
 * quotes may hold the delimiter, line breaks and doubled quotes; records end
 * in CRLF or LF. Values are strings (CSV has no types); an empty file is no
 * records.
 */
#ifndef OP_CONNECTORS_FILE_CSV_H
#define OP_CONNECTORS_FILE_CSV_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"

/*
 * Parses len bytes at s. With header, the first record names the fields
 * and the others become objects (a missing field is "", an extra one is an
 * error); without, each record is an array of strings. OP_EPARSE with err
 * naming the line ("line 3: a quote inside an unquoted field"), OP_ENOMEM.
 */
op_err op_csv_parse(const char *s, size_t len, char delim, bool header, cJSON **out, char *err,
                    size_t errlen) OP_WUR;

/*
 * Appends rows (an array of objects, or of arrays) as CSV to b, CRLF after
 * each record. With header and objects, a first record of the keys of the
 * first object; every object is written in those keys' order (a missing
 * key is an empty field). Numbers, booleans and null are written as JSON
 * text ("12.5", "true", empty for null); nested values as compact JSON.
 * Fields are quoted when they hold the delimiter, a quote or a line break.
 * OP_EINVAL with err for rows that are not such an array, OP_ELIMIT past
 * b's cap, OP_ENOMEM.
 */
op_err op_csv_write(struct op_buf *b, const cJSON *rows, char delim, bool header, char *err,
                    size_t errlen) OP_WUR;

#endif
