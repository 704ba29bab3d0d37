/*
 * MQTT topic names, the topics a message is published to (not the filters
 * a subscription names, see op_mqtt_filter_valid in agent/trigger/trigger.h):
 * 1 to 65535 bytes of UTF-8 without NUL and without the wildcards '+' and
 * '#' (MQTT 3.1.1 section 4.7). A broker closes the connection of a client
 * that publishes to anything else, so every publisher checks first.
 */
#ifndef OP_CONNECTORS_MQTT_TOPIC_H
#define OP_CONNECTORS_MQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* Longest topic name: its length is a 16-bit field. */
#define OP_MQTT_TOPIC_MAX 65535

/* Most bytes after the fixed header of one MQTT packet (remaining length). */
#define OP_MQTT_PACKET_MAX 268435455

/*
 * True when len bytes at s are a valid topic name. On false, why (whylen
 * bytes, may be 0) says what is wrong, e.g. "'+' at byte 4: wildcards are
 * for subscriptions, not for publishing".
 */
bool op_mqtt_topic_name_valid(const char *s, size_t len, char *why, size_t whylen);

/*
 * Largest payload that fits one PUBLISH packet with a topic of topic_len
 * bytes at qos (0 or 1); 0 when the topic alone is too long.
 */
size_t op_mqtt_payload_max(size_t topic_len, int qos);

#endif
