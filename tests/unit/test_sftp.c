/*
 * Unit tests of the sftp connector's pure parts (connectors/sftp): host key
 * fingerprints as ssh-keygen prints them, the mapping of libssh2 codes and
 * SFTP statuses to classes, temp names of atomic puts, modes, times and
 * paths in messages, localPath kept below localDir (checks, and a walk
 * in a temp dir that refuses links), and the step's localDir held to the
 * folders the host lends, before any connect. Sessions with a real sshd are
 * tested end to end in tests/e2e/test_sftp.sh.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/engine/engine.h"
#include "connectors/sftp/local.h"
#include "connectors/sftp/sftp_int.h"
#include "tests/unit/test.h"

/* ssh-keygen -lf of a real ed25519 key, and the SHA-256 it stands for. */
static const char fp_text[] = "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA";

START_TEST(fingerprints_round_trip)
{
	unsigned char fp[OP_SFTP_FP_LEN], again[OP_SFTP_FP_LEN];
	char text[OP_SFTP_FP_TEXT];
	ck_assert_int_eq(op_sftp_fingerprint_parse(fp_text, fp), OP_OK);
	op_sftp_fingerprint_text(fp, text);
	ck_assert_str_eq(text, fp_text);
	/* One '=' of padding is accepted and means the same. */
	char padded[sizeof(fp_text) + 1];
	snprintf(padded, sizeof(padded), "%s=", fp_text);
	ck_assert_int_eq(op_sftp_fingerprint_parse(padded, again), OP_OK);
	ck_assert(op_sftp_fingerprint_equal(fp, again));
	again[31] ^= 1;
	ck_assert(!op_sftp_fingerprint_equal(fp, again));
	again[31] ^= 1;
	again[0] ^= 0x80;
	ck_assert(!op_sftp_fingerprint_equal(fp, again));
}
END_TEST

