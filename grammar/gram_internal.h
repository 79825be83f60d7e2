/* gram_internal: the compiled grammar's nodes and the matcher's stack sets,
 * shared by gram_schema.c (builds nodes), gram_match.c (steps stacks) and
 * gram_mask.c (walks the vocabulary, caches masks). */
#ifndef PIVOT_GRAM_INTERNAL_H
#define PIVOT_GRAM_INTERNAL_H

#include <stdint.h>

#include "gram.h"

#define GRAM_MAX_PROPS 32  /* bits of a uint32_t */
#define GRAM_MAX_LITS 32
#define GRAM_MAX_NODES 4096
#define GRAM_MAX_FRAMES 128

enum { G_ANY, G_OBJ, G_ARR, G_STR, G_NUM, G_INT, G_LIT, G_ANYOF, G_ROOT };
/* built-in nodes every gram starts with; schema nodes follow */
enum { GN_ANY, GN_OBJ_ANY, GN_ARR_ANY, GN_STR, GN_NUM, GN_TFN, GN_BUILTIN };

typedef struct {
    char *text; /* owned; a property name or a literal's compact JSON */
    int len;
    int node;   /* property: its value's node */
} gram_item;

typedef struct {
    int kind;
    gram_item *items; /* G_OBJ: properties; G_LIT: literals */
    int n_items;
    uint32_t required; /* G_OBJ: bits of items */
    int addl;          /* G_OBJ: node of additional properties, -1: none */
    int elem, min, max; /* G_ARR: items node, minItems, maxItems (-1: none) */
    int *alts;          /* G_ANYOF */
    int n_alts;
    /* the shortest complete value of this node: its bytes, and the frames
     * it takes (gram_close_init; GRAM_CLOSE_INF: none can be written) */
    int minlen, mindepth;
} gram_node;

/* Phases of a frame, per node kind (gram_match.c steps them, gram_close.c
 * prices what is left of them). */
enum { R_START, R_IN, R_FULL };                                    /* root */
enum { O_OPEN, O_FIRST, O_KEY, O_COLON, O_VAL, O_IN, O_AFTER, O_COMMA }; /* object */
enum { A_OPEN, A_FIRST, A_IN, A_AFTER, A_COMMA };                  /* array */
enum { S_OPEN, S_IN, S_ESC, S_HEX };                               /* string */
enum { N_START, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP }; /* number */

#define KEY_ADDL 0xFFFF /* pos of an object reading an additional property */
#define KEY_FREE 0xFFFE /* pos of a key that no longer matches any property */

typedef struct gram_cache gram_cache;

struct gram {
    gram_node *nodes;
    int n_nodes, cap;
    int root;
    gram_cache *cache; /* gram_mask.c's, NULL until the first mask */
};

/* One frame of a stack: 16 bytes, no padding, so sets compare and hash as
 * bytes (frames are always built whole so the spare byte is 0). */
typedef struct {
    uint16_t node;
    uint8_t ph;  /* phase within the node's syntax */
    uint8_t ws;  /* whitespace bytes in the current gap */
    uint8_t sub; /* string: UTF-8 continuation state */
    uint8_t spare;
    uint16_t pos;  /* key / literal / digit position; object: property being read */
    uint32_t seen; /* object: properties present; array: items so far (capped) */
    uint32_t cand; /* object key / literal: candidates still matching */
} gram_frame;

/* A set of stacks laid end to end: stack k has len[k] frames, bottom (the
 * root frame) first. The whole matcher state; hashed by gram_mask. */
typedef struct {
    uint8_t n_stk;
    uint8_t len[GRAM_MAX_ALT];
    uint8_t pad[5]; /* keeps the header 16 bytes with no hidden padding */
    uint16_t n_fr;
    gram_frame fr[GRAM_MAX_FRAMES];
} gram_set;

struct gram_state {
    gram *g; /* borrowed */
    gram_set set, tmp[2]; /* tmp: scratch of gram_state_advance */
};

void gram_cache_free(gram_cache *c);       /* gram_mask.c */
/* gram_close.c: fills every node's minlen and mindepth (a fixpoint, so
 * recursive schemas are priced too); called once the nodes are built. */
void gram_close_init(gram *g);
/* The fewest bytes that make the set a complete document, or
 * GRAM_CLOSE_INF when no bytes can (a dead end, e.g. a key opened at the
 * depth limit, where its value has no frame left). */
int gram_set_close_len(const gram *g, const gram_set *s);
void gram_set_init(const gram *g, gram_set *s);
/* out = in after byte c; returns out->n_stk (0: c is not allowed). */
int gram_set_step(const gram *g, const gram_set *in, uint8_t c, gram_set *out);
int gram_set_complete(const gram *g, const gram_set *s);
/* 1 when bytes are plain string content: no quote, backslash or control
 * byte, whole valid UTF-8 characters. Such bytes leave a set that is
 * gram_set_in_text unchanged. */
int gram_plain_text(const char *bytes, int n);
/* 1 when every stack is inside string content (a string value, or a key
 * that matches no property name) between characters. */
int gram_set_in_text(const gram *g, const gram_set *s);
/* The bytes that identify the set (for hashing): its header and used frames. */
size_t gram_set_bytes(const gram_set *s);

#endif
