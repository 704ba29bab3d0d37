/*
 * What the outbox's records and messages look like on the wire
 * (docs/protocol.md, "The outbox"): the records the agent keeps for the
 * control plane (log lines, metrics snapshots; execution records come from
 * the store, op_store_exec_json) and the batch messages that carry them on
 * out/logs, out/metrics and out/executions. Pure functions: the store keeps
 * the records (agent/store/store.h, the outbox), the link drains them
 * (control-sync/link.c).
 */
#ifndef OP_CONTROL_SYNC_OUTBOX_H
#define OP_CONTROL_SYNC_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "agent/core/buf.h"
#include "agent/core/err.h"
#include "agent/core/log.h"
#include "agent/store/store.h"

/* Records per message and bytes of records per message, at most. */
#define OP_OUTBOX_BATCH_RECORDS 1000
#define OP_OUTBOX_BATCH_BYTES   (256u << 10)

/* "logs", "metrics", "executions": the stream's name and topic leaf (out/NAME). */
const char *op_outbox_stream_name(enum op_outbox_stream st);

/*
 * A log record: {"at": RFC 3339 UTC with ms, "level", "module", "message"}
 * for a line as the logger's tap gets it. *out is the JSON text (op_free),
 * *len its length.
 */
op_err op_outbox_log_record(enum op_log_level lvl, const char *module, const char *line, char **out,
                            size_t *len) OP_WUR;

/*
 * A metrics record: {"at", "samples": {"name{labels}": value, ...}} from
 * the Prometheus text exposition prom (len bytes): every sample line, its
 * series as the key. *out as above.
 */
op_err op_outbox_metrics_record(const char *prom, size_t len, char **out, size_t *outlen) OP_WUR;

/*
 * Appends to out the message of batch b of stream st from agent:
 *   {"agent": ..., "stream": ..., "dropped": N, "records": [{"seq": S, ...}, ...]}
 * each record's members after its "seq" (records are JSON objects; one
 * that is not is sent as {"seq": S, "invalid": true}). dropped is the
 * stream's count of records dropped by the outbox's bounds so far.
 */
op_err op_outbox_message(const char *agent, enum op_outbox_stream st, uint64_t dropped,
                         const struct op_outbox_batch *b, struct op_buf *out) OP_WUR;

#endif
