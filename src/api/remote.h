/* remote.h - libkm's client mode inside the api layer (src/api/remote.c,
 * docs/KMD.md): km_open() of a kmd URI, and the builders of the opaque
 * results that a call through kmd brings back. */
#ifndef KM_API_REMOTE_H
#define KM_API_REMOTE_H

#include "km/vault.h"
#include "km/key.h"
#include "km/policy.h"
#include "kmip_ttlv.h"

/* 1 when uri names kmd ("kmd:/path", "kmip://host:port"). */
int km__remote_uri(const char *uri);
/* km_open() of such a URI: a context of which every call runs in kmd. */
int km__remote_open(km_ctx **out, const char *uri, const km_open_options *opts);

/* km_key_info's snapshot from kmd's answer (the Structure at index st of t;
 * src/api/key.c, which has the struct; kmd encodes it from the public
 * accessors in src/kmd/vendor.c, put_keyinfo, in the order key.c documents);
 * likewise km_policy_report's findings (src/api/policy.c). KM_E_CORRUPT for
 * an answer that does not match. */
int km__keyinfo_remote(const km__ttlv_tree *t, int st, km_keyinfo **out);
int km__findings_remote(const km__ttlv_tree *t, int st, km_policy_findings **out);

#endif /* KM_API_REMOTE_H */
