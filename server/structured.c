/* structured: logit_bias ids and the output grammar (contract in
 * structured.h). */
#include "structured.h"

#include <cjson/cJSON.h>

#include "pverr.h"

int srv_structured(const api_request *r, int n_vocab, gram **out, api_error *e) {
    *out = NULL;
    for (int i = 0; i < r->n_bias; i++)
        if (r->bias_ids[i] >= n_vocab) {
            api_err_set(e, 400, "logit_bias", "invalid_value",
                        "'logit_bias' token id %d is outside the vocabulary (%d tokens)",
                        r->bias_ids[i], n_vocab);
            return -1;
        }
    if (r->rf_kind == API_RF_TEXT) return 0;
    int rc;
    char err[320] = "";
    if (r->rf_kind == API_RF_JSON_OBJECT) {
        rc = gram_json_object(out);
    } else {
        cJSON *schema = cJSON_Parse(r->rf_schema); /* api_rfmt printed it: it parses */
        int flags = r->rf_strict ? GRAM_STRICT : 0;
        rc = schema ? gram_from_schema(schema, flags, out, err, sizeof err) : PV_ENOMEM;
        cJSON_Delete(schema);
    }
    if (rc == PV_ENOMEM) {
        api_err_set(e, 500, NULL, NULL, "out of memory");
        return -1;
    }
    if (rc) {
        api_err_set(e, 400, r->rf_param, rc == PV_EUNSUPPORTED ? "unsupported_schema" : "invalid_schema",
                    "'%s': the JSON schema %s at %s", r->rf_param,
                    rc == PV_EUNSUPPORTED ? "uses what Pivot does not support" : "is invalid", err);
        return -1;
    }
    return 0;
}
