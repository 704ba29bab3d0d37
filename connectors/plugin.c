/*
 * Linked into each connector plugin, never into outpostd or libop.a: the
 * version of the build the plugin belongs to. outpostd loads only plugins of
 * its own version (connectors/registry.c): a package upgrade unpacks new
 * plugins while the old daemon still runs, until it restarts, and a plugin
 * of another build may disagree with it on every structure they share.
 */
#include "agent/core/version.h"

extern const char op_plugin_version[];
const char op_plugin_version[] = OUTPOST_VERSION;
