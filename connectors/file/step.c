/*
 * The file step: read or write one local file as JSON, JSON lines, CSV or
 * text, inside a folder the agent's config allows ([files] dirs, lent by
 * the host as op_host.file_dirs).
 *
 * Invariant: a path from a message never leaves its folder. Files are
 * opened with openat2(RESOLVE_BENEATH) from the folder's descriptor, so
 * the kernel refuses "..", absolute paths and symbolic links that lead
 * outside, at the moment of the open (no check-then-use race). Writes go
 * to a temporary name in the same folder, are fsynced and renamed over
 * the target, so a reader sees the old file or the new one, never half.
 */
#define OP_LOG_MODULE "file"
#include "connectors/file/step.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/core/alloc.h"
#include "agent/core/buf.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/utf8.h"
#include "agent/core/uuid.h"
#include "agent/engine/engine.h"
#include "connectors/file/csv.h"

static const char *const operations[] = {"read", "write", "append", NULL};
enum { OP_READ, OP_WRITE, OP_APPEND };
static const char *const formats[] = {"json", "jsonl", "csv", "text", NULL};
enum { FMT_JSON, FMT_JSONL, FMT_CSV, FMT_TEXT };

struct file_cfg {
	char *dir;
	struct op_expr *path;
	int operation;
	int format;
	struct op_tmpl *content;
	char *delimiter;
	bool header;
	bool pretty;
	long long max_bytes;
};

static const struct op_conf_field file_fields[] = {
    {.name = "dir",
     .type = OP_CONF_STRING,
     .off = offsetof(struct file_cfg, dir),
     .required = true,
     .help = "absolute folder the file is in: one of the agent's [files] dirs, or a "
             "folder inside one"},
    {.name = "path",
     .type = OP_CONF_EXPR,
     .off = offsetof(struct file_cfg, path),
     .required = true,
     .help = "the file, relative to dir; it can never lead out of dir (.., absolute "
             "paths and symbolic links outside are refused)"},
    {.name = "operation",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct file_cfg, operation),
     .def = "\"read\"",
     .choices = operations,
     .help = "read: the content becomes the message; write: replace the file atomically; "
             "append: add to its end (jsonl, csv, text)"},
    {.name = "format",
     .type = OP_CONF_ENUM,
     .off = offsetof(struct file_cfg, format),
     .def = "\"json\"",
     .choices = formats,
     .help = "json: one document; jsonl: one per line (an array in the message); csv: "
             "rows (objects under the header's names); text: a string"},
    {.name = "content",
     .type = OP_CONF_TEMPLATE,
     .off = offsetof(struct file_cfg, content),
     .help = "write, append: what to write (default: the message)"},
    {.name = "delimiter",
     .type = OP_CONF_STRING,
     .off = offsetof(struct file_cfg, delimiter),
     .def = "\",\"",
     .help = "csv: the field separator, one character (\",\", \";\", \"\\t\", \"|\")"},
    {.name = "header",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct file_cfg, header),
     .def = "true",
     .help = "csv: the first line names the fields (rows are objects); false: rows are "
             "arrays"},
    {.name = "pretty",
     .type = OP_CONF_BOOL,
     .off = offsetof(struct file_cfg, pretty),
     .def = "false",
     .help = "json write: indent the document"},
    {.name = "maxBytes",
     .type = OP_CONF_INT,
     .off = offsetof(struct file_cfg, max_bytes),
     .def = "10485760",
     .min = 1,
     .max = 1073741824,
     .help = "largest file read or written; more fails the step with class limit"},
};
static const struct op_conf_table file_table = OP_CONF_TABLE("file", struct file_cfg, file_fields);

static op_err file_prepare(struct op_load *ld, struct op_step *st)
{
	const struct file_cfg *c = st->cfg;
	op_err rc = OP_OK;
	if (c->dir && c->dir[0] != '/') {
		op_load_problem(ld, "dir", "expected an absolute folder, got \"%.200s\"", c->dir);
		rc = OP_ECONFIG;
	}
	if (c->delimiter && (strlen(c->delimiter) != 1 || strchr("\"\r\n", c->delimiter[0]))) {
		op_load_problem(ld, "delimiter",
		                "expected one character other than a quote or a "
		                "line break");
		rc = OP_ECONFIG;
	}
	if (c->operation == OP_APPEND && c->format == FMT_JSON) {
		op_load_problem(ld, "operation",
		                "append needs jsonl, csv or text: a JSON document "
		                "cannot grow");
		rc = OP_ECONFIG;
	}
	if (c->operation == OP_READ && c->content) {
		op_load_problem(ld, "content", "only write and append take content");
		rc = OP_ECONFIG;
	}
	return rc;
}

