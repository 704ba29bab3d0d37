/*
 * outpostd loads the MQTT client library (paho, and with it OpenSSL) on its
 * first MQTT call, not at start: an agent without a control plane or a
 * broker never maps them, which is about 1.8 MiB of its idle memory
 * (libcrypto alone is 1.4 MiB resident once relocated).
 *
 * These are the paho functions the agent calls, under their own names: in
 * outpostd they resolve here (the tests and outpostctl link paho itself).
 * Each loads the library once, then calls through. outpostd does not export
 * them (it exports op_* only), so paho's calls to its own functions stay
 * inside paho. If the library cannot be loaded, every call fails as paho
 * reports a failure, and the calls that return text say why.
 */
#define OP_LOG_MODULE "mqtt"

#include <MQTTAsync.h>
#include <dlfcn.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "agent/core/log.h"

#define PAHO_SONAME "libpaho-mqtt3as.so.1"

/* Name, return type, parameters, arguments of each function called through. */
#define PAHO_FNS(X)                                                                                \
	X(MQTTAsync_create, int,                                                                   \
	  (MQTTAsync * h, const char *uri, const char *id, int pt, void *pc),                      \
	  (h, uri, id, pt, pc), MQTTASYNC_FAILURE)                                                 \
	X(MQTTAsync_createWithOptions, int,                                                        \
	  (MQTTAsync * h, const char *uri, const char *id, int pt, void *pc,                       \
	   MQTTAsync_createOptions *o),                                                            \
	  (h, uri, id, pt, pc, o), MQTTASYNC_FAILURE)                                              \
	X(MQTTAsync_setCallbacks, int,                                                             \
	  (MQTTAsync h, void *ctx, MQTTAsync_connectionLost *cl, MQTTAsync_messageArrived *ma,     \
	   MQTTAsync_deliveryComplete *dc),                                                        \
	  (h, ctx, cl, ma, dc), MQTTASYNC_FAILURE)                                                 \
	X(MQTTAsync_setConnectionLostCallback, int,                                                \
	  (MQTTAsync h, void *ctx, MQTTAsync_connectionLost *cl), (h, ctx, cl), MQTTASYNC_FAILURE) \
	X(MQTTAsync_setConnected, int, (MQTTAsync h, void *ctx, MQTTAsync_connected *co),          \
	  (h, ctx, co), MQTTASYNC_FAILURE)                                                         \
	X(MQTTAsync_setDisconnected, int, (MQTTAsync h, void *ctx, MQTTAsync_disconnected *d),     \
	  (h, ctx, d), MQTTASYNC_FAILURE)                                                          \
	X(MQTTAsync_connect, int, (MQTTAsync h, const MQTTAsync_connectOptions *o), (h, o),        \
	  MQTTASYNC_FAILURE)                                                                       \
	X(MQTTAsync_disconnect, int, (MQTTAsync h, const MQTTAsync_disconnectOptions *o), (h, o),  \
	  MQTTASYNC_FAILURE)                                                                       \
	X(MQTTAsync_subscribe, int,                                                                \
	  (MQTTAsync h, const char *topic, int qos, MQTTAsync_responseOptions *r),                 \
	  (h, topic, qos, r), MQTTASYNC_FAILURE)                                                   \
	X(MQTTAsync_subscribeMany, int,                                                            \
	  (MQTTAsync h, int n, char *const *topic, const int *qos, MQTTAsync_responseOptions *r),  \
	  (h, n, topic, qos, r), MQTTASYNC_FAILURE)                                                \
	X(MQTTAsync_unsubscribe, int,                                                              \
	  (MQTTAsync h, const char *topic, MQTTAsync_responseOptions *r), (h, topic, r),           \
	  MQTTASYNC_FAILURE)                                                                       \
	X(MQTTAsync_sendMessage, int,                                                              \
	  (MQTTAsync h, const char *topic, const MQTTAsync_message *m,                             \
	   MQTTAsync_responseOptions *r),                                                          \
	  (h, topic, m, r), MQTTASYNC_FAILURE)                                                     \
	X(MQTTAsync_waitForCompletion, int, (MQTTAsync h, MQTTAsync_token t, unsigned long ms),    \
	  (h, t, ms), MQTTASYNC_FAILURE)                                                           \
	X(MQTTProperties_add, int, (MQTTProperties * p, const MQTTProperty *prop), (p, prop), -1)  \
	X(MQTTProperties_getProperty, MQTTProperty *,                                              \
	  (MQTTProperties * p, enum MQTTPropertyCodes id), (p, id), NULL)                          \
	X(MQTTProperties_getNumericValue, int, (MQTTProperties * p, enum MQTTPropertyCodes id),    \
	  (p, id), -9999999)                                                                       \
	X(MQTTAsync_strerror, const char *, (int code), (code), why)                               \
	X(MQTTReasonCode_toString, const char *, (enum MQTTReasonCodes v), (v), why)

/* Those that return nothing. */
#define PAHO_VOID_FNS(X)                                        \
	X(MQTTAsync_destroy, (MQTTAsync * h), (h))              \
	X(MQTTAsync_freeMessage, (MQTTAsync_message * *m), (m)) \
	X(MQTTAsync_free, (void *p), (p))                       \
	X(MQTTProperties_free, (MQTTProperties * p), (p))

static struct {
#define FIELD(name, ret, params, args, fail) ret(*name) params;
#define VOID_FIELD(name, params, args)       void(*name) params;
	PAHO_FNS(FIELD)
	PAHO_VOID_FNS(VOID_FIELD)
#undef FIELD
#undef VOID_FIELD
} fn;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char why[512]; /* set once, when the load failed */

static void *sym(void *h, const char *name)
{
	void *p = dlsym(h, name);
	if (p == NULL && why[0] == '\0')
		snprintf(why, sizeof(why), "%s has no %s", PAHO_SONAME, name);
	return p;
}

static void load(void)
{
	void *h = dlopen(PAHO_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		const char *e = dlerror();
		snprintf(why, sizeof(why), "cannot load the MQTT library: %s", e ? e : PAHO_SONAME);
		OP_LOGE("%s", why);
		return;
	}
	/* paho's threads may still be ending when the process exits: OpenSSL's
	 * own cleanup at exit would pull libcrypto from under their
	 * thread-local destructors. Before paho starts any, leave it loaded. */
	int (*init)(uint64_t, const OPENSSL_INIT_SETTINGS *) =
	    (int (*)(uint64_t, const OPENSSL_INIT_SETTINGS *))dlsym(h, "OPENSSL_init_crypto");
	if (init)
		(void)init(OPENSSL_INIT_NO_ATEXIT, NULL);
#define LOOK(name, ...) fn.name = (__typeof__(fn.name))sym(h, #name);
	PAHO_FNS(LOOK)
	PAHO_VOID_FNS(LOOK)
#undef LOOK
	if (why[0]) {
		OP_LOGE("%s", why);
		return; /* never unloaded: paho may have started threads */
	}
	loaded = true;
}

static bool ready(void)
{
	pthread_once(&once, load);
	return loaded;
}

#define WRAP(name, ret, params, args, fail)             \
	ret name params                                 \
	{                                               \
		return ready() ? fn.name args : (fail); \
	}
PAHO_FNS(WRAP)
#undef WRAP

#define VOID_WRAP(name, params, args) \
	void name params              \
	{                             \
		if (ready())          \
			fn.name args; \
	}
PAHO_VOID_FNS(VOID_WRAP)
#undef VOID_WRAP
