/* alloc.c — every allocation of the library, redirectable by the caller. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

static void *default_alloc(void *opaque, size_t size)
{
    DV_UNUSED(opaque);
    return malloc(size);
}

static void default_free(void *opaque, void *ptr)
{
    DV_UNUSED(opaque);
    free(ptr);
}

static dv365_alloc_fn g_alloc = default_alloc;
static dv365_free_fn g_free = default_free;
static void *g_opaque = NULL;

/* Stored just below each aligned block: how to give it back. */
typedef struct block_header {
    void *raw;
    dv365_free_fn free_fn;
    void *opaque;
} block_header;

#define DV_ALIGN 64u

dv365_status dv365_set_allocator(dv365_alloc_fn alloc_fn, dv365_free_fn free_fn, void *opaque)
{
    dv_clear_error();
    if ((alloc_fn == NULL) != (free_fn == NULL))
        return dv_error(DV365_E_INVALID,
                        "dv365_set_allocator: give both alloc_fn and free_fn, or neither");
    g_alloc = alloc_fn ? alloc_fn : default_alloc;
    g_free = free_fn ? free_fn : default_free;
    g_opaque = alloc_fn ? opaque : NULL;
    return DV365_OK;
}

void *dv_malloc(size_t size)
{
    size_t total;
    if (__builtin_add_overflow(size, sizeof(block_header) + DV_ALIGN, &total))
        return NULL;
    unsigned char *raw = g_alloc(g_opaque, total);
    if (raw == NULL)
        return NULL;
    uintptr_t p = (uintptr_t)(raw + sizeof(block_header));
    p = (p + DV_ALIGN - 1) & ~(uintptr_t)(DV_ALIGN - 1);
    block_header *h = (block_header *)p - 1;
    h->raw = raw;
    h->free_fn = g_free;
    h->opaque = g_opaque;
    return (void *)p;
}

void *dv_calloc(size_t count, size_t size)
{
    size_t total;
    if (!dv_mul_size(count, size, &total))
        return NULL;
    void *p = dv_malloc(total);
    if (p)
        memset(p, 0, total);
    return p;
}

void dv_free(void *ptr)
{
    if (ptr == NULL)
        return;
    block_header *h = (block_header *)ptr - 1;
    h->free_fn(h->opaque, h->raw);
}

bool dv_grow(void **ptr, size_t old_size, size_t new_size)
{
    if (new_size <= old_size && *ptr != NULL)
        return true;
    void *p = dv_malloc(new_size);
    if (p == NULL)
        return false;
    if (*ptr != NULL && old_size > 0)
        memcpy(p, *ptr, old_size);
    dv_free(*ptr);
    *ptr = p;
    return true;
}

char *dv_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = dv_malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}