static int open_beneath(int dirfd, const char *path, int flags, mode_t mode)
{
	struct open_how how = {
	    .flags = (unsigned long long)flags | O_CLOEXEC,
	    .mode = (flags & O_CREAT) ? mode : 0,
	    .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

static const char *errno_text(int e, char *buf, size_t len)
{
	return strerror_r(e, buf, len);
}

/* The class of an errno from opening or writing a file. */
static op_err file_class(int e)
{
	switch (e) {
	case ENOENT:
	case ENOTDIR:
		return OP_ENOTFOUND;
	case EACCES:
	case EPERM:
	case EROFS:
		return OP_EAUTH;
	case EXDEV:
	case ELOOP:
		return OP_EINVAL; /* out of the folder */
	case ENOSPC:
	case EDQUOT:
		return OP_EFULL;
	default:
		return op_err_from_errno(e);
	}
}

static op_err read_all(int fd, size_t max, struct op_buf *b)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return OP_EIO;
		if (n == 0)
			return OP_OK;
		if (b->len + (size_t)n > max)
			return OP_ELIMIT;
		op_err rc = op_buf_add(b, chunk, (size_t)n);
		if (rc)
			return rc;
	}
}

static op_err write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return file_class(errno);
		p += w;
		n -= (size_t)w;
	}
	return OP_OK;
}

/* The content of the file as JSON per format. */
static op_err decode(struct op_exec *x, const struct file_cfg *c, const char *path,
                     const struct op_buf *b, cJSON **out)
{
	char err[512];
	const char *s = b->data ? b->data : "";
	op_err rc = OP_OK;
	switch (c->format) {
	case FMT_JSON:
		rc = op_json_parse(s, b->len, out, err, sizeof(err));
		break;
	case FMT_CSV:
		rc = op_csv_parse(s, b->len, c->delimiter[0], c->header, out, err, sizeof(err));
		break;
	case FMT_TEXT:
		if (!op_utf8_valid(s, b->len) || memchr(s, '\0', b->len))
			return op_exec_fail(x, OP_EPARSE, "FILE_FORMAT", "%s: not UTF-8 text",
			                    path);
		*out = cJSON_CreateString(s);
		rc = *out ? OP_OK : OP_ENOMEM;
		break;
	default: { /* jsonl */
		*out = cJSON_CreateArray();
		rc = *out ? OP_OK : OP_ENOMEM;
		size_t line = 1;
		for (size_t i = 0; i < b->len && rc == OP_OK; line++) {
			const char *nl = memchr(s + i, '\n', b->len - i);
			size_t end = nl ? (size_t)(nl - s) : b->len;
			size_t k = end;
			while (k > i && (s[k - 1] == '\r' || s[k - 1] == ' ' || s[k - 1] == '\t'))
				k--;
			if (k > i) {
				/* op_json_parse wants a NUL after the text: copy the line. */
				char *one = op_strndup(s + i, k - i);
				cJSON *v = NULL;
				char why[256];
				rc = one ? op_json_parse(one, k - i, &v, why, sizeof(why))
				         : OP_ENOMEM;
				op_free(one);
				if (rc == OP_EPARSE)
					snprintf(err, sizeof(err), "line %zu: %s", line, why);
				else if (rc == OP_OK && !cJSON_AddItemToArray(*out, v)) {
					cJSON_Delete(v);
					rc = OP_ENOMEM;
				}
			}
			i = end + 1;
		}
		if (rc) {
			cJSON_Delete(*out);
			*out = NULL;
		}
		break;
	}
	}
	if (rc == OP_EPARSE)
		return op_exec_fail(x, rc, "FILE_FORMAT", "%s: %s", path, err);
	if (rc)
		return op_exec_fail(x, rc, "NOMEM", "out of memory");
	return OP_OK;
}

