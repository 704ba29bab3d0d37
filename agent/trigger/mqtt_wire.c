/*
 * Frames between outpostd and its MQTT consumer processes (mqtt_wire.h).
 */
#include "agent/trigger/mqtt_wire.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

static op_err put_u32(struct op_buf *b, uint32_t v)
{
	return op_buf_add(b, &v, sizeof(v));
}

op_err op_mqtt_frame_put(struct op_buf *b, enum op_mqtt_frame type, const void *body, size_t len)
{
	if (len + 1 > OP_MQTT_WIRE_MAX_FRAME)
		return OP_ELIMIT;
	unsigned char t = (unsigned char)type;
	op_err rc = put_u32(b, (uint32_t)(len + 1));
	if (rc == OP_OK)
		rc = op_buf_add(b, &t, 1);
	if (rc == OP_OK && len)
		rc = op_buf_add(b, body, len);
	return rc;
}

op_err op_mqtt_frame_msg(struct op_buf *b, const struct op_mqtt_msg *m)
{
	size_t plen = m->truncated ? 0 : m->payload_len;
	size_t body = 4 + 4 + 4 + m->topic_len + plen;
	if (body + 1 > OP_MQTT_WIRE_MAX_FRAME || m->topic_len > UINT32_MAX ||
	    m->payload_len > UINT32_MAX)
		return OP_ELIMIT;
	unsigned char head[5] = {OP_MQTT_MSG, (unsigned char)m->qos, m->retained, m->dup,
	                         m->truncated};
	op_err rc = put_u32(b, (uint32_t)(body + 1));
	if (rc == OP_OK)
		rc = op_buf_add(b, head, sizeof(head));
	if (rc == OP_OK)
		rc = put_u32(b, (uint32_t)m->topic_len);
	if (rc == OP_OK)
		rc = put_u32(b, (uint32_t)m->payload_len);
	if (rc == OP_OK)
		rc = op_buf_add(b, m->topic, m->topic_len);
	if (rc == OP_OK && plen)
		rc = op_buf_add(b, m->payload, plen);
	return rc;
}

op_err op_mqtt_frame_get(const char *data, size_t len, enum op_mqtt_frame *type, const char **body,
                         size_t *body_len, size_t *used)
{
	uint32_t n;
	if (len < sizeof(n))
		return OP_ERETRY;
	memcpy(&n, data, sizeof(n));
	if (n == 0 || n > OP_MQTT_WIRE_MAX_FRAME)
		return OP_EPARSE;
	if (len - sizeof(n) < n)
		return OP_ERETRY;
	*type = (enum op_mqtt_frame)(unsigned char)data[sizeof(n)];
	*body = data + sizeof(n) + 1;
	*body_len = n - 1;
	*used = sizeof(n) + n;
	return OP_OK;
}

op_err op_mqtt_msg_parse(const char *body, size_t len, struct op_mqtt_msg *m)
{
	uint32_t tl, pl;
	if (len < 12)
		return OP_EPARSE;
	memset(m, 0, sizeof(*m));
	m->qos = (unsigned char)body[0];
	m->retained = body[1] != 0;
	m->dup = body[2] != 0;
	m->truncated = body[3] != 0;
	memcpy(&tl, body + 4, 4);
	memcpy(&pl, body + 8, 4);
	size_t rest = len - 12;
	size_t want = (size_t)tl + (m->truncated ? 0 : (size_t)pl);
	if (m->qos > 2 || tl == 0 || want != rest)
		return OP_EPARSE;
	m->topic = body + 12;
	m->topic_len = tl;
	m->payload = m->truncated ? "" : body + 12 + tl;
	m->payload_len = pl;
	return OP_OK;
}

op_err op_mqtt_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return op_err_from_errno(errno);
		p += w;
		len -= (size_t)w;
	}
	return OP_OK;
}
