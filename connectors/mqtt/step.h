/*
 * The mqtt-publish step type: publish a message to a topic at a broker of
 * the agent's config, through the host's MQTT clients (op_host.mqtt_publish).
 */
#ifndef OP_CONNECTORS_MQTT_STEP_H
#define OP_CONNECTORS_MQTT_STEP_H

#include "agent/engine/step.h"

extern const struct op_step_type op_step_mqtt_publish;

/*
 * The broker name an mqtt-publish step names (its config.broker), or NULL
 * for a step of another type. Borrowed for the life of st. For the host's
 * load-time check that every broker exists.
 */
const char *op_mqtt_step_broker(const struct op_step *st);

#endif
