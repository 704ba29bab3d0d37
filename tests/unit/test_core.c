/* Unit tests of the core library: error classes, capped buffers, diagnostics. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/core/buf.h"
#include "agent/core/diag.h"
#include "agent/core/err.h"
#include "agent/core/json.h"
#include "agent/core/log.h"
#include "agent/core/uuid.h"
#include "tests/unit/test.h"

START_TEST(err_names_and_classes)
{
	op_err e;
	ck_assert_str_eq(op_err_name(OP_ETIMEOUT), "timeout");
	ck_assert(op_err_retryable(OP_ETIMEOUT));
	ck_assert(!op_err_retryable(OP_EINVAL));
	ck_assert(!op_err_retryable(OP_OK));
	ck_assert(op_err_from_name("auth", &e));
	ck_assert_int_eq(e, OP_EAUTH);
	ck_assert(!op_err_from_name("nonsense", &e));
	ck_assert_int_eq(op_err_from_errno(ENOSPC), OP_EFULL);
	/* A store on a file system remounted read-only is an I/O failure (503,
	 * sent again), not a refusal; file steps class it themselves. */
	ck_assert_int_eq(op_err_from_errno(EROFS), OP_EIO);
	ck_assert_str_eq(op_err_name((op_err)999), "internal");
}
END_TEST

START_TEST(buf_caps_without_truncating)
{
	struct op_buf b;
	op_buf_init(&b, 8);
	ck_assert_int_eq(op_buf_adds(&b, "abcd"), OP_OK);
	ck_assert_int_eq(op_buf_addf(&b, "%d", 123), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "abcd123");
	/* Two more bytes would pass the cap: refused whole, content kept. */
	ck_assert_int_eq(op_buf_adds(&b, "xy"), OP_ELIMIT);
	ck_assert_str_eq(op_buf_str(&b), "abcd123");
	ck_assert_uint_eq(b.len, 7);
	ck_assert_int_eq(op_buf_addc(&b, 'z'), OP_OK);
	ck_assert_str_eq(op_buf_str(&b), "abcd123z");
	char *s = op_buf_take(&b);
	ck_assert_str_eq(s, "abcd123z");
	op_free(s);
	ck_assert_str_eq(op_buf_str(&b), "");
	op_buf_fini(&b);
}
END_TEST

START_TEST(buf_out_of_memory_leaves_buffer)
{
	struct op_buf b;
	op_buf_init(&b, 1 << 20);
	ck_assert_int_eq(op_buf_adds(&b, "keep"), OP_OK);
	op_alloc_fail_at(1);
	char big[200];
	memset(big, 'x', sizeof(big));
	op_err e = op_buf_add(&b, big, sizeof(big));
	op_alloc_fail_at(0);
	ck_assert_int_eq(e, OP_ENOMEM);
	ck_assert_str_eq(op_buf_str(&b), "keep");
	op_buf_fini(&b);
}
END_TEST

/* The count is the calling thread's; an armed failure point counts every
 * thread's allocations, and the n-th one fails on whichever thread makes it. */
static void *alloc_three(void *arg)
{
	void **p = arg;
	for (int i = 0; i < 3; i++)
		p[i] = op_malloc(16);
	return NULL;
}

