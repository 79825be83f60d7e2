/* prompt: the model's tokenizer and chat template, for the handlers. */
#include "prompt.h"

#include <stdlib.h>
#include <string.h>

int srv_render_chat(const llm_model *m, const api_message *msgs, int n, char **out, api_error *e) {
    const chat_template *t = llm_get_chat(m);
    if (chat_template_kind(t) == CHAT_UNKNOWN) {
        api_err_set(e, 400, "messages", "chat_template_unsupported",
                    "the model's chat template is not one Pivot recognizes (ChatML, Llama-3, "
                    "Llama-2/Mistral)");
        return -1;
    }
    chat_msg *cm = malloc(sizeof *cm * (n > 0 ? n : 1));
    if (!cm) {
        api_err_set(e, 500, NULL, NULL, "out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) cm[i] = (chat_msg){msgs[i].role, msgs[i].content};
    int rc = chat_render(t, cm, n, 1, out);
    free(cm);
    if (rc) {
        api_err_set(e, 400, "messages", "invalid_value", "cannot render the messages");
        return -1;
    }
    return 0;
}

int32_t *srv_tokenize(const llm_model *m, const char *text, int special, int add_bos, int *n) {
    const tok_vocab *v = llm_get_vocab(m);
    int bos = add_bos && tok_add_bos(v) && tok_bos(v) >= 0;
    size_t len = strlen(text);
    int need = tok_encode(v, text, len, special, NULL, 0);
    if (need < 0) return NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(need + bos + 1));
    if (!ids) return NULL;
    if (bos) ids[0] = tok_bos(v);
    tok_encode(v, text, len, special, ids + bos, need);
    *n = need + bos;
    return ids;
}

void srv_detokenize(const tok_vocab *v, const int32_t *ids, int n, pv_buf *out) {
    tok_stream *ts = tok_stream_new(v, 0);
    char piece[512];
    for (int i = 0; ts && i < n; i++) {
        int w = tok_stream_push(ts, ids[i], piece, sizeof piece);
        if (w > 0) pv_buf_add(out, piece, (size_t)w);
    }
    int w = ts ? tok_stream_flush(ts, piece, sizeof piece) : 0;
    if (w > 0) pv_buf_add(out, piece, (size_t)w);
    tok_stream_free(ts);
}