/* What to write, as bytes per format. */
static op_err encode(struct op_exec *x, const struct file_cfg *c, const cJSON *v, bool header,
                     struct op_buf *b)
{
	char err[512] = "";
	op_err rc = OP_OK;
	switch (c->format) {
	case FMT_JSON:
		rc = op_json_append(b, v, c->pretty ? OP_JSON_PRETTY : OP_JSON_COMPACT);
		if (rc == OP_OK)
			rc = op_buf_addc(b, '\n');
		break;
	case FMT_CSV:
		rc = op_csv_write(b, v, c->delimiter[0], header, err, sizeof(err));
		break;
	case FMT_TEXT:
		if (!cJSON_IsString(v))
			return op_exec_fail(x, OP_EINVAL, "FILE_FORMAT",
			                    "format text writes a string, got %s", op_json_kind(v));
		rc = op_buf_adds(b, v->valuestring);
		break;
	default: /* jsonl: an array is one line per item, anything else one line */
		if (cJSON_IsArray(v)) {
			for (const cJSON *i = v->child; i && rc == OP_OK; i = i->next) {
				rc = op_json_append(b, i, OP_JSON_COMPACT);
				if (rc == OP_OK)
					rc = op_buf_addc(b, '\n');
			}
		} else {
			rc = op_json_append(b, v, OP_JSON_COMPACT);
			if (rc == OP_OK)
				rc = op_buf_addc(b, '\n');
		}
		break;
	}
	if (rc == OP_ELIMIT)
		return op_exec_fail(x, rc, "FILE_TOO_LARGE", "the content is over maxBytes (%lld)",
		                    c->max_bytes);
	if (rc == OP_EINVAL)
		return op_exec_fail(x, rc, "FILE_FORMAT", "%s", err);
	if (rc)
		return op_exec_fail(x, rc, "NOMEM", "out of memory");
	return OP_OK;
}

/* Writes b to path under dirfd: a temporary file beside it, fsync, rename,
 * fsync of the folder. */
