/*
 * MQTT topic name rules and packet size bounds (MQTT 3.1.1 sections 1.5.3,
 * 2.2.3, 3.3.2 and 4.7), shared by the mqtt-publish step and the daemon's
 * publisher so both refuse the same things with the same words.
 */
#include "connectors/mqtt/topic.h"

#include <stdio.h>
#include <string.h>

#include "agent/core/utf8.h"

bool op_mqtt_topic_name_valid(const char *s, size_t len, char *why, size_t whylen)
{
	char tmp[1];
	if (whylen == 0) {
		why = tmp;
		whylen = sizeof(tmp);
	}
	if (len == 0) {
		snprintf(why, whylen, "empty topic");
		return false;
	}
	if (len > OP_MQTT_TOPIC_MAX) {
		snprintf(why, whylen, "%zu bytes, expected at most %d", len, OP_MQTT_TOPIC_MAX);
		return false;
	}
	const char *nul = memchr(s, '\0', len);
	if (nul) {
		snprintf(why, whylen, "NUL character at byte %zu", (size_t)(nul - s) + 1);
		return false;
	}
	for (size_t i = 0; i < len;) {
		size_t k = op_utf8_valid_len((const unsigned char *)s + i, len - i);
		if (k == 0) {
			snprintf(why, whylen, "not valid UTF-8 at byte %zu", i + 1);
			return false;
		}
		if (s[i] == '+' || s[i] == '#') {
			snprintf(
			    why, whylen,
			    "'%c' at byte %zu: wildcards are for subscriptions, not for publishing",
			    s[i], i + 1);
			return false;
		}
		i += k;
	}
	return true;
}

size_t op_mqtt_payload_max(size_t topic_len, int qos)
{
	/* Variable header: the topic's 2-byte length, the topic, and for
	 * QoS > 0 the 2-byte packet identifier. */
	size_t header = 2 + topic_len + (qos > 0 ? 2 : 0);
	return header >= OP_MQTT_PACKET_MAX ? 0 : OP_MQTT_PACKET_MAX - header;
}
