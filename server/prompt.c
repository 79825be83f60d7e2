/* prompt: the model's tokenizer and chat template, for the handlers. */
#include "prompt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_tools.h"
#include "jinja.h"

static int oom(api_error *e) {
    api_err_set(e, 500, NULL, NULL, "out of memory");
    return -1;
}

/* The names of the functions tool results answer (templates such as
 * Mistral's want them): each assistant turn's calls are parsed once and
 * their ids kept in a small open-addressed table, filled in message order,
 * so a tool message finds the latest earlier call with its id in O(1)
 * (review: a rescan per tool message made 14k calls and 30k results block
 * the event loop for minutes). */
typedef struct {
    const char **id, **name; /* [cap], pointing into the parsed calls */
    size_t cap;
} call_map;

static size_t id_hash(const char *s) {
    size_t h = 1469598103934665603u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static void map_put(call_map *m, const char *id, const char *name) {
    size_t i = id_hash(id) & (m->cap - 1);
    while (m->id[i] && strcmp(m->id[i], id)) i = (i + 1) & (m->cap - 1);
    m->id[i] = id, m->name[i] = name; /* a later call with the same id wins */
}

static const char *map_get(const call_map *m, const char *id) {
    if (!m->cap || !id) return NULL;
    size_t i = id_hash(id) & (m->cap - 1);
    while (m->id[i] && strcmp(m->id[i], id)) i = (i + 1) & (m->cap - 1);
    return m->name[i];
}

/* Adds one assistant turn's calls (a parsed tool_calls array). */
static void map_add(call_map *m, const cJSON *calls) {
    const cJSON *c;
    cJSON_ArrayForEach(c, calls) {
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(c, "id");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (cJSON_IsString(cid) && cJSON_IsString(nm)) map_put(m, cid->valuestring, nm->valuestring);
    }
}

/* Every message's parsed tool_calls (NULL when none) and a table sized
 * for all of them; 0 or -1 when out of memory. */
static int parse_calls(const api_message *m, int n, cJSON ***parsed, call_map *map) {
    *map = (call_map){0};
    *parsed = calloc((size_t)n + 1, sizeof **parsed);
    if (!*parsed) return -1;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (m[i].tool_calls && ((*parsed)[i] = cJSON_Parse(m[i].tool_calls)))
            total += (size_t)cJSON_GetArraySize((*parsed)[i]);
    if (!total) return 0;
    for (map->cap = 16; map->cap < 2 * total; map->cap *= 2) {}
    map->id = calloc(map->cap, sizeof *map->id);
    map->name = calloc(map->cap, sizeof *map->name);
    return map->id && map->name ? 0 : -1;
}

/* Messages as the template sees them. generic: tool calls and results
 * rewritten as text (api_tools.h's generic format), for templates that do
 * not know them. Calls keep OpenAI's shape otherwise, with `arguments`
 * parsed into an object as Hugging Face templates expect. NULL when out of
 * memory. */
static cJSON *messages_json(const api_message *m, int n, int generic) {
    cJSON **parsed;
    call_map map;
    cJSON *arr = parse_calls(m, n, &parsed, &map) ? NULL : cJSON_CreateArray();
    for (int i = 0; arr && i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        const char *name = m[i].name ? m[i].name : map_get(&map, m[i].tool_call_id);
        char *text = NULL;
        if (generic && m[i].tool_calls) {
            text = api_tools_calls_text(m[i].tool_calls);
        } else if (generic && m[i].tool_call_id) {
            text = api_tools_result_text(m[i].tool_call_id, name, m[i].content);
        }
        int is_tool = !strcmp(m[i].role, "tool");
        cJSON_AddStringToObject(o, "role", generic && is_tool ? "user" : m[i].role);
        if (text && m[i].content[0] && !is_tool) { /* text before the calls stays */
            char *both = malloc(strlen(m[i].content) + strlen(text) + 2);
            if (both) strcat(strcat(strcpy(both, m[i].content), "\n"), text);
            free(text);
            text = both;
        }
        if (text) cJSON_AddStringToObject(o, "content", text);
        else if (m[i].content_null && m[i].tool_calls) cJSON_AddNullToObject(o, "content");
        else cJSON_AddStringToObject(o, "content", m[i].content);
        free(text);
        if (!generic && parsed[i]) {
            cJSON *calls = cJSON_Duplicate(parsed[i], 1), *c;
            cJSON_ArrayForEach(c, calls) {
                cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
                cJSON *a = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
                cJSON *args = cJSON_IsString(a) ? cJSON_Parse(a->valuestring) : NULL;
                if (cJSON_IsObject(args)) cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", args);
                else cJSON_Delete(args);
            }
            cJSON_AddItemToObject(o, "tool_calls", calls);
        }
        if (!generic && m[i].tool_call_id) cJSON_AddStringToObject(o, "tool_call_id", m[i].tool_call_id);
        if (!generic && name) cJSON_AddStringToObject(o, "name", name);
        cJSON_AddItemToArray(arr, o);
        if (parsed[i] && map.cap) map_add(&map, parsed[i]); /* later results may answer these */
    }
    for (int i = 0; parsed && i < n; i++) cJSON_Delete(parsed[i]);
    free(parsed);
    free(map.id);
    free(map.name);
    return arr;
}

/* Generic tools: their description joins the system prompt (a first
 * system message, added when there is none). */
static void add_tool_prompt(cJSON *msgs, const api_tools *t) {
    char *sys = api_tools_system_prompt(t);
    if (!sys) return;
    cJSON *first = cJSON_GetArrayItem(msgs, 0);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(first, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(first, "content");
    if (cJSON_IsString(role) && !strcmp(role->valuestring, "system") && cJSON_IsString(content)) {
        char *both = malloc(strlen(content->valuestring) + strlen(sys) + 3);
        if (both) {
            strcat(strcat(strcpy(both, content->valuestring), "\n\n"), sys);
            cJSON_ReplaceItemInObjectCaseSensitive(first, "content", cJSON_CreateString(both));
        }
        free(both);
    } else {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", "system");
        cJSON_AddStringToObject(o, "content", sys);
        cJSON_InsertItemInArray(msgs, 0, o);
    }
    free(sys);
}

static void add_token(cJSON *ctx, const tok_vocab *v, const char *key, int32_t id) {
    char buf[256];
    tok_piece_str(v, id, 1, buf, (int)sizeof buf); /* "" for a missing (-1) id */
    cJSON_AddStringToObject(ctx, key, buf);
}

/* The built-in renderer over the (generic) messages. */
static int render_builtin(const chat_template *t, const cJSON *msgs, int agp, char **out) {
    int n = cJSON_GetArraySize(msgs);
    chat_msg *cm = malloc(sizeof *cm * (size_t)(n > 0 ? n : 1));
    if (!cm) return -1;
    for (int i = 0; i < n; i++) {
        const cJSON *o = cJSON_GetArrayItem(msgs, i);
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
        cm[i] = (chat_msg){cJSON_GetObjectItemCaseSensitive(o, "role")->valuestring,
                           cJSON_IsString(c) ? c->valuestring : ""};
    }
    int rc = chat_render(t, cm, n, agp, out);
    free(cm);
    return rc;
}

static void strip_bos(const llm_model *m, const char *bos, char *text) {
    const tok_vocab *v = llm_get_vocab(m);
    size_t n = strlen(bos);
    if (n && tok_add_bos(v) && tok_bos(v) >= 0 && !strncmp(text, bos, n))
        memmove(text, text + n, strlen(text + n) + 1);
}

int srv_render_chat(const llm_model *m, const srv_chat_in *in, char **out, const char **how,
                    api_error *e) {
    const chat_template *t = llm_get_chat(m);
    const jj_template *jj = chat_template_jinja(t);
    const api_tools *tools = in->tools && in->tools->tools_json && in->tools->choice != API_TOOL_NONE
                                 ? in->tools : NULL;
    int generic = !jj || !jj_uses(jj, "tools");
    *out = NULL;
    if (!jj && chat_template_kind(t) == CHAT_UNKNOWN) {
        api_err_set(e, 400, "messages", "chat_template_unsupported",
                    "the model's chat template is outside Pivot's Jinja subset (%s) and not one of "
                    "the built-in families (ChatML, Llama-3, Llama-2/Mistral)",
                    chat_template_jinja_error(t) ? chat_template_jinja_error(t) : "no template");
        return -1;
    }
    cJSON *ctx = cJSON_CreateObject(), *msgs = messages_json(in->msgs, in->n, generic);
    if (!ctx || !msgs) {
        cJSON_Delete(ctx);
        cJSON_Delete(msgs);
        return oom(e);
    }
    if (tools && generic) add_tool_prompt(msgs, tools);
    cJSON_AddItemToObject(ctx, "messages", msgs);
    if (tools && !generic) cJSON_AddItemToObject(ctx, "tools", cJSON_Parse(tools->tools_json));
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", in->add_generation_prompt);
    add_token(ctx, llm_get_vocab(m), "bos_token", tok_bos(llm_get_vocab(m)));
    add_token(ctx, llm_get_vocab(m), "eos_token", tok_eos(llm_get_vocab(m)));
    int rc;
    char err[300] = "";
    if (jj) {
        char *js = cJSON_PrintUnformatted(ctx);
        rc = js ? jj_render(jj, js, strlen(js), out, err, sizeof err) : -1;
        free(js);
    } else {
        rc = render_builtin(t, msgs, in->add_generation_prompt, out);
        if (rc) snprintf(err, sizeof err, "the %s template cannot render these messages",
                         chat_kind_name(chat_template_kind(t)));
    }
    if (!rc && !in->keep_bos)
        strip_bos(m, cJSON_GetObjectItemCaseSensitive(ctx, "bos_token")->valuestring, *out);
    cJSON_Delete(ctx);
    if (how) *how = jj ? "jinja" : "builtin";
    if (rc) {
        free(*out);
        *out = NULL;
        api_err_set(e, 400, "messages", "invalid_value", "cannot render the messages: %s", err);
        return -1;
    }
    return 0;
}

void srv_template_warn(const llm_model *m, const char *who) {
    const chat_template *t = llm_get_chat(m);
    const char *err = chat_template_jinja_error(t);
    if (!err) return;
    if (chat_template_kind(t) == CHAT_UNKNOWN)
        fprintf(stderr, "%s: warning: the chat template cannot be used (%s) and is not one of the "
                        "built-in families: chat requests will be refused\n", who, err);
    else
        fprintf(stderr, "%s: warning: the chat template is outside the Jinja subset (%s); using "
                        "the built-in %s rendering\n", who, err, chat_kind_name(chat_template_kind(t)));
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
