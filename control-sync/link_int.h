/*
 * The control link's insides, shared by link.c (the connection, desired,
 * status, reported), drain.c (the outbox's drain and the logger's tap) and
 * command.c (cmd/<id> requests). See link.h.
 */
#ifndef OP_CONTROL_SYNC_LINK_INT_H
#define OP_CONTROL_SYNC_LINK_INT_H

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "agent/core/clock.h"
#include "control-sync/envelope.h"
#include "control-sync/link.h"

#define TOPIC_MAX      512
#define KEY_FILE_MAX   4096
#define KEYS_MAX       16
#define SESSION_EXPIRY (7 * 24 * 3600) /* seconds the broker keeps the session */
#define STABLE_MS      60000           /* a connection this old resets the backoff */
#define STOP_WAIT_MS   1000            /* the goodbye: offline status, disconnect */
#define AGENT_ID_MAX   64
#define ERR_MAX        512
#define WINDOW         4  /* outbox messages in flight per stream */
#define CMD_RUNNING    4  /* commands running at once */
#define CMD_QUEUED     32 /* commands waiting for the link thread */

enum state { ST_DOWN, ST_CONNECTING, ST_UP };

/* An outbox message on its way: records first..last of its stream. */
struct flight {
	uint64_t first, last;
	bool done;
};

/* The drain's view of one stream, under l->mu. Messages go out in seq
 * order and the store deletes only up to the first one not yet
 * acknowledged, so a message lost with a connection is sent again. */
struct drain_stream {
	uint64_t sent;  /* last seq sent on this connection */
	uint64_t acked; /* last seq the broker acknowledged, in order */
	struct flight ring[WINDOW];
	unsigned head, count;
};

/* The context of one outbox publish, freed by its callback, or by
 * link_free when paho drops it with the client (on l->pubs until then). */
struct pub_ctx {
	struct pub_ctx *prev, *next;
	struct op_link *l;
	unsigned epoch;
	enum op_outbox_stream st;
	uint64_t first, last;
};

#define CMD_ID_MAX     64
#define CMD_IN_MAX     (1u << 20) /* largest command envelope */
#define ANSWER_MAX     (8u << 20) /* largest command answer (within the broker's packet limit) */
#define CMD_RECENT     1024       /* ids remembered against replays */
#define CMD_TTL_MAX_MS (10LL * 60 * 1000) /* the furthest "expires" accepted */

/* A cmd/<id> request, from arrival to its result. */
struct cmd {
	struct cmd *next;
	struct op_link *l;
	char id[CMD_ID_MAX + 1];
	char *payload; /* the envelope */
	size_t len;
	char *resp_topic; /* where the result goes */
	char *corr;       /* correlation data, echoed; NULL: none */
	size_t corr_len;
};

/* An accepted command's id, refused again until it expires. */
struct cmd_seen {
	char id[CMD_ID_MAX + 1];
	int64_t expires_ms; /* wall clock */
};

struct op_link {
	const struct op_config *cfg;
	struct op_link_hooks h;
	char *version;
	char *seal_key; /* base64, "" when none */
	struct op_env_key keys[KEYS_MAX];
	size_t nkeys;
	char t_desired[TOPIC_MAX], t_reported[TOPIC_MAX], t_status[TOPIC_MAX];
	char *client_id;
	char *offline; /* the Last Will's payload */
	char t_out[OP_OUTBOX_STREAMS][TOPIC_MAX];
	char t_cmd[TOPIC_MAX];        /* <root>/cmd/+ */
	char t_cmd_result[TOPIC_MAX]; /* <root>/cmd-result/ */
	struct op_store *store;
	MQTTAsync cl;
	pthread_t thread, drain_thread;
	bool thread_started, drain_started;

	pthread_mutex_t mu;
	pthread_cond_t cv; /* any change below */
	bool stop;
	enum state st;
	bool attempt_done, attempt_ok; /* the connect attempt's outcome */
	uint32_t max_packet;           /* the broker's Maximum Packet Size, 0: not said */
	char conn_err[ERR_MAX];        /* why the last attempt or connection failed */
	char tls_err[ERR_MAX];         /* from paho's TLS error callback, this attempt */
	bool lost;
	char *inbox; /* the latest desired envelope not yet handled */
	size_t inbox_len;
	bool inbox_too_large;
	bool report_due;
	int goodbye_pending; /* offline status sent, not yet acknowledged */
	bool disconnected;
	struct op_link_stats stats;
	/* The drain. */
	unsigned epoch;       /* bumped at each connect: callbacks of older ones are stale */
	bool drain_hint;      /* records were added, or a slot freed */
	struct pub_ctx *pubs; /* outbox publishes paho holds */
	struct drain_stream ds[OP_OUTBOX_STREAMS];

	/* Commands, under mu. */
	struct cmd *cmd_head, *cmd_tail; /* waiting for the link thread */
	size_t cmd_queued;
	unsigned cmd_running;                   /* command threads alive */
	atomic_bool cmd_stop;                   /* running commands give up (the agent stops) */
	uint64_t refused_hash;                  /* the last envelope refused: not handled again */
	char env_digest[OP_ENV_DIGEST_LEN + 1]; /* of the envelope handled now; "": none */
	struct cmd_seen seen[CMD_RECENT];
	size_t nseen;

	/* The link thread's own. */
	char since[32]; /* when this connection came up */
	cJSON *last_error;
};

/* ---- link.c ---- */

/* The current UTC time as RFC 3339 with milliseconds into out (32 bytes). */
void op_link__utc_now(char out[32]);
/* Waits on l->cv (l->mu held) until mono time `until` at most. */
void op_link__wait_until(struct op_link *l, int64_t until);
/* prefix + "outpost/v1/" + agent id + "/" + leaf into out (TOPIC_MAX). */
bool op_link__topic(const struct op_config *cfg, const char *leaf, char *out);

/* ---- drain.c ---- */

void *op_link__drain_main(void *arg);
void op_link__drain_restart_locked(struct op_link *l);
void op_link__on_outbox_add(void *ud);
/* The logger's tap into l's outbox, on and off. */
void op_link__tap_on(struct op_link *l);
void op_link__tap_off(void);
/* Frees the outbox publishes paho dropped with the client. */
void op_link__pubs_free(struct op_link *l);

/* A send failed because the client is not connected (paho does not always
 * call connectionLost, e.g. when the broker drops an oversized packet):
 * the link takes the connection as lost. */
void op_link__send_failed(struct op_link *l, int prc);

/* ---- command.c ---- */

/* Loads the ids of commands accepted before a restart that have not
 * expired (the replay guard survives restarts). */
void op_link__cmd_load_seen(struct op_link *l);
/* A cmd/<id> message from paho's thread: queued for the link thread. */
void op_link__cmd_arrived(struct op_link *l, const char *topic, MQTTAsync_message *m);
/* On the link thread: starts the queued commands. */
void op_link__cmd_start_queued(struct op_link *l);
/* Waits for the running commands (at stop) and frees what is queued. */
void op_link__cmd_fini(struct op_link *l);

#endif
