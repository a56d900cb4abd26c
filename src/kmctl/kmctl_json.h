/* kmctl_json.h - the JSON and parsing helpers of cmd_key.c that other
 * command files share (they need jansson, which kmctl.h does not include). */
#ifndef KMCTL_JSON_H
#define KMCTL_JSON_H

#include <jansson.h>

#include "kmctl.h"

/* Prints root (consumed; NULL: "building the JSON output failed") indented. */
int kmctl_json_emit(json_t *root);
/* Adds a member; a NULL value poisons the object (returns -1). */
int kmctl_json_set(json_t *obj, const char *key, json_t *v);
/* A date as ISO 8601 UTC, or null for 0. */
json_t *kmctl_json_time(int64_t t);
/* A key type's name; a usage error listing the types when unknown. */
int kmctl_parse_type(const char *name, km_key_type *out);

/* A usage list ("encrypt,decrypt") as a KM_USAGE_* mask. */
int kmctl_parse_usage(const char *s, uint32_t *out);

/* A new key's id: its hex and a newline, or with --json {"name": NAME, "id": HEX}. */
int kmctl_print_id(const struct kmctl_args *a, const char *name, const uint8_t *id);

/* cmd_keymeta.c: a key's description, aliases and tags in key info */
int kmctl_keymeta_json(json_t *root, const km_keyinfo *info);
void kmctl_keymeta_text(const km_keyinfo *info);
/* a version's revocation, compromise, deactivation and destruction */
int kmctl_keymeta_version_json(json_t *e, const km_version_info *v);
void kmctl_keymeta_versions_text(const km_keyinfo *info);

#endif /* KMCTL_JSON_H */
