/* workspace.c — per-thread scratch that grows once and is then reused. */
#include "internal.h"

dv365_status dv365_workspace_create(dv365_workspace **out)
{
    dv_clear_error();
    DV_CHECK_NULL(out);
    dv365_workspace *ws = dv_calloc(1, sizeof *ws);
    if (ws == NULL)
        return dv_error(DV365_E_NOMEM, "dv365_workspace_create: out of memory");
    *out = ws;
    return DV365_OK;
}

void dv365_workspace_free(dv365_workspace *ws)
{
    if (ws == NULL)
        return;
    dv_free(ws->mem);
    dv_free(ws);
}

void dv_workspace_view(dv365_workspace *view, void *mem, size_t cap)
{
    view->mem = mem;
    view->cap = cap;
    view->borrowed = true;
}

void *dv_workspace_get(dv365_workspace *ws, size_t bytes)
{
    if (ws->borrowed && bytes > ws->cap) {
        dv_error(DV365_E_INTERNAL, "workspace view: %zu bytes asked of %zu", bytes, ws->cap);
        return NULL;
    }
    if (bytes > ws->cap || ws->mem == NULL) {
        /* Contents need not survive, so free first: peak memory stays low. */
        dv_free(ws->mem);
        ws->cap = 0;
        ws->mem = dv_malloc(bytes);
        if (ws->mem == NULL) {
            dv_error(DV365_E_NOMEM, "workspace: cannot allocate %zu bytes", bytes);
            return NULL;
        }
        ws->cap = bytes;
    }
    return ws->mem;
}

dv365_status dv365_workspace_reserve(dv365_workspace *ws, size_t bytes)
{
    dv_clear_error();
    DV_CHECK_NULL(ws);
    return dv_workspace_get(ws, bytes) ? DV365_OK : DV365_E_NOMEM;
}

size_t dv365_workspace_capacity(const dv365_workspace *ws) { return ws ? ws->cap : 0; }

void *dv_arena_take(dv_arena *a, size_t bytes)
{
    size_t n = dv_align64(bytes);
    if (n < bytes || n > a->cap - a->used)
        return NULL;
    void *p = a->base + a->used;
    a->used += n;
    return p;
}
