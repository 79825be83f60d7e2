/* webui: looks up the embedded page's files (webui.h). */
#include "webui.h"

#include <string.h>

const srv_asset *srv_webui_find(const char *path) {
    for (int i = 0; i < srv_webui_n_assets; i++)
        if (!strcmp(srv_webui_assets[i].path, path)) return &srv_webui_assets[i];
    return NULL;
}