START_TEST(alloc_count_per_thread_failure_point_shared)
{
	void *p[3];
	pthread_t t;
	uint64_t c0 = op_alloc_count();
	ck_assert_int_eq(pthread_create(&t, NULL, alloc_three, p), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_uint_eq(op_alloc_count(), c0);
	for (int i = 0; i < 3; i++) {
		ck_assert_ptr_nonnull(p[i]);
		op_free(p[i]);
	}
	void *mine = op_malloc(8);
	ck_assert_uint_eq(op_alloc_count(), c0 + 1);
	op_free(mine);

	op_alloc_fail_at(2);
	ck_assert_int_eq(pthread_create(&t, NULL, alloc_three, p), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	mine = op_malloc(8);
	op_alloc_fail_at(0);
	ck_assert_ptr_nonnull(p[0]);
	ck_assert_ptr_null(p[1]);
	ck_assert_ptr_null(p[2]);
	ck_assert_ptr_null(mine);
	op_free(p[0]);
	mine = op_malloc(8);
	ck_assert_ptr_nonnull(mine);
	op_free(mine);
}
END_TEST

START_TEST(diag_paths)
{
	struct op_diag d;
	op_diag_init(&d);
	size_t m0 = op_diag_push_key(&d, "steps");
	size_t m1 = op_diag_push_index(&d, 2);
	op_diag_push_key(&d, "config");
	op_diag_push_key(&d, "when");
	op_diag_push_index(&d, 0);
	op_diag_add(&d, "if", "expected %s", "an expression");
	op_diag_pop(&d, m1);
	op_diag_push_index(&d, 3);
	op_diag_add(&d, "key with spaces", "bad");
	op_diag_pop(&d, m0);
	op_diag_add(&d, NULL, "at root");
	ck_assert_uint_eq(op_diag_count(&d), 3);
	ck_assert_str_eq(d.v[0].path, "steps[2].config.when[0].if");
	ck_assert_str_eq(d.v[0].msg, "expected an expression");
	ck_assert_str_eq(d.v[1].path, "steps[3][\"key with spaces\"]");
	ck_assert_str_eq(d.v[2].path, "");
	op_diag_fini(&d);
}
END_TEST

/* Every number reads back as the same double; integers print without exponent. */
START_TEST(json_numbers_round_trip)
{
	static const char *const cases[][2] = {
	    {"9007199254740992", "9007199254740992"},
	    {"1234567890123456", "1234567890123456"},
	    {"0.1", "0.1"},
	    {"-2.5", "-2.5"},
	    {"1e300", "1e300"},
	    {"1.5e-7", "1.5e-7"},
	    {"123456789012345680000", "123456789012345680000"},
	    {"0.30000000000000004", "0.30000000000000004"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *v = op_test_json(cases[i][0]);
		char *s = op_json_print(v, OP_JSON_COMPACT);
		ck_assert_ptr_nonnull(s);
		ck_assert_double_eq(strtod(s, NULL), v->valuedouble);
		if (i < 6)
			ck_assert_str_eq(s, cases[i][1]);
		op_free(s);
		cJSON_Delete(v);
	}
	char tmp[64];
	op_json_num_format(1.0 / 0.0, tmp, sizeof(tmp));
	ck_assert_str_eq(tmp, "null");
}
END_TEST

/* The shortest text, found the slow way: every precision from 1 up. */
static void shortest_ref(double d, char *out, size_t outlen)
{
	if (d == floor(d) && fabs(d) < 1e17 && d != 0) {
		snprintf(out, outlen, "%.0f", d);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, outlen, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			break;
	}
	char *e = strchr(out, 'e');
	if (e) {
		char *z = e + 1, *q = z;
		if (*q == '+')
			q++;
		else if (*q == '-')
			q++, z++;
		while (*q == '0' && q[1])
			q++;
		memmove(z, q, strlen(q) + 1);
	}
}

static void expect_shortest(double d)
{
	char got[64], want[64];
	op_json_num_format(d, got, sizeof(got));
	shortest_ref(d, want, sizeof(want));
	ck_assert_msg(strcmp(got, want) == 0, "%.17g: got %s, want %s", d, got, want);
}

/* The fast formatting (decimals of up to 15 digits without printf, else 15,
 * 16 or 17 digits from one printf; integers digit by digit) gives
 * the same text as trying every precision, over random bit patterns, decimal
 * fractions as JSON bodies carry them, and integers near the limits. */
START_TEST(json_numbers_are_shortest)
{
	uint64_t x = 0x9e3779b97f4a7c15u;
	for (int i = 0; i < 100000; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		double d;
		memcpy(&d, &x, sizeof(d));
		if (isfinite(d) && d != 0)
			expect_shortest(d);
		/* n / 10^k: prices, quantities, and their products */
		double p10[] = {1, 10, 100, 1000, 1e4, 1e6};
		double dec = (double)(int64_t)(x % 2000001 - 1000000) / p10[x % 6];
		if (dec != 0) {
			expect_shortest(dec);
			expect_shortest(dec * 3.7);
			expect_shortest(dec / 7);
		}
	}
	double d = 1e17;
	for (int i = 0; i < 100; i++)
		d = nextafter(d, 0);
	for (int i = 0; i < 200; i++, d = nextafter(d, INFINITY))
		expect_shortest(d);
	expect_shortest(-9007199254740993.0);
	expect_shortest(5e-324);
	expect_shortest(1.7976931348623157e308);
	expect_shortest(12 * 4.35);
	/* 17 digits of 9s that round up to a power of ten */
	expect_shortest(1e23);
	expect_shortest(-1e-7);
	expect_shortest(0.3);
}
END_TEST

static void expect_uuid_form(const char *id, char version)
{
	ck_assert_uint_eq(strlen(id), OP_UUID_LEN);
	for (int i = 0; i < OP_UUID_LEN; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			ck_assert_int_eq(id[i], '-');
		else
			ck_assert_msg(strchr("0123456789abcdef", id[i]) != NULL, "%s", id);
	}
	ck_assert_int_eq(id[14], version);
	ck_assert_msg(strchr("89ab", id[19]) != NULL, "variant of %s", id);
}

/* v7 ids carry the time in milliseconds and increase strictly, also as text,
 * however fast they are made, and end in random bits; v4 ids are random. */
START_TEST(uuid_versions)
{
	char a[OP_UUID_LEN + 1], b[OP_UUID_LEN + 1];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	ck_assert_int_eq(op_uuid_v7(a), OP_OK);
	expect_uuid_form(a, '7');
	char hex[13];
	memcpy(hex, a, 8);
	memcpy(hex + 8, a + 9, 4);
	hex[12] = '\0';
	uint64_t ms = strtoull(hex, NULL, 16);
	ck_assert_uint_ge(ms, before);
	ck_assert_uint_le(ms, before + 5000);
	/* 100,000 in a row: more than the counter holds in one millisecond. */
	for (int i = 0; i < 100000; i++) {
		ck_assert_int_eq(op_uuid_v7(b), OP_OK);
		ck_assert_msg(strcmp(a, b) < 0, "%s then %s", a, b);
		/* Fresh random bits each time, across the pool's refills. */
		ck_assert_msg(strcmp(a + 24, b + 24) != 0, "%s then %s", a, b);
		memcpy(a, b, sizeof(a));
	}
	expect_uuid_form(b, '7');
	ck_assert_int_eq(op_uuid_v4(a), OP_OK);
	ck_assert_int_eq(op_uuid_v4(b), OP_OK);
	expect_uuid_form(a, '4');
	ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(json_strings_and_layout)
{
	cJSON *v = op_test_json("{\"a\":[1,{\"b\":\"q\\\"\\\\\\n\\u0001\"}],\"e\":{},\"f\":[]}");
	char *s = op_json_print(v, OP_JSON_COMPACT);
	ck_assert_str_eq(s, "{\"a\":[1,{\"b\":\"q\\\"\\\\\\n\\u0001\"}],\"e\":{},\"f\":[]}");
	op_free(s);
	s = op_json_print(v, OP_JSON_PRETTY);
	ck_assert_str_eq(
	    s, "{\n  \"a\": [\n    1,\n    {\n      \"b\": \"q\\\"\\\\\\n\\u0001\"\n    }\n  ],\n"
	       "  \"e\": {},\n  \"f\": []\n}");
	op_free(s);
	cJSON_Delete(v);

	/* Too deep to print is an error, not a stack overflow. */
	cJSON *deep = cJSON_CreateArray();
	cJSON *cur = deep;
	for (int i = 0; i < OP_JSON_MAX_DEPTH + 5; i++) {
		cJSON *n = cJSON_CreateArray();
		cJSON_AddItemToArray(cur, n);
		cur = n;
	}
	ck_assert_ptr_null(op_json_print(deep, OP_JSON_COMPACT));
	cJSON_Delete(deep);
}
END_TEST

/* Bytes to a base64 JSON string and back; line breaks are taken, other
 * bytes are not. */
START_TEST(base64_round_trip)
{
	const char raw[] = {'\0', 'h', 'i', '\xff', '\n', 'x'};
	cJSON *j = op_json_base64(raw, sizeof(raw));
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(j->valuestring, "AGhp/wp4");
	char *d = NULL;
	size_t n = 0;
	ck_assert_int_eq(op_base64_decode(j->valuestring, &d, &n), OP_OK);
	ck_assert_uint_eq(n, sizeof(raw));
	ck_assert_mem_eq(d, raw, n);
	op_free(d);
	cJSON_Delete(j);
	j = op_json_base64("", 0);
	ck_assert_str_eq(j->valuestring, "");
	cJSON_Delete(j);
	ck_assert_int_eq(op_base64_decode("aGVs\nbG8=", &d, &n), OP_OK);
	ck_assert_uint_eq(n, 5);
	ck_assert_str_eq(d, "hello");
	op_free(d);
	ck_assert_int_eq(op_base64_decode("aGVsbG8", &d, &n), OP_OK);
	ck_assert_str_eq(d, "hello");
	op_free(d);
	ck_assert_int_eq(op_base64_decode("aGVs*G8=", &d, &n), OP_EINVAL);
	ck_assert_ptr_null(d);
	ck_assert_int_eq(op_base64_decode("not base64!", &d, &n), OP_EINVAL);
	ck_assert_int_eq(op_base64_decode("aGVsb", &d, &n), OP_EINVAL);
}
END_TEST

/* Under systemd, stderr is the journal's stream (JOURNAL_STREAM says its
 * device:inode): lines carry their syslog priority. Elsewhere they do not. */
START_TEST(log_priorities_for_the_journal)
{
	char path[] = "/tmp/op-log-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	fflush(stderr);
	int saved = dup(2);
	ck_assert_int_eq(dup2(fd, 2), 2);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	char js[64];
	snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
	         (unsigned long long)st.st_ino);

	setenv("JOURNAL_STREAM", "1:2", 1); /* some other stream */
	ck_assert(!op_log_detect_journal());
	op_log_write(OP_LOG_WARN, "t", "plain %d", 1);
	setenv("JOURNAL_STREAM", js, 1);
	ck_assert(op_log_detect_journal());
	op_log_write(OP_LOG_ERROR, "t", "bad %d", 2);
	op_log_write(OP_LOG_WARN, "t", "odd %d", 3);
	op_log_set_json(true);
	op_log_write(OP_LOG_INFO, "t", "fine");
	op_log_set_json(false);
	unsetenv("JOURNAL_STREAM");
	ck_assert(!op_log_detect_journal());
	fflush(stderr);
	dup2(saved, 2);
	close(saved);

	char buf[512] = "";
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
	close(fd);
	unlink(path);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, "warn  t: plain 1\n"
	                      "<3>error t: bad 2\n"
	                      "<4>warn  t: odd 3\n"
	                      "<6>{\"level\":\"info\",\"module\":\"t\",\"msg\":\"fine\"}\n");
}
END_TEST

static int tapped;
static void count_tap(enum op_log_level lvl, const char *module, const char *line, void *ud)
{
	(void)lvl;
	(void)module;
	(void)ud;
	ck_assert_str_eq(line, "to the tap");
	tapped++;
}

/* A local line is written but not handed to the tap (the outbox's own
 * refusals, which would go round through it again). */
START_TEST(log_local_lines_skip_the_tap)
{
	op_log_set_sink(NULL, NULL);
	op_log_set_tap(count_tap, NULL);
	op_log_write_local(OP_LOG_ERROR, "t", "not to the tap");
	op_log_write(OP_LOG_ERROR, "t", "to the tap");
	op_log_set_tap(NULL, NULL);
	ck_assert_int_eq(tapped, 1);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("core");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, err_names_and_classes);
	tcase_add_test(tc, log_priorities_for_the_journal);
	tcase_add_test(tc, log_local_lines_skip_the_tap);
	tcase_add_test(tc, buf_caps_without_truncating);
	tcase_add_test(tc, buf_out_of_memory_leaves_buffer);
	tcase_add_test(tc, alloc_count_per_thread_failure_point_shared);
	tcase_add_test(tc, diag_paths);
	tcase_add_test(tc, json_numbers_round_trip);
	tcase_add_test(tc, json_numbers_are_shortest);
	tcase_add_test(tc, uuid_versions);
	tcase_add_test(tc, base64_round_trip);
	tcase_add_test(tc, json_strings_and_layout);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(core_suite)
