/* unicode: UTF-8 coding, category lookup, GPT-2 byte alphabet. */
#include "unicode.h"

int uc_decode(const char *s, size_t len, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    unsigned char c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int n;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        *cp = UC_INVALID;
        return 1;
    }
    if ((size_t)n > len) {
        *cp = UC_INVALID;
        return 1;
    }
    for (int i = 1; i < n; i++) {
        if ((u[i] & 0xC0) != 0x80) {
            *cp = UC_INVALID;
            return 1;
        }
        v = (v << 6) | (u[i] & 0x3F);
    }
    /* Overlong forms and surrogates are rejected so that every code point has
     * exactly one accepted encoding (round trips stay byte-exact). */
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = UC_INVALID;
        return 1;
    }
    *cp = v;
    return n;
}

int uc_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

size_t uc_valid_prefix(const char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint32_t cp;
        int n = uc_decode(s + i, len - i, &cp);
        if (cp == UC_INVALID)
            break;
        i += (size_t)n;
    }
    return i;
}

int uc_is_valid(const char *s, size_t len) { return uc_valid_prefix(s, len) == len; }

static int in_ranges(const uc_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo)
            hi = mid;
        else if (cp > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* White_Space (Unicode PropList.txt): the set Python's and Rust's regex \s
 * use for non-ASCII text, and the one llama.cpp uses. */
static int is_white_space(uint32_t cp) {
    if (cp < 0x80)
        return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

unsigned uc_flags(uint32_t cp) {
    if (cp == UC_INVALID)
        return 0;
    if (cp < 0x80) { /* fast path: most text is ASCII */
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return UC_LETTER;
        if (cp >= '0' && cp <= '9')
            return UC_NUMBER;
        return is_white_space(cp) ? UC_SPACE : 0;
    }
    if (is_white_space(cp))
        return UC_SPACE;
    if (in_ranges(uc_letter_ranges, uc_letter_ranges_len, cp))
        return UC_LETTER;
    if (in_ranges(uc_number_ranges, uc_number_ranges_len, cp))
        return UC_NUMBER;
    return 0;
}

/* GPT-2's bytes_to_unicode: bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF map to
 * themselves; the remaining 68 bytes, in increasing order, map to U+0100,
 * U+0101, ... so that every byte has a visible, non-space stand-in. */
static int byte_is_self(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t uc_byte_to_cp(uint8_t b) {
    if (byte_is_self(b))
        return b;
    unsigned n = 0; /* rank of b among the bytes that are not self-mapped */
    for (unsigned i = 0; i < b; i++)
        n += !byte_is_self(i);
    return 0x100 + n;
}

int uc_cp_to_byte(uint32_t cp) {
    if (cp < 0x100)
        return byte_is_self(cp) ? (int)cp : -1;
    if (cp >= 0x100 + 68)
        return -1;
    unsigned n = cp - 0x100;
    for (unsigned b = 0; b < 256; b++) {
        if (!byte_is_self(b)) {
            if (n == 0)
                return (int)b;
            n--;
        }
    }
    return -1;
}
