/*
 * Unit tests of the frames between outpostd and its MQTT consumer processes
 * (agent/trigger/mqtt_wire.h): a message round trip, the truncated form of
 * an oversized payload, frames that arrive in pieces, and the malformed
 * frames a broken or hostile consumer could send, which must be refused
 * rather than read past. The processes themselves are driven end to end
 * against a real mosquitto in tests/e2e/test_mqtt.sh.
 */
#include <stdint.h>
#include <string.h>

#include "agent/trigger/mqtt_wire.h"
#include "tests/unit/test.h"

START_TEST(message_round_trip)
{
	struct op_buf b;
	op_buf_init(&b, OP_MQTT_WIRE_MAX_FRAME + 8);
	struct op_mqtt_msg in = {.qos = 1,
	                         .retained = true,
	                         .dup = false,
	                         .topic = "plant/7/orders",
	                         .topic_len = 14,
	                         .payload = "{\"id\":1}\0tail",
	                         .payload_len = 13};
	ck_assert_int_eq(op_mqtt_frame_msg(&b, &in), OP_OK);

	enum op_mqtt_frame type;
	const char *body;
	size_t blen, used;
	ck_assert_int_eq(op_mqtt_frame_get(b.data, b.len, &type, &body, &blen, &used), OP_OK);
	ck_assert_int_eq(type, OP_MQTT_MSG);
	ck_assert_uint_eq(used, b.len);
	struct op_mqtt_msg out;
	ck_assert_int_eq(op_mqtt_msg_parse(body, blen, &out), OP_OK);
	ck_assert_int_eq(out.qos, 1);
	ck_assert(out.retained && !out.dup && !out.truncated);
	ck_assert_uint_eq(out.topic_len, 14);
	ck_assert_mem_eq(out.topic, "plant/7/orders", 14);
	/* Payloads are bytes: a NUL inside survives. */
	ck_assert_uint_eq(out.payload_len, 13);
	ck_assert_mem_eq(out.payload, "{\"id\":1}\0tail", 13);
	op_buf_fini(&b);
}
END_TEST

START_TEST(truncated_payload_keeps_its_size_only)
{
	struct op_buf b;
	op_buf_init(&b, 4096);
	struct op_mqtt_msg in = {.qos = 0,
	                         .truncated = true,
	                         .topic = "t",
	                         .topic_len = 1,
	                         .payload = "never sent",
	                         .payload_len = 9u * 1024 * 1024};
	ck_assert_int_eq(op_mqtt_frame_msg(&b, &in), OP_OK);
	ck_assert_uint_lt(b.len, 64); /* the bytes stayed in the consumer */
	enum op_mqtt_frame type;
	const char *body;
	size_t blen, used;
	ck_assert_int_eq(op_mqtt_frame_get(b.data, b.len, &type, &body, &blen, &used), OP_OK);
	struct op_mqtt_msg out;
	ck_assert_int_eq(op_mqtt_msg_parse(body, blen, &out), OP_OK);
	ck_assert(out.truncated);
	ck_assert_uint_eq(out.payload_len, 9u * 1024 * 1024);
	ck_assert_uint_eq(strlen(out.payload), 0);
	op_buf_fini(&b);
}
END_TEST

