/*
 * op_file_read: a bounded whole-file read. The buffer grows by doubling and
 * never past max + 1 bytes, so a huge or endless file (a FIFO, /dev/zero)
 * costs at most max bytes before it is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "agent/core/alloc.h"
#include "agent/core/file.h"

static op_err sys_fail(int e, char *err, size_t errlen)
{
	char eb[128];
	snprintf(err, errlen, "%s", strerror_r(e, eb, sizeof(eb)));
	return op_err_from_errno(e);
}

op_err op_file_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
	*out = NULL;
	*len = 0;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return sys_fail(errno, err, errlen);
	size_t cap = 4096, n = 0;
	char *buf = op_malloc(cap);
	op_err rc = buf ? OP_OK : OP_ENOMEM;
	while (rc == OP_OK) {
		if (n + 1 >= cap) {
			if (cap > max) {
				rc = OP_ELIMIT;
				break;
			}
			char *nb = op_realloc(buf, cap * 2);
			if (nb == NULL) {
				rc = OP_ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0) {
			if (ferror(f))
				rc = sys_fail(errno ? errno : EIO, err, errlen);
			break;
		}
	}
	if (f != stdin)
		fclose(f);
	if (rc == OP_OK && n > max)
		rc = OP_ELIMIT;
	if (rc == OP_ELIMIT)
		snprintf(err, errlen, "larger than %zu bytes", max);
	else if (rc == OP_ENOMEM)
		snprintf(err, errlen, "out of memory");
	if (rc) {
		op_free(buf);
		return rc;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return OP_OK;
}
