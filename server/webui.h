/* webui: the web page `pivot serve` answers at "/" (playground, KV map,
 * server view), embedded in the binary at build time from server/webui/ by
 * scripts/gen_webui.py; nothing is fetched at run time. The table is
 * constant data generated into webui_assets.c. */
#ifndef PIVOT_WEBUI_H
#define PIVOT_WEBUI_H

#include <stddef.h>

typedef struct {
    const char *path;  /* "/" or "/webui/<file>" */
    const char *ctype; /* Content-Type */
    const unsigned char *data;
    size_t len;
} srv_asset;

extern const srv_asset srv_webui_assets[];
extern const int srv_webui_n_assets;

/* The asset served at path, or NULL. */
const srv_asset *srv_webui_find(const char *path);

#endif