START_TEST(fingerprints_refuse_other_forms)
{
	unsigned char fp[OP_SFTP_FP_LEN];
	static const char *const bad[] = {
	    "",
	    "SHA256:",
	    "frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA",         /* no prefix */
	    "sha256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA",  /* lower case */
	    "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48", /* another hash */
	    "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxV",   /* 42 characters */
	    "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVAA", /* 44 */
	    "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3ox A",  /* a blank */
	    "SHA256:frYRtK-_Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA",  /* base64url */
	    "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVB",  /* bits past the end */
	    "SHA256:frYRtK/+Q+Q8BWPIybyRfXPX+ksuWLU0ifCA7N3oxVA==",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(op_sftp_fingerprint_parse(bad[i], fp) == OP_EINVAL, "accepted \"%s\"",
		              bad[i]);
}
END_TEST

START_TEST(libssh2_codes_map_to_classes)
{
	static const struct {
		unsigned long status;
		int rc;
		op_err cls;
	} cases[] = {
	    {0, LIBSSH2_ERROR_NONE, OP_OK},
	    {0, LIBSSH2_ERROR_TIMEOUT, OP_ETIMEOUT},
	    {0, LIBSSH2_ERROR_SOCKET_TIMEOUT, OP_ETIMEOUT},
	    {0, LIBSSH2_ERROR_SOCKET_DISCONNECT, OP_EIO},
	    {0, LIBSSH2_ERROR_SOCKET_RECV, OP_EIO},
	    {0, LIBSSH2_ERROR_SOCKET_SEND, OP_EIO},
	    {0, LIBSSH2_ERROR_CHANNEL_CLOSED, OP_EIO},
	    {0, LIBSSH2_ERROR_SOCKET_NONE, OP_EIO},
	    {0, LIBSSH2_ERROR_BANNER_RECV, OP_EPARSE},
	    {0, LIBSSH2_ERROR_KEX_FAILURE, OP_EPARSE},
	    {0, LIBSSH2_ERROR_INVALID_MAC, OP_EPARSE},
	    {0, LIBSSH2_ERROR_OUT_OF_BOUNDARY, OP_EPARSE},
	    {0, LIBSSH2_ERROR_CHANNEL_PACKET_EXCEEDED, OP_EPARSE},
	    {0, LIBSSH2_ERROR_AUTHENTICATION_FAILED, OP_EAUTH},
	    {0, LIBSSH2_ERROR_PUBLICKEY_UNVERIFIED, OP_EAUTH},
	    {0, LIBSSH2_ERROR_FILE, OP_EAUTH},
	    {0, LIBSSH2_ERROR_PASSWORD_EXPIRED, OP_EAUTH},
	    {0, LIBSSH2_ERROR_HOSTKEY_SIGN, OP_EAUTH},
	    {0, LIBSSH2_ERROR_CHANNEL_REQUEST_DENIED, OP_EREJECTED},
	    {0, LIBSSH2_ERROR_CHANNEL_FAILURE, OP_EREJECTED},
	    {0, LIBSSH2_ERROR_METHOD_NOT_SUPPORTED, OP_EUNSUPPORTED},
	    {0, LIBSSH2_ERROR_KNOWN_HOSTS, OP_ECONFIG},
	    {0, LIBSSH2_ERROR_BUFFER_TOO_SMALL, OP_ELIMIT},
	    {0, LIBSSH2_ERROR_ALLOC, OP_ENOMEM},
	    {0, LIBSSH2_ERROR_BAD_USE, OP_EINTERNAL},
	    {0, LIBSSH2_ERROR_EAGAIN, OP_EINTERNAL},
	    {LIBSSH2_FX_OK, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EPARSE},
	    {LIBSSH2_FX_NO_SUCH_FILE, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_ENOTFOUND},
	    {LIBSSH2_FX_NO_SUCH_PATH, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_ENOTFOUND},
	    {LIBSSH2_FX_PERMISSION_DENIED, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EAUTH},
	    {LIBSSH2_FX_FAILURE, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EREJECTED},
	    {LIBSSH2_FX_FILE_ALREADY_EXISTS, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EREJECTED},
	    {LIBSSH2_FX_DIR_NOT_EMPTY, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EREJECTED},
	    {LIBSSH2_FX_WRITE_PROTECT, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EREJECTED},
	    {LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EFULL},
	    {LIBSSH2_FX_QUOTA_EXCEEDED, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EFULL},
	    {LIBSSH2_FX_LOCK_CONFLICT, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EBUSY},
	    {LIBSSH2_FX_CONNECTION_LOST, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EIO},
	    {LIBSSH2_FX_NO_CONNECTION, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_ENOCONN},
	    {LIBSSH2_FX_OP_UNSUPPORTED, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EUNSUPPORTED},
	    {LIBSSH2_FX_INVALID_HANDLE, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EPARSE},
	    {9999, LIBSSH2_ERROR_SFTP_PROTOCOL, OP_EREJECTED},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(op_sftp__err(cases[i].rc, cases[i].status) == cases[i].cls,
		              "rc %d status %lu: %s", cases[i].rc, cases[i].status,
		              op_err_name(op_sftp__err(cases[i].rc, cases[i].status)));
	/* Nothing but success is ever OP_OK. */
	for (int rc = -60; rc < 0; rc++)
		ck_assert_msg(op_sftp__err(rc, 0) != OP_OK, "rc %d", rc);
	/* Timeouts, broken connections and full disks are retryable; an
	 * authentication failure or a refused host key is not. */
	ck_assert(op_err_retryable(op_sftp__err(LIBSSH2_ERROR_TIMEOUT, 0)));
	ck_assert(op_err_retryable(op_sftp__err(LIBSSH2_ERROR_SOCKET_DISCONNECT, 0)));
	ck_assert(!op_err_retryable(op_sftp__err(LIBSSH2_ERROR_AUTHENTICATION_FAILED, 0)));
}
END_TEST

START_TEST(temp_names_sit_beside_their_file)
{
	char out[512];
	ck_assert_int_eq(op_sftp_temp_path("data/out.csv", "0a1b", out, sizeof(out)), OP_OK);
	ck_assert_str_eq(out, "data/.out.csv.outpost-0a1b.tmp");
	ck_assert_int_eq(op_sftp_temp_path("out.csv", "ff", out, sizeof(out)), OP_OK);
	ck_assert_str_eq(out, ".out.csv.outpost-ff.tmp");
	ck_assert_int_eq(op_sftp_temp_path("/abs/x", "1", out, sizeof(out)), OP_OK);
	ck_assert_str_eq(out, "/abs/.x.outpost-1.tmp");
	static const char *const no_name[] = {"", "dir/", "/", "a/.", "a/..", ".."};
	for (size_t i = 0; i < sizeof(no_name) / sizeof(no_name[0]); i++)
		ck_assert_msg(op_sftp_temp_path(no_name[i], "1", out, sizeof(out)) == OP_EINVAL,
		              "\"%s\"", no_name[i]);
	ck_assert_int_eq(op_sftp_temp_path("data/out.csv", "0a1b", out, 10), OP_ELIMIT);
	/* A long name is cut so the temp name stays within 255 bytes, at a
	 * character boundary. */
	char name[300] = "d/";
	for (size_t i = 2; i < 2 + 250; i += 2)
		memcpy(name + i, "\xC3\xA9", 2);
	name[252] = '\0';
	ck_assert_int_eq(op_sftp_temp_path(name, "0123456789abcdef", out, sizeof(out)), OP_OK);
	const char *base = strrchr(out, '/') + 1;
	ck_assert_uint_le(strlen(base), 255);
	ck_assert_int_eq(memcmp(base, ".\xC3\xA9", 3), 0);
	const char *tail = strstr(base, ".outpost-0123456789abcdef.tmp");
	ck_assert_ptr_nonnull(tail);
	ck_assert_int_eq((tail - base - 1) % 2, 0); /* whole two-byte characters */
}
END_TEST

START_TEST(modes_times_and_paths_for_humans)
{
	char m[8], t[32];
	op_sftp_mode_text(0100644, m);
	ck_assert_str_eq(m, "0644");
	op_sftp_mode_text(04755, m);
	ck_assert_str_eq(m, "4755");
	op_sftp_mode_text(0, m);
	ck_assert_str_eq(m, "0000");
	op_sftp_time_text(1714564800, t);
	ck_assert_str_eq(t, "2024-05-01T12:00:00Z");
	op_sftp_time_text(0, t);
	ck_assert_str_eq(t, "1970-01-01T00:00:00Z");
	op_sftp_time_text(4294967295LL, t); /* SFTP v3's largest time */
	ck_assert_str_eq(t, "2106-02-07T06:28:15Z");
	ck_assert_str_eq(op_sftp_type_name(OP_SFTP_FILE), "file");
	ck_assert_str_eq(op_sftp_type_name(OP_SFTP_DIR), "dir");
	ck_assert_str_eq(op_sftp_type_name(OP_SFTP_LINK), "link");
	ck_assert_str_eq(op_sftp_type_name(OP_SFTP_OTHER), "other");
	char *p = op_sftp_path_join("in", "a.csv");
	ck_assert_str_eq(p, "in/a.csv");
	op_free(p);
	p = op_sftp_path_join("/", "a");
	ck_assert_str_eq(p, "/a");
	op_free(p);
	p = op_sftp_path_join("", "a");
	ck_assert_str_eq(p, "a");
	op_free(p);
}
END_TEST

START_TEST(local_paths_stay_below_the_base)
{
	char why[256];
	static const char *const ok[] = {"a.txt", "in/a.txt", "./a.txt", "in//a.txt",
	                                 "a..b",  "...",      "in/..x/y"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		ck_assert_msg(op_sftp_local_check(ok[i], why, sizeof(why)) == OP_OK, "%s: %s",
		              ok[i], why);
	static const char *const bad[] = {"",   "/etc/passwd", "../x", "a/../../x", "a/..",
	                                  "..", "dir/",        ".",    "a/./.",     "a/b/"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(op_sftp_local_check(bad[i], why, sizeof(why)) == OP_EINVAL,
		              "accepted \"%s\"", bad[i]);
	ck_assert(strstr(why, "does not end in a file name") != NULL);
}
END_TEST

/* A temp dir: base/ with in/file.txt, a link to outside, and outside/. */
static void tree(char *root, size_t len)
{
	snprintf(root, len, "/tmp/op-sftp-unit-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(root));
	char p[512];
	snprintf(p, sizeof(p), "%s/base", root);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/base/in", root);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/outside", root);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof(p), "%s/base/in/file.txt", root);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("12345", f);
	fclose(f);
	char target[512];
	snprintf(target, sizeof(target), "%s/outside", root);
	snprintf(p, sizeof(p), "%s/base/out", root);
	ck_assert_int_eq(symlink(target, p), 0);
	snprintf(p, sizeof(p), "%s/base/in/flink", root);
	ck_assert_int_eq(symlink("file.txt", p), 0);
}

START_TEST(local_files_open_without_following_links)
{
	char root[64], base[128], why[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	struct op_sftp_local l;
	op_sftp_local_init(&l);
	uint64_t size = 0;
	ck_assert_int_eq(op_sftp_local_open(&l, base, "in/file.txt", &size, why, sizeof(why)),
	                 OP_OK);
	ck_assert_uint_eq(size, 5);
	op_sftp_local_fini(&l);
	ck_assert_int_eq(l.fd, -1);
	/* A link as a directory on the way, or as the file: refused. */
	ck_assert_int_eq(op_sftp_local_open(&l, base, "out/x", &size, why, sizeof(why)), OP_EINVAL);
	ck_assert(strstr(why, "symbolic link") != NULL);
	ck_assert_int_eq(op_sftp_local_open(&l, base, "in/flink", &size, why, sizeof(why)),
	                 OP_EINVAL);
	ck_assert_int_eq(op_sftp_local_open(&l, base, "in/none", &size, why, sizeof(why)),
	                 OP_ENOTFOUND);
	ck_assert_int_eq(op_sftp_local_open(&l, base, "in", &size, why, sizeof(why)), OP_EINVAL);
	ck_assert(strstr(why, "not a regular file") != NULL);
	ck_assert_int_eq(op_sftp_local_create(&l, base, "out/x", true, why, sizeof(why)),
	                 OP_EINVAL);
	ck_assert_int_eq(l.dir, -1);
	op_test_rmtree(root);
}
END_TEST

START_TEST(local_files_appear_whole_or_not_at_all)
{
	char root[64], base[128], why[256], p[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	struct op_sftp_local l;
	op_sftp_local_init(&l);
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/new.txt", true, why, sizeof(why)),
	                 OP_OK);
	ck_assert_int_eq(write(l.fd, "abc", 3), 3);
	snprintf(p, sizeof(p), "%s/in/new.txt", base);
	ck_assert_int_eq(access(p, F_OK), -1); /* not there until committed */
	ck_assert_int_eq(op_sftp_local_rewind(&l, why, sizeof(why)), OP_OK);
	ck_assert_int_eq(write(l.fd, "xy", 2), 2);
	ck_assert_int_eq(op_sftp_local_commit(&l, true, why, sizeof(why)), OP_OK);
	op_sftp_local_fini(&l);
	struct stat st;
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 2);
	/* overwrite false: an existing file is refused, before and at commit. */
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/new.txt", false, why, sizeof(why)),
	                 OP_EREJECTED);
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/late.txt", false, why, sizeof(why)),
	                 OP_OK);
	snprintf(p, sizeof(p), "%s/in/late.txt", base);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	ck_assert_int_eq(op_sftp_local_commit(&l, false, why, sizeof(why)), OP_EREJECTED);
	op_sftp_local_fini(&l);
	/* A download that fails leaves nothing behind: no temp file either. */
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/gone.txt", true, why, sizeof(why)),
	                 OP_OK);
	op_sftp_local_fini(&l);
	snprintf(p, sizeof(p), "%s/in", base);
	DIR *d = opendir(p);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	ck_assert_int_eq(n, 4); /* file.txt, flink, new.txt, late.txt */
	op_test_rmtree(root);
}
END_TEST