START_TEST(frames_in_pieces_and_in_a_row)
{
	struct op_buf b;
	op_buf_init(&b, 4096);
	ck_assert_int_eq(op_mqtt_frame_put(&b, OP_MQTT_STATUS, "\x01tcp://h:1", 10), OP_OK);
	size_t first = b.len;
	ck_assert_int_eq(op_mqtt_frame_put(&b, OP_MQTT_STOP, "\x01", 1), OP_OK);
	enum op_mqtt_frame type;
	const char *body;
	size_t blen, used;
	/* Every prefix of the first frame is "not all there yet". */
	for (size_t n = 0; n < first; n++)
		ck_assert_int_eq(op_mqtt_frame_get(b.data, n, &type, &body, &blen, &used),
		                 OP_ERETRY);
	ck_assert_int_eq(op_mqtt_frame_get(b.data, b.len, &type, &body, &blen, &used), OP_OK);
	ck_assert_int_eq(type, OP_MQTT_STATUS);
	ck_assert_uint_eq(blen, 10);
	ck_assert_uint_eq(used, first);
	ck_assert_int_eq(op_mqtt_frame_get(b.data + used, b.len - used, &type, &body, &blen, &used),
	                 OP_OK);
	ck_assert_int_eq(type, OP_MQTT_STOP);
	ck_assert_uint_eq(blen, 1);
	ck_assert_int_eq(body[0], 1);
	op_buf_fini(&b);
}
END_TEST

START_TEST(malformed_frames_are_refused)
{
	enum op_mqtt_frame type;
	const char *body;
	size_t blen, used;
	char f[16] = {0};
	/* A zero length: not even a type byte. */
	ck_assert_int_eq(op_mqtt_frame_get(f, sizeof(f), &type, &body, &blen, &used), OP_EPARSE);
	/* A length past the cap is refused before anything waits for it. */
	uint32_t huge = OP_MQTT_WIRE_MAX_FRAME + 1;
	memcpy(f, &huge, 4);
	ck_assert_int_eq(op_mqtt_frame_get(f, sizeof(f), &type, &body, &blen, &used), OP_EPARSE);
	huge = UINT32_MAX;
	memcpy(f, &huge, 4);
	ck_assert_int_eq(op_mqtt_frame_get(f, 4, &type, &body, &blen, &used), OP_EPARSE);

	/* MSG bodies whose lengths do not add up, or say nonsense. */
	struct op_mqtt_msg m;
	char mb[32] = {1, 0, 0, 0};
	uint32_t tl = 3, pl = 2;
	memcpy(mb + 4, &tl, 4);
	memcpy(mb + 8, &pl, 4);
	static const char payload[5] = {'a', 'b', 'c', 'd', 'e'};
	memcpy(mb + 12, payload, sizeof(payload));
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 17, &m), OP_OK);
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 16, &m), OP_EPARSE); /* short */
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 18, &m), OP_EPARSE); /* extra */
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 11, &m), OP_EPARSE); /* no header */
	tl = UINT32_MAX;
	memcpy(mb + 4, &tl, 4);
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 17, &m), OP_EPARSE); /* topic past the end */
	tl = 0;
	memcpy(mb + 4, &tl, 4);
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 14, &m), OP_EPARSE); /* no topic */
	tl = 3;
	memcpy(mb + 4, &tl, 4);
	mb[0] = 3; /* QoS 3 does not exist */
	ck_assert_int_eq(op_mqtt_msg_parse(mb, 17, &m), OP_EPARSE);
}
END_TEST

START_TEST(oversized_frames_are_not_built)
{
	struct op_buf b;
	op_buf_init(&b, 64);
	ck_assert_int_eq(op_mqtt_frame_put(&b, OP_MQTT_HELLO, "x", OP_MQTT_WIRE_MAX_FRAME),
	                 OP_ELIMIT);
	ck_assert_uint_eq(b.len, 0);
	op_buf_fini(&b);
}
END_TEST

static Suite *mqtt_wire_suite(void)
{
	Suite *s = suite_create("mqtt-wire");
	TCase *tc = tcase_create("frames");
	tcase_add_test(tc, message_round_trip);
	tcase_add_test(tc, truncated_payload_keeps_its_size_only);
	tcase_add_test(tc, frames_in_pieces_and_in_a_row);
	tcase_add_test(tc, malformed_frames_are_refused);
	tcase_add_test(tc, oversized_frames_are_not_built);
	suite_add_tcase(s, tc);
	return s;
}

OP_TEST_MAIN(mqtt_wire_suite)
