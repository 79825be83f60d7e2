/* tok: tokenizers read from GGUF metadata.
 *
 *  - "gpt2": byte-level BPE. Text is split by the pre-tokenizer chosen by
 *    tokenizer.ggml.pre ("smollm", "llama-bpe"/"llama3", "qwen2", and the
 *    GPT-2 default for anything else / absent), each piece is mapped through
 *    the GPT-2 byte-to-unicode table, then merged by merge rank (lowest
 *    index in tokenizer.ggml.merges first).
 *  - "llama": SentencePiece-style BPE by highest score, "▁" for spaces, a
 *    leading "▁" when tokenizer.ggml.add_space_prefix is true (default true),
 *    byte fallback to <0xXX> tokens.
 *
 * Special (control) tokens are matched in the input only when parse_special
 * is set; otherwise "<|im_start|>" in user text is tokenized as plain text.
 * User-defined (added, token_type 4) tokens are always matched, as llama.cpp
 * and HF tokenizers do: they are ordinary text the vocabulary keeps whole. BOS is never added by tok_encode: callers decide with
 * tok_add_bos().
 *
 * Ownership: tok_vocab copies what it needs from the gguf_file; the file may
 * be closed afterwards. */
#ifndef PIVOT_TOK_TOKENIZER_H
#define PIVOT_TOK_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

typedef struct tok_vocab tok_vocab;

int tok_load(const gguf_file *g, tok_vocab **out, char *err, size_t errlen);
void tok_free(tok_vocab *v);

int tok_n_vocab(const tok_vocab *v);
int32_t tok_bos(const tok_vocab *v); /* -1 when absent */
int32_t tok_eos(const tok_vocab *v); /* -1 when absent */
int tok_add_bos(const tok_vocab *v); /* tokenizer.ggml.add_bos_token (model default if absent) */
/* End of generation: EOS, EOT (<|eot_id|>, <|im_end|>, <|end|>, tokenizer.ggml.eot_token_id). */
int tok_is_eog(const tok_vocab *v, int32_t id);
/* Override tokenizer.ggml.pre for a "gpt2" vocabulary (same names as the
 * metadata key: "smollm", "llama-bpe"/"llama3", "qwen2", anything else =
 * GPT-2). Meant for tests and for files with a wrong or missing key.
 * Returns 0, or PV_EINVAL for a non-BPE vocabulary. */
int tok_set_pretokenizer(tok_vocab *v, const char *name);
/* Id of a token whose text is exactly `piece`, or -1. */
int32_t tok_lookup(const tok_vocab *v, const char *piece, size_t len);

/* Encode len bytes of UTF-8 (invalid UTF-8 is tokenized bytewise, never
 * rejected). Writes at most cap ids; returns the total number of ids the text
 * needs (which may exceed cap: call again with a bigger buffer), or a
 * negative PV_* code. */
int tok_encode(const tok_vocab *v, const char *text, size_t len, int parse_special, int32_t *out,
               int cap);

/* The raw bytes a token stands for (byte-level decoded, "▁" -> " ",
 * <0xXX> -> that byte). Special tokens give their text when render_special,
 * nothing otherwise. Returns the number of bytes (may exceed cap: truncated
 * output, call again) or a negative PV_* code for an invalid id. */
int tok_piece(const tok_vocab *v, int32_t id, int render_special, char *buf, int cap);
/* tok_piece into a C string: at most cap - 1 bytes (a longer piece is cut,
 * possibly inside a UTF-8 character), always NUL-terminated; returns the
 * bytes written, 0 for an invalid id. cap >= 1. */
int tok_piece_str(const tok_vocab *v, int32_t id, int render_special, char *buf, int cap);

/* Streaming decode: feed ids one at a time, get only complete UTF-8
 * characters back; bytes of a character split across tokens are held until
 * it completes. Invalid sequences are emitted as U+FFFD. */
typedef struct tok_stream tok_stream;
tok_stream *tok_stream_new(const tok_vocab *v, int render_special);
void tok_stream_free(tok_stream *s);
/* Writes the newly completed text to buf[0..] (NUL-terminated, at most
 * cap-1 bytes). Returns the number of bytes written or a negative PV_* code;
 * PV_ESPACE leaves the stream unchanged (retry with a bigger buffer). */
int tok_stream_push(tok_stream *s, int32_t id, char *buf, int cap);
/* Emits whatever is pending (incomplete tail as U+FFFD). */
int tok_stream_flush(tok_stream *s, char *buf, int cap);

#endif