static op_err replace(int dirfd, const char *path, const struct op_buf *b, char *why, size_t whylen)
{
	char eb[128], tmp[4096], parent[4096];
	const char *slash = strrchr(path, '/');
	snprintf(parent, sizeof(parent), "%.*s", slash ? (int)(slash - path) : 1,
	         slash ? path : ".");
	const char *base = slash ? slash + 1 : path;
	int pfd = open_beneath(dirfd, parent, O_PATH | O_DIRECTORY, 0);
	if (pfd < 0)
		return op_errf(why, whylen, file_class(errno), "%s: %s", parent,
		               errno_text(errno, eb, sizeof(eb)));
	char id[OP_UUID_LEN + 1];
	if (op_uuid_v4(id) != OP_OK) {
		close(pfd);
		return op_errf(why, whylen, OP_EIO, "no random bytes for a temporary name");
	}
	snprintf(tmp, sizeof(tmp), ".%.200s.%.8s.tmp", base, id);
	int fd = openat(pfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
	op_err rc = OP_OK;
	if (fd < 0) {
		rc = op_errf(why, whylen, file_class(errno),
		             "%s: cannot create a file beside it: %s", path,
		             errno_text(errno, eb, sizeof(eb)));
		close(pfd);
		return rc;
	}
	rc = write_all(fd, b->data ? b->data : "", b->len);
	if (rc == OP_OK && fsync(fd) != 0)
		rc = file_class(errno);
	if (close(fd) != 0 && rc == OP_OK)
		rc = file_class(errno);
	if (rc == OP_OK && renameat(pfd, tmp, pfd, base) != 0)
		rc = file_class(errno);
	if (rc) {
		int e = errno;
		unlinkat(pfd, tmp, 0);
		op_errf(why, whylen, rc, "%s: cannot write: %s", path,
		        errno_text(e, eb, sizeof(eb)));
	} else {
		/* The rename is durable once the folder is. */
		int dfd = openat(pfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
	close(pfd);
	return rc;
}

static op_err file_view(struct op_exec *x, const struct op_step *st, const cJSON *msg, cJSON **out)
{
	const struct file_cfg *c = st->cfg;
	*out = NULL;
	char why[1024], eb[128];
	struct op_val pv = {0};
	struct op_buf b;
	op_buf_init(&b, (size_t)c->max_bytes);
	cJSON *content = NULL, *res = NULL;
	int dirfd = -1, fd = -1;
	op_err rc = op_exec_eval(x, c->path, "path", msg, &pv);
	if (rc)
		goto out;
	const char *path = cJSON_GetStringValue(pv.v);
	if (path == NULL || path[0] == '\0' || path[0] == '/' || strlen(path) > 4000) {
		rc = op_exec_fail(x, OP_EINVAL, "FILE_PATH",
		                  "config.path: expected a relative path inside %s, got %s%.200s%s",
		                  c->dir, path ? "\"" : "", path ? path : op_json_kind(pv.v),
		                  path ? "\"" : "");
		goto out;
	}
	rc = op_exec_file_dir(x, "dir", c->dir, "FILE_DIR");
	if (rc)
		goto out;
	dirfd = open(c->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		rc = op_exec_fail(x, file_class(errno), "FILE_DIR", "config.dir: %s: %s", c->dir,
		                  errno_text(errno, eb, sizeof(eb)));
		goto out;
	}
	if (c->operation == OP_READ) {
		fd = open_beneath(dirfd, path, O_RDONLY, 0);
		if (fd < 0) {
			int e = errno;
			rc = op_exec_fail(x, file_class(e), e == EXDEV ? "FILE_PATH" : "FILE_OPEN",
			                  "%s in %s: %s", path, c->dir,
			                  e == EXDEV ? "leads out of the folder"
			                             : errno_text(e, eb, sizeof(eb)));
			goto out;
		}
		rc = read_all(fd, (size_t)c->max_bytes, &b);
		if (rc) {
			rc = op_exec_fail(x, rc, rc == OP_ELIMIT ? "FILE_TOO_LARGE" : "FILE_READ",
			                  "%s in %s: %s", path, c->dir,
			                  rc == OP_ELIMIT ? "larger than maxBytes" : "cannot read");
			goto out;
		}
		rc = decode(x, c, path, &b, &res);
		goto out;
	}
	if (c->content) {
		rc = op_exec_render(x, c->content, "content", msg, &content);
		if (rc)
			goto out;
	}
	if (c->operation == OP_WRITE) {
		rc = encode(x, c, content ? content : msg, c->header, &b);
		if (rc)
			goto out;
		rc = replace(dirfd, path, &b, why, sizeof(why));
	} else {
		fd = open_beneath(dirfd, path, O_WRONLY | O_APPEND | O_CREAT, 0640);
		struct stat sb;
		if (fd < 0 || fstat(fd, &sb) != 0) {
			int e = errno;
			rc = op_exec_fail(x, file_class(e), e == EXDEV ? "FILE_PATH" : "FILE_OPEN",
			                  "%s in %s: %s", path, c->dir,
			                  e == EXDEV ? "leads out of the folder"
			                             : errno_text(e, eb, sizeof(eb)));
			goto out;
		}
		/* A CSV header goes only into a file that is still empty. */
		rc = encode(x, c, content ? content : msg, c->header && sb.st_size == 0, &b);
		if (rc)
			goto out;
		rc = write_all(fd, b.data ? b.data : "", b.len);
		if (rc == OP_OK && fsync(fd) != 0)
			rc = file_class(errno);
		if (rc)
			op_errf(why, sizeof(why), rc, "%s in %s: cannot append: %s", path, c->dir,
			        errno_text(errno, eb, sizeof(eb)));
	}
	if (rc) {
		rc = op_exec_fail(x, rc, "FILE_WRITE", "%s", why);
		goto out;
	}
	res = cJSON_CreateObject();
	if (res == NULL || !cJSON_AddStringToObject(res, "path", path) ||
	    !cJSON_AddNumberToObject(res, "bytes", (double)b.len)) {
		rc = op_exec_fail(x, OP_ENOMEM, "NOMEM", "out of memory");
		goto out;
	}
out:
	if (rc == OP_OK) {
		*out = res;
		res = NULL;
	}
	cJSON_Delete(res);
	cJSON_Delete(content);
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	op_buf_fini(&b);
	op_val_drop(&pv);
	return rc;
}

static op_err file_run(struct op_exec *x, const struct op_step *st, cJSON *msg, cJSON **out)
{
	op_err rc = file_view(x, st, msg, out);
	cJSON_Delete(msg);
	return rc;
}

const struct op_step_type op_step_file = {
    .name = "file",
    .summary = "read or write a local file (JSON, JSON lines, CSV, text) inside a folder "
               "the agent allows",
    .conf = &file_table,
    .prepare = file_prepare,
    .run = file_run,
    .view = file_view,
    .waits = true,
};