START_TEST(the_writer_thread_writes_in_order_and_reports_errors)
{
	char root[64], base[128], why[256], p[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	struct op_sftp_local l;
	op_sftp_local_init(&l);
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/w.bin", true, why, sizeof(why)), OP_OK);
	struct op_sftp_local_writer *w = NULL;
	ck_assert_int_eq(op_sftp_local_writer_start(&l, 0, &w, why, sizeof(why)), OP_OK);
	/* More chunks than the ring holds, of odd sizes, one larger than a chunk. */
	static char chunk[OP_SFTP_CHUNK + 7];
	size_t total = 0;
	for (int i = 0; i < 3 * OP_SFTP_LOCAL_QUEUE; i++) {
		size_t n = i == 5 ? sizeof(chunk) : (size_t)(1000 + 37 * i);
		memset(chunk, 'a' + i, n);
		ck_assert_int_eq(op_sftp_local_writer_put(w, chunk, n, why, sizeof(why)), OP_OK);
		total += n;
	}
	ck_assert_int_eq(op_sftp_local_writer_finish(w, why, sizeof(why)), OP_OK);
	ck_assert_int_eq(op_sftp_local_commit(&l, true, why, sizeof(why)), OP_OK);
	op_sftp_local_fini(&l);
	snprintf(p, sizeof(p), "%s/in/w.bin", base);
	FILE *f = fopen(p, "rb");
	ck_assert_ptr_nonnull(f);
	size_t at = 0;
	for (int i = 0; i < 3 * OP_SFTP_LOCAL_QUEUE; i++) {
		size_t n = i == 5 ? sizeof(chunk) : (size_t)(1000 + 37 * i);
		for (size_t k = 0; k < n; k++, at++)
			ck_assert_int_eq(fgetc(f), 'a' + i);
	}
	ck_assert_int_eq(fgetc(f), EOF);
	fclose(f);
	ck_assert_uint_eq(at, total);
	/* A file the thread cannot write: the error comes back, nothing hangs. */
	op_sftp_local_init(&l);
	ck_assert_int_eq(
	    op_sftp_local_open(&l, base, "in/file.txt", &(uint64_t){0}, why, sizeof(why)), OP_OK);
	ck_assert_int_eq(op_sftp_local_writer_start(&l, 0, &w, why, sizeof(why)), OP_OK);
	op_err rc = OP_OK;
	for (int i = 0; i < 2 * OP_SFTP_LOCAL_QUEUE && rc == OP_OK; i++)
		rc = op_sftp_local_writer_put(w, chunk, 100, why, sizeof(why));
	if (rc == OP_OK)
		rc = op_sftp_local_writer_finish(w, why, sizeof(why));
	else
		op_sftp_local_writer_free(w);
	ck_assert_int_eq(rc, OP_EIO);
	ck_assert_msg(strstr(why, "file.txt") != NULL, "%s", why);
	op_sftp_local_fini(&l);
	op_sftp_local_writer_free(NULL);
	op_test_rmtree(root);
}
END_TEST

/* The writers of a split get: each from its own offset, side by side, the
 * later part queued first; the file is the parts in order. */
START_TEST(writers_at_offsets_fill_their_parts_of_one_file)
{
	char root[64], base[128], why[256], p[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	struct op_sftp_local l;
	op_sftp_local_init(&l);
	ck_assert_int_eq(op_sftp_local_create(&l, base, "in/parts.bin", true, why, sizeof(why)),
	                 OP_OK);
	enum { PART = 3 * OP_SFTP_CHUNK + 11 };
	struct op_sftp_local_writer *w[3] = {NULL, NULL, NULL};
	for (int i = 2; i >= 0; i--)
		ck_assert_int_eq(
		    op_sftp_local_writer_start(&l, (uint64_t)i * PART, &w[i], why, sizeof(why)),
		    OP_OK);
	static char chunk[1000];
	for (size_t done = 0; done < PART;) {
		size_t n = PART - done < sizeof(chunk) ? PART - done : sizeof(chunk);
		for (int i = 2; i >= 0; i--) {
			memset(chunk, 'x' + i, n);
			ck_assert_int_eq(op_sftp_local_writer_put(w[i], chunk, n, why, sizeof(why)),
			                 OP_OK);
		}
		done += n;
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(op_sftp_local_writer_finish(w[i], why, sizeof(why)), OP_OK);
	ck_assert_int_eq(op_sftp_local_commit(&l, true, why, sizeof(why)), OP_OK);
	op_sftp_local_fini(&l);
	snprintf(p, sizeof(p), "%s/in/parts.bin", base);
	FILE *f = fopen(p, "rb");
	ck_assert_ptr_nonnull(f);
	for (int i = 0; i < 3; i++)
		for (size_t k = 0; k < PART; k++)
			ck_assert_int_eq(fgetc(f), 'x' + i);
	ck_assert_int_eq(fgetc(f), EOF);
	fclose(f);
	op_test_rmtree(root);
}
END_TEST

/* Every allocation failing in turn: OP_ENOMEM each time, nothing left
 * open or behind, until the call goes through. */
START_TEST(out_of_memory_is_an_error)
{
	char root[64], base[128], why[256], p[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	bool opened = false, created = false, client = false;
	for (uint64_t n = 1; n < 1000 && !(opened && created && client); n++) {
		struct op_sftp_local l;
		op_sftp_local_init(&l);
		uint64_t size = 0;
		op_alloc_fail_at(n);
		op_err e1 = op_sftp_local_open(&l, base, "in/file.txt", &size, why, sizeof(why));
		op_alloc_fail_at(0);
		ck_assert_msg(e1 == OP_OK || e1 == OP_ENOMEM, "open at %llu: %s",
		              (unsigned long long)n, op_err_name(e1));
		ck_assert(e1 == OP_OK || (l.fd == -1 && l.dir == -1));
		opened |= e1 == OP_OK;
		op_sftp_local_fini(&l);
		struct op_sftp_local_writer *w = NULL;
		op_alloc_fail_at(n);
		op_err e2 = op_sftp_local_create(&l, base, "in/oom.txt", true, why, sizeof(why));
		if (e2 == OP_OK)
			e2 = op_sftp_local_writer_start(&l, 0, &w, why, sizeof(why));
		if (e2 == OP_OK)
			e2 = op_sftp_local_writer_put(w, "abc", 3, why, sizeof(why));
		if (w) {
			op_err e5 = op_sftp_local_writer_finish(w, why, sizeof(why));
			e2 = e2 ? e2 : e5;
		}
		op_err e3 = e2 ? e2 : op_sftp_local_commit(&l, true, why, sizeof(why));
		op_alloc_fail_at(0);
		ck_assert_msg(e3 == OP_OK || e3 == OP_ENOMEM, "create at %llu: %s",
		              (unsigned long long)n, op_err_name(e3));
		created |= e3 == OP_OK;
		op_sftp_local_fini(&l);
		struct op_sftp *c = NULL;
		unsigned char fp[OP_SFTP_FP_LEN] = {1};
		struct op_sftp_opts o = {.fingerprint = fp, .known_hosts = "/etc/ssh/known"};
		op_alloc_fail_at(n);
		op_err e4 = op_sftp_new(&o, &c);
		op_alloc_fail_at(0);
		ck_assert_msg(e4 == OP_OK || e4 == OP_ENOMEM, "new at %llu", (unsigned long long)n);
		ck_assert(e4 == OP_OK || c == NULL);
		client |= e4 == OP_OK;
		op_sftp_free(c);
	}
	ck_assert(opened && created && client);
	/* No temp file of a failed create is left. */
	snprintf(p, sizeof(p), "%s/in", base);
	DIR *d = opendir(p);
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		ck_assert_msg(strstr(e->d_name, ".outpost-") == NULL, "left: %s", e->d_name);
	closedir(d);
	op_test_rmtree(root);
}
END_TEST

/* Runs an sftp step (operation op) with localDir dir and localPath
 * "got.txt" against a port nothing listens on; dirs (n of them) are the
 * host's [files] dirs, no host at all when n is -1. Returns the failure. */
static struct op_fail local_step(const char *op, const char *dir, const char *const *dirs, int n)
{
	char text[2048];
	snprintf(text, sizeof(text),
	         "{\"name\":\"p\",\"version\":\"1\",\"steps\":[{\"type\":\"sftp\","
	         "\"config\":{\"host\":\"127.0.0.1\",\"port\":1,\"account\":\"a\","
	         "\"hostKey\":\"%s\",\"operation\":\"%s\",\"path\":\"x\",\"localDir\":"
	         "\"%s\",\"localPath\":\"got.txt\"}}]}",
	         fp_text, op, dir);
	cJSON *out = NULL;
	struct op_fail f;
	ck_assert_int_ne(op_test_run_with_dirs(text, dirs, n, &out, &f), OP_OK);
	ck_assert_ptr_null(out);
	return f;
}

/* dir holds nothing but what tree() put there (no download, no temp file). */
static void untouched(const char *dir)
{
	static const char *const made[] = {".", "..", "in", "out", "file.txt", "flink"};
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		bool known = false;
		for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++)
			known = known || strcmp(e->d_name, made[i]) == 0;
		ck_assert_msg(known, "%s: %s was written", dir, e->d_name);
	}
	closedir(d);
}

START_TEST(local_dir_is_a_folder_the_host_lends)
{
	char root[64], base[128], outside[128], p[256];
	tree(root, sizeof(root));
	snprintf(base, sizeof(base), "%s/base", root);
	snprintf(outside, sizeof(outside), "%s/outside", root);
	const char *const dirs[] = {base};
	/* Refused before anything is opened or sent: not SFTP_CONNECT. */
	struct op_fail f = local_step("get", outside, dirs, 1);
	ck_assert_str_eq(f.code, "SFTP_LOCAL");
	ck_assert_int_eq(f.cls, OP_ECONFIG);
	snprintf(p, sizeof(p),
	         "config.localDir: %s is not inside a folder of the agent's [files] dirs", outside);
	ck_assert_str_eq(f.msg, p);
	untouched(outside);
	f = local_step("put", outside, dirs, 1);
	ck_assert_str_eq(f.code, "SFTP_LOCAL");
	ck_assert_int_eq(f.cls, OP_ECONFIG);
	snprintf(p, sizeof(p), "%s/../outside", base);
	f = local_step("get", p, dirs, 1);
	ck_assert_str_eq(f.code, "SFTP_LOCAL");
	ck_assert_msg(strstr(f.msg, "has a \"..\"") != NULL, "%s", f.msg);
	untouched(outside);
	f = local_step("get", base, dirs, 0);
	ck_assert_str_eq(f.code, "SFTP_LOCAL");
	ck_assert_int_eq(f.cls, OP_ECONFIG);
	ck_assert_msg(strstr(f.msg, "[files] dirs in the agent config lists the folders") != NULL,
	              "%s", f.msg);
	f = local_step("get", base, NULL, -1);
	ck_assert_str_eq(f.code, "SFTP_LOCAL");
	ck_assert_int_eq(f.cls, OP_EUNSUPPORTED);
	ck_assert_msg(strstr(f.msg, "outpostctl run reads them with --config") != NULL, "%s",
	              f.msg);
	untouched(base);
	/* A folder inside one lent passes; the step goes on to the account. */
	snprintf(p, sizeof(p), "%s/in", base);
	f = local_step("get", p, dirs, 1);
	ck_assert_str_eq(f.code, "ACCOUNT");
	untouched(p);
	op_test_rmtree(root);
}
END_TEST

static Suite *sftp_suite(void)
{
	Suite *s = suite_create("sftp");
	TCase *tc = tcase_create("sftp");
	tcase_add_test(tc, fingerprints_round_trip);
	tcase_add_test(tc, fingerprints_refuse_other_forms);
	tcase_add_test(tc, libssh2_codes_map_to_classes);
	tcase_add_test(tc, temp_names_sit_beside_their_file);
	tcase_add_test(tc, modes_times_and_paths_for_humans);
	tcase_add_test(tc, local_paths_stay_below_the_base);
	tcase_add_test(tc, local_files_open_without_following_links);
	tcase_add_test(tc, local_files_appear_whole_or_not_at_all);
	tcase_add_test(tc, the_writer_thread_writes_in_order_and_reports_errors);
	tcase_add_test(tc, writers_at_offsets_fill_their_parts_of_one_file);
	tcase_add_test(tc, out_of_memory_is_an_error);
	tcase_add_test(tc, local_dir_is_a_folder_the_host_lends);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(sftp_suite)
