/* config.c — the YAML configuration (format: docs/config.md).
 *
 * libyaml loads the text into a node tree that keeps every node's line and
 * column, so each error can say where it is.  The tree is then walked once,
 * section by section, into struct dv365_config (lib/config.h); slice
 * definitions are expanded over their id fields and windows at the end. */
#include "config.h"

#include "fileio.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <yaml.h>

/* Sanity limits: large enough for any real config, small enough that a
 * malformed one cannot ask for absurd memory. */
#define MAX_NAME 64
#define MAX_VOCAB 4096
#define MAX_DIM 65536
#define MAX_TABLE_ROWS (UINT64_C(1) << 36)
#define MAX_SLICES 100000
#define MAX_WINDOW_S (INT64_C(100) * 366 * 86400)

static const char *const field_names[DV_NUM_FIELDS] = {"media", "author", "topic"};
static const char *const kind_names[] = {"all", "explicit", "implicit"};
static const char *const weight_names[] = {"none", "watch_score", "watch_ratio", "dwell",
                                           "log_dwell"};

typedef struct parser {
    yaml_document_t doc;
    const char *source; /* file name or "<string>", for messages */
    dv365_config *cfg;
    const yaml_node_t *compress_at; /* encoder.compress, checked once N is known */
} parser;

/* ------------------------------------------------------------ helpers -- */

static yaml_node_t *node_at(parser *p, int index) { return yaml_document_get_node(&p->doc, index); }

/* An error at node n: "source:line:column: message". */
static dv365_status fail(parser *p, const yaml_node_t *n, dv365_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static dv365_status fail(parser *p, const yaml_node_t *n, dv365_status st, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dv_error(st, "%s:%zu:%zu: %s", p->source, (size_t)n->start_mark.line + 1,
                    (size_t)n->start_mark.column + 1, msg);
}

static const char *node_kind(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE: return "a scalar";
    case YAML_SEQUENCE_NODE: return "a list";
    case YAML_MAPPING_NODE: return "a mapping";
    default: return "nothing";
    }
}

static dv365_status expect(parser *p, const yaml_node_t *n, yaml_node_type_t type, const char *what)
{
    if (n->type == type)
        return DV365_OK;
    const char *want = type == YAML_SCALAR_NODE     ? "a scalar"
                       : type == YAML_SEQUENCE_NODE ? "a list"
                                                    : "a mapping";
    return fail(p, n, DV365_E_CONFIG, "%s must be %s, found %s", what, want, node_kind(n));
}

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static dv365_status get_string(parser *p, const yaml_node_t *n, const char *what, const char **out)
{
    dv365_status st = expect(p, n, YAML_SCALAR_NODE, what);
    if (st == DV365_OK)
        *out = scalar(n);
    return st;
}

/* A name: 1..MAX_NAME characters of [A-Za-z0-9_-]. */
static dv365_status get_name(parser *p, const yaml_node_t *n, const char *what, const char **out)
{
    const char *s;
    dv365_status st = get_string(p, n, what, &s);
    if (st)
        return st;
    size_t len = strlen(s);
    if (len == 0 || len > MAX_NAME)
        return fail(p, n, DV365_E_CONFIG, "%s '%s' must have 1 to %d characters", what, s, MAX_NAME);
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return fail(p, n, DV365_E_CONFIG,
                        "%s '%s' may only use letters, digits, '_' and '-'", what, s);
    }
    *out = s;
    return DV365_OK;
}

static dv365_status get_size(parser *p, const yaml_node_t *n, const char *what, uint64_t lo,
                             uint64_t hi, size_t *out)
{
    const char *s;
    dv365_status st = get_string(p, n, what, &s);
    if (st)
        return st;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE)
        return fail(p, n, DV365_E_CONFIG, "%s must be a whole number, found '%s'", what, s);
    if (v < lo || v > hi)
        return fail(p, n, DV365_E_CONFIG, "%s must be in [%llu, %llu], found %llu", what,
                    (unsigned long long)lo, (unsigned long long)hi, v);
    *out = (size_t)v;
    return DV365_OK;
}

static dv365_status get_double(parser *p, const yaml_node_t *n, const char *what, double *out)
{
    const char *s;
    dv365_status st = get_string(p, n, what, &s);
    if (st)
        return st;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return fail(p, n, DV365_E_CONFIG, "%s must be a number, found '%s'", what, s);
    if (!isfinite(v))
        return fail(p, n, DV365_E_NONFINITE, "%s must be finite, found '%s'", what, s);
    *out = v;
    return DV365_OK;
}

static dv365_status get_bool(parser *p, const yaml_node_t *n, const char *what, bool *out)
{
    const char *s;
    dv365_status st = get_string(p, n, what, &s);
    if (st)
        return st;
    if (!strcmp(s, "true") || !strcmp(s, "yes"))
        *out = true;
    else if (!strcmp(s, "false") || !strcmp(s, "no"))
        *out = false;
    else
        return fail(p, n, DV365_E_CONFIG, "%s must be true or false, found '%s'", what, s);
    return DV365_OK;
}

/* Index of s in names[0..n), or -1. */
static long find_name(char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return (long)i;
    return -1;
}

static long find_cname(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(names[i], s))
            return (long)i;
    return -1;
}

/* Walks the keys of a mapping, rejecting unknown and repeated keys.
 * values[i] receives the value node of allowed[i] (NULL when absent). */
static dv365_status read_keys(parser *p, const yaml_node_t *map, const char *what,
                              const char *const *allowed, size_t n_allowed, yaml_node_t **values)
{
    dv365_status st = expect(p, map, YAML_MAPPING_NODE, what);
    if (st)
        return st;
    for (size_t i = 0; i < n_allowed; i++)
        values[i] = NULL;
    for (yaml_node_pair_t *kv = map->data.mapping.pairs.start; kv < map->data.mapping.pairs.top;
         kv++) {
        yaml_node_t *k = node_at(p, kv->key), *v = node_at(p, kv->value);
        const char *key;
        if ((st = get_string(p, k, "a key", &key)))
            return st;
        long i = find_cname(allowed, n_allowed, key);
        if (i < 0) {
            char list[256] = "";
            for (size_t j = 0; j < n_allowed; j++) {
                strncat(list, j ? ", " : "", sizeof list - strlen(list) - 1);
                strncat(list, allowed[j], sizeof list - strlen(list) - 1);
            }
            return fail(p, k, DV365_E_CONFIG, "unknown key '%s' in %s (expected one of: %s)",
                        key, what, list);
        }
        if (values[i])
            return fail(p, k, DV365_E_CONFIG, "key '%s' appears twice in %s", key, what);
        values[i] = v;
    }
    return DV365_OK;
}

static dv365_status require(parser *p, const yaml_node_t *map, yaml_node_t *v, const char *key,
                            const char *what)
{
    if (v)
        return DV365_OK;
    return fail(p, map, DV365_E_CONFIG, "%s needs the key '%s'", what, key);
}

/* read_keys, then the first n_required keys must be there. */
static dv365_status read_keys_req(parser *p, const yaml_node_t *map, const char *what,
                                  const char *const *allowed, size_t n_allowed,
                                  size_t n_required, yaml_node_t **values)
{
    dv365_status st = read_keys(p, map, what, allowed, n_allowed, values);
    for (size_t i = 0; i < n_required && st == DV365_OK; i++)
        st = require(p, map, values[i], allowed[i], what);
    return st;
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static yaml_node_t *seq_item(parser *p, const yaml_node_t *n, size_t i)
{
    return node_at(p, n->data.sequence.items.start[i]);
}

/* A list of 1 to max items (what they are is `noun`); its length into *len. */
static dv365_status read_list(parser *p, const yaml_node_t *n, const char *what, size_t max,
                              const char *noun, size_t *len)
{
    dv365_status st = expect(p, n, YAML_SEQUENCE_NODE, what);
    if (st)
        return st;
    *len = seq_len(n);
    if (*len == 0 || *len > max)
        return fail(p, n, DV365_E_CONFIG, "%s must list 1 to %zu %s", what, max, noun);
    return DV365_OK;
}

static dv365_status oom(void) { return dv_error(DV365_E_NOMEM, "config: out of memory"); }

/* ------------------------------------------------------------ vocab ---- */

/* A list of unique names into *names / *count. */
static dv365_status read_name_list(parser *p, const yaml_node_t *n, const char *what,
                                   char ***names, size_t *count)
{
    size_t len;
    dv365_status st = read_list(p, n, what, MAX_VOCAB, "names", &len);
    if (st)
        return st;
    if (!(*names = dv_calloc(len, sizeof(char *))))
        return oom();
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = seq_item(p, n, i);
        const char *s;
        if ((st = get_name(p, item, what, &s)))
            return st;
        if (find_name(*names, *count, s) >= 0)
            return fail(p, item, DV365_E_CONFIG, "'%s' is listed twice in %s", s, what);
        if (!((*names)[i] = dv_strdup(s)))
            return oom();
        *count = i + 1;
    }
    return DV365_OK;
}

static dv365_status read_actions(parser *p, const yaml_node_t *n)
{
    dv365_config *cfg = p->cfg;
    size_t len;
    dv365_status st = read_list(p, n, "vocab.actions", MAX_VOCAB, "actions", &len);
    if (st)
        return st;
    cfg->action_names = dv_calloc(len, sizeof(char *));
    cfg->action_explicit = dv_calloc(len, 1);
    if (!cfg->action_names || !cfg->action_explicit)
        return oom();
    static const char *const keys[] = {"name", "explicit"};
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = seq_item(p, n, i), *v[2];
        const char *name;
        bool expl = false;
        if ((st = read_keys_req(p, item, "an action", keys, 2, 2, v)) ||
            (st = get_name(p, v[0], "action name", &name)) ||
            (st = get_bool(p, v[1], "explicit", &expl)))
            return st;
        if (find_name(cfg->action_names, cfg->n_actions, name) >= 0)
            return fail(p, v[0], DV365_E_CONFIG, "action '%s' is listed twice", name);
        if (!(cfg->action_names[i] = dv_strdup(name)))
            return oom();
        cfg->action_explicit[i] = expl;
        cfg->n_actions = i + 1;
    }
    return DV365_OK;
}

static dv365_status read_vocab(parser *p, const yaml_node_t *n)
{
    static const char *const keys[] = {"actions", "media_types", "surfaces"};
    yaml_node_t *v[3];
    dv365_status st;
    if ((st = read_keys_req(p, n, "vocab", keys, 3, 3, v)))
        return st;
    dv365_config *cfg = p->cfg;
    if ((st = read_actions(p, v[0])) ||
        (st = read_name_list(p, v[1], "vocab.media_types", &cfg->media_type_names,
                             &cfg->n_media_types)) ||
        (st = read_name_list(p, v[2], "vocab.surfaces", &cfg->surface_names, &cfg->n_surfaces)))
        return st;
    return DV365_OK;
}

/* ------------------------------------------------------------ tables --- */

static dv365_status read_tables(parser *p, const yaml_node_t *n)
{
    dv365_config *cfg = p->cfg;
    size_t len;
    dv365_status st = read_list(p, n, "tables", MAX_VOCAB, "tables", &len);
    if (st)
        return st;
    cfg->table_names = dv_calloc(len, sizeof(char *));
    cfg->table_rows = dv_calloc(len, sizeof(size_t));
    if (!cfg->table_names || !cfg->table_rows)
        return oom();
    static const char *const keys[] = {"name", "rows"};
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = seq_item(p, n, i), *v[2];
        const char *name;
        size_t rows;
        if ((st = read_keys_req(p, item, "a table", keys, 2, 2, v)) ||
            (st = get_name(p, v[0], "table name", &name)) ||
            (st = get_size(p, v[1], "table rows", 1, MAX_TABLE_ROWS, &rows)))
            return st;
        if (find_name(cfg->table_names, cfg->n_tables, name) >= 0)
            return fail(p, v[0], DV365_E_CONFIG, "table '%s' is listed twice", name);
        if (!(cfg->table_names[i] = dv_strdup(name)))
            return oom();
        cfg->table_rows[i] = rows;
        cfg->n_tables = i + 1;
    }
    return DV365_OK;
}

/* ------------------------------------------------------------ windows -- */

/* "7d" -> 604800.  Units: s, m, h, d, w. */
static dv365_status parse_duration(parser *p, const yaml_node_t *n, const char *what, int64_t *out)
{
    const char *s;
    dv365_status st = get_string(p, n, what, &s);
    if (st)
        return st;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    int64_t unit = 0;
    if (end != s && s[0] >= '0' && s[0] <= '9' && end[0] && !end[1] && errno == 0) {
        switch (end[0]) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: break;
        }
    }
    if (unit == 0)
        return fail(p, n, DV365_E_CONFIG,
                    "%s must be a duration like 30s, 15m, 12h, 7d or 2w, found '%s'", what, s);
    if (v < 0 || v > MAX_WINDOW_S / unit)
        return fail(p, n, DV365_E_CONFIG, "%s '%s' must be between 0 and 100 years", what, s);
    *out = (int64_t)v * unit;
    return DV365_OK;
}

static void format_duration(char *buf, size_t cap, int64_t s)
{
    if (s % 86400 == 0)
        snprintf(buf, cap, "%lldd", (long long)(s / 86400));
    else if (s % 3600 == 0)
        snprintf(buf, cap, "%lldh", (long long)(s / 3600));
    else if (s % 60 == 0)
        snprintf(buf, cap, "%lldm", (long long)(s / 60));
    else
        snprintf(buf, cap, "%llds", (long long)s);
}

/* Index of window (from, to) in cfg->windows, adding it when new. */
static dv365_status intern_window(dv365_config *cfg, int64_t from, int64_t to, size_t *index)
{
    for (size_t i = 0; i < cfg->n_windows; i++)
        if (cfg->windows[i].from_s == from && cfg->windows[i].to_s == to) {
            *index = i;
            return DV365_OK;
        }
    char name[64], a[24], b[24];
    if (from == INT64_MAX) {
        snprintf(name, sizeof name, "all");
    } else {
        format_duration(a, sizeof a, from);
        if (to == 0) {
            snprintf(name, sizeof name, "%s", a);
        } else {
            format_duration(b, sizeof b, to);
            snprintf(name, sizeof name, "%s-%s", a, b);
        }
    }
    size_t n = cfg->n_windows;
    if (!dv_grow((void **)&cfg->windows, n * sizeof(dv_window), (n + 1) * sizeof(dv_window)))
        return oom();
    if (!(cfg->windows[n].name = dv_strdup(name)))
        return oom();
    cfg->windows[n].from_s = from;
    cfg->windows[n].to_s = to;
    cfg->n_windows = n + 1;
    *index = n;
    return DV365_OK;
}

static dv365_status read_window(parser *p, const yaml_node_t *n, size_t *index)
{
    int64_t from = INT64_MAX, to = 0;
    dv365_status st;
    if (n->type == YAML_SCALAR_NODE && !strcmp(scalar(n), "all")) {
        /* whole history */
    } else if (n->type == YAML_SCALAR_NODE) {
        if ((st = parse_duration(p, n, "a window", &from)))
            return st;
        if (from == 0)
            return fail(p, n, DV365_E_CONFIG, "a window must be longer than 0");
    } else {
        static const char *const keys[] = {"from", "to"};
        yaml_node_t *v[2];
        if ((st = read_keys_req(p, n, "a window span", keys, 2, 1, v)) ||
            (st = parse_duration(p, v[0], "window 'from'", &from)) ||
            (v[1] && (st = parse_duration(p, v[1], "window 'to'", &to))))
            return st;
        if (from <= to)
            return fail(p, n, DV365_E_CONFIG,
                        "a window span needs from > to (it covers cutoff-from .. cutoff-to)");
    }
    return intern_window(p->cfg, from, to, index);
}

/* ------------------------------------------------------------ slices --- */

static dv365_status read_range(parser *p, const yaml_node_t *n, const char *what, dv_range *r)
{
    static const char *const keys[] = {"min", "max"};
    yaml_node_t *v[2];
    dv365_status st = read_keys(p, n, what, keys, 2, v);
    if (st)
        return st;
    if (!v[0] && !v[1])
        return fail(p, n, DV365_E_CONFIG, "%s needs min, max or both", what);
    if (v[0] && (st = get_double(p, v[0], "min", &r->min)))
        return st;
    if (v[1] && (st = get_double(p, v[1], "max", &r->max)))
        return st;
    r->has_min = v[0] != NULL;
    r->has_max = v[1] != NULL;
    if (r->has_min && r->has_max && !(r->min < r->max))
        return fail(p, n, DV365_E_CONFIG, "%s needs min < max (it is min <= value < max)", what);
    return DV365_OK;
}

/* A list of vocabulary names into a 0/1 membership array. */
static dv365_status read_code_set(parser *p, const yaml_node_t *n, const char *what,
                                  char *const *names, size_t n_names, uint8_t **out)
{
    dv365_status st = expect(p, n, YAML_SEQUENCE_NODE, what);
    if (st)
        return st;
    if (seq_len(n) == 0)
        return fail(p, n, DV365_E_CONFIG, "%s must not be empty (leave it out to take any)", what);
    if (!(*out = dv_calloc(n_names, 1)))
        return oom();
    for (size_t i = 0; i < seq_len(n); i++) {
        yaml_node_t *item = seq_item(p, n, i);
        const char *s;
        if ((st = get_string(p, item, what, &s)))
            return st;
        long code = find_name(names, n_names, s);
        if (code < 0)
            return fail(p, item, DV365_E_NOT_FOUND, "unknown name '%s' in %s", s, what);
        (*out)[code] = 1;
    }
    return DV365_OK;
}

static dv365_status find_table(parser *p, const yaml_node_t *n, const char *name, size_t *out)
{
    long t = find_name(p->cfg->table_names, p->cfg->n_tables, name);
    if (t < 0)
        return fail(p, n, DV365_E_NOT_FOUND, "unknown table '%s' (declare it under tables)", name);
    *out = (size_t)t;
    return DV365_OK;
}

/* at / table_at: where the field and the table name stand, for messages. */
static dv365_status add_pool(parser *p, dv_slice_def *d, const yaml_node_t *at,
                             const yaml_node_t *table_at, const char *field, const char *table)
{
    long f = find_cname(field_names, DV_NUM_FIELDS, field);
    if (f < 0)
        return fail(p, at, DV365_E_CONFIG, "unknown id field '%s' (media, author or topic)", field);
    for (size_t i = 0; i < d->n_pools; i++)
        if (d->field[i] == (dv_field)f)
            return fail(p, at, DV365_E_CONFIG, "id field '%s' is pooled twice", field);
    dv365_status st = find_table(p, table_at, table, &d->table[d->n_pools]);
    if (st)
        return st;
    d->field[d->n_pools++] = (dv_field)f;
    return DV365_OK;
}

/* pool: {field: table, ...}   or   pool: [field, ...] with table: "x_{field}" */
static dv365_status read_pool(parser *p, dv_slice_def *d, const yaml_node_t *pool,
                              const yaml_node_t *table_tpl, const yaml_node_t *def_node)
{
    dv365_status st;
    if (pool->type == YAML_MAPPING_NODE) {
        if (table_tpl)
            return fail(p, table_tpl, DV365_E_CONFIG,
                        "'table' goes with a list under 'pool', not a mapping");
        for (yaml_node_pair_t *kv = pool->data.mapping.pairs.start;
             kv < pool->data.mapping.pairs.top; kv++) {
            yaml_node_t *k = node_at(p, kv->key), *v = node_at(p, kv->value);
            const char *field, *table;
            if ((st = get_string(p, k, "an id field", &field)) ||
                (st = get_string(p, v, "a table name", &table)) ||
                (st = add_pool(p, d, k, v, field, table)))
                return st;
        }
    } else if (pool->type == YAML_SEQUENCE_NODE) {
        const char *tpl;
        if (!table_tpl)
            return fail(p, def_node, DV365_E_CONFIG,
                        "a list under 'pool' needs 'table', e.g. table: \"pos_{field}\"");
        if ((st = get_string(p, table_tpl, "table", &tpl)))
            return st;
        const char *hole = strstr(tpl, "{field}");
        for (size_t i = 0; i < seq_len(pool); i++) {
            yaml_node_t *item = seq_item(p, pool, i);
            const char *field;
            char table[3 * MAX_NAME];
            if ((st = get_string(p, item, "an id field", &field)))
                return st;
            if (hole)
                snprintf(table, sizeof table, "%.*s%s%s", (int)(hole - tpl), tpl, field,
                         hole + strlen("{field}"));
            else
                snprintf(table, sizeof table, "%s", tpl);
            if ((st = add_pool(p, d, item, item, field, table)))
                return st;
        }
    } else {
        return fail(p, pool, DV365_E_CONFIG, "pool must be a mapping or a list, found %s",
                    node_kind(pool));
    }
    if (d->n_pools == 0)
        return fail(p, pool, DV365_E_CONFIG, "pool must name at least one id field");
    return DV365_OK;
}

static dv365_status read_slice_def(parser *p, const yaml_node_t *n, dv_slice_def *d)
{
    enum { NAME, TIMELINE, ACTIONS, MEDIA_TYPES, SURFACES, DWELL, RATIO, SCORE, WEIGHT, POOL,
           TABLE, WINDOWS, NKEYS };
    static const char *const keys[NKEYS] = {"name", "timeline", "actions", "media_types",
                                            "surfaces", "dwell_ms", "watch_ratio",
                                            "watch_score", "weight", "pool", "table", "windows"};
    yaml_node_t *v[NKEYS];
    dv365_config *cfg = p->cfg;
    dv365_status st;
    const char *name, *s;
    if ((st = read_keys(p, n, "a slice", keys, NKEYS, v)) ||
        (st = require(p, n, v[NAME], "name", "a slice")) ||
        (st = require(p, n, v[POOL], "pool", "a slice")) ||
        (st = get_name(p, v[NAME], "slice name", &name)))
        return st;
    if (!(d->name = dv_strdup(name)))
        return oom();
    if (v[TIMELINE]) {
        if ((st = get_string(p, v[TIMELINE], "timeline", &s)))
            return st;
        long k = find_cname(kind_names, 3, s);
        if (k < 0)
            return fail(p, v[TIMELINE], DV365_E_CONFIG,
                        "timeline must be all, explicit or implicit, found '%s'", s);
        d->kind = (dv_kind)k;
    }
    if ((v[ACTIONS] && (st = read_code_set(p, v[ACTIONS], "actions", cfg->action_names,
                                           cfg->n_actions, &d->action_ok))) ||
        (v[MEDIA_TYPES] && (st = read_code_set(p, v[MEDIA_TYPES], "media_types",
                                               cfg->media_type_names, cfg->n_media_types,
                                               &d->media_type_ok))) ||
        (v[SURFACES] && (st = read_code_set(p, v[SURFACES], "surfaces", cfg->surface_names,
                                            cfg->n_surfaces, &d->surface_ok))) ||
        (v[DWELL] && (st = read_range(p, v[DWELL], "dwell_ms", &d->dwell_ms))) ||
        (v[RATIO] && (st = read_range(p, v[RATIO], "watch_ratio", &d->watch_ratio))) ||
        (v[SCORE] && (st = read_range(p, v[SCORE], "watch_score", &d->watch_score))))
        return st;
    if (v[WEIGHT]) {
        if ((st = get_string(p, v[WEIGHT], "weight", &s)))
            return st;
        long w = find_cname(weight_names, 5, s);
        if (w < 0)
            return fail(p, v[WEIGHT], DV365_E_CONFIG,
                        "weight must be none, watch_score, watch_ratio, dwell or log_dwell, "
                        "found '%s'",
                        s);
        d->weight = (dv_weight)w;
    }
    if ((st = read_pool(p, d, v[POOL], v[TABLE], n)))
        return st;

    /* windows: default [all] */
    size_t nw = 1;
    if (v[WINDOWS]) {
        if ((st = expect(p, v[WINDOWS], YAML_SEQUENCE_NODE, "windows")))
            return st;
        nw = seq_len(v[WINDOWS]);
        if (nw == 0)
            return fail(p, v[WINDOWS], DV365_E_CONFIG, "windows must not be empty");
    }
    if (!(d->window = dv_calloc(nw, sizeof(size_t))))
        return oom();
    for (size_t w = 0; w < nw; w++) {
        if (v[WINDOWS]) {
            yaml_node_t *item = seq_item(p, v[WINDOWS], w);
            if ((st = read_window(p, item, &d->window[w])))
                return st;
            for (size_t j = 0; j < w; j++)
                if (d->window[j] == d->window[w])
                    return fail(p, item, DV365_E_CONFIG, "window '%s' is listed twice",
                                cfg->windows[d->window[w]].name);
        } else if ((st = intern_window(cfg, INT64_MAX, 0, &d->window[w]))) {
            return st;
        }
        d->n_windows = w + 1;
    }
    return DV365_OK;
}

/* Expand every definition over its id fields and windows. */
static dv365_status expand_slices(parser *p, const yaml_node_t *n)
{
    dv365_config *cfg = p->cfg;
    size_t total = 0;
    for (size_t i = 0; i < cfg->n_defs; i++) {
        cfg->defs[i].first_slice = total;
        total += cfg->defs[i].n_pools * cfg->defs[i].n_windows;
    }
    if (total > MAX_SLICES)
        return fail(p, n, DV365_E_CONFIG, "slices expand to %zu slices, more than %d", total,
                    MAX_SLICES);
    if (!(cfg->slices = dv_calloc(total, sizeof(dv_slice))))
        return oom();
    cfg->n_slices = total;
    for (size_t i = 0; i < cfg->n_defs; i++) {
        const dv_slice_def *d = &cfg->defs[i];
        for (size_t pl = 0; pl < d->n_pools; pl++)
            for (size_t w = 0; w < d->n_windows; w++) {
                dv_slice *s = &cfg->slices[d->first_slice + pl * d->n_windows + w];
                char name[3 * MAX_NAME + 16];
                snprintf(name, sizeof name, "%s.%s.%s", d->name, field_names[d->field[pl]],
                         cfg->windows[d->window[w]].name);
                if (!(s->name = dv_strdup(name)))
                    return oom();
                s->def = i;
                s->pool = pl;
                s->window = d->window[w];
                s->field = d->field[pl];
                s->table = d->table[pl];
            }
    }
    return DV365_OK;
}

static dv365_status read_slices(parser *p, const yaml_node_t *n)
{
    dv365_config *cfg = p->cfg;
    size_t len;
    dv365_status st = read_list(p, n, "slices", MAX_SLICES, "definitions", &len);
    if (st)
        return st;
    if (!(cfg->defs = dv_calloc(len, sizeof(dv_slice_def))))
        return oom();
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = seq_item(p, n, i);
        cfg->n_defs = i + 1; /* so that free() sees the partial definition */
        if ((st = read_slice_def(p, item, &cfg->defs[i])))
            return st;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->defs[j].name, cfg->defs[i].name))
                return fail(p, item, DV365_E_CONFIG, "slice name '%s' is used twice",
                            cfg->defs[i].name);
    }
    return expand_slices(p, n);
}

/* ------------------------------------------------------------ encoder -- */

static dv365_status read_encoder(parser *p, const yaml_node_t *n)
{
    dv_encoder_cfg *e = &p->cfg->encoder;
    enum { BLOCKS, LAYERS, HEADS, FFN, STRIDE, KLCE, STD, COMPRESS, NKEYS };
    static const char *const keys[NKEYS] = {"blocks", "layers_per_block", "heads", "ffn",
                                            "stride", "k_lce", "init_std", "compress"};
    yaml_node_t *v[NKEYS];
    dv365_status st;
    double std = e->init_std;
    if ((st = read_keys(p, n, "encoder", keys, NKEYS, v)) ||
        (v[BLOCKS] && (st = get_size(p, v[BLOCKS], "encoder.blocks", 0, 64, &e->blocks))) ||
        (v[LAYERS] && (st = get_size(p, v[LAYERS], "encoder.layers_per_block", 1, 64,
                                     &e->layers_per_block))) ||
        (v[HEADS] && (st = get_size(p, v[HEADS], "encoder.heads", 1, 1024, &e->heads))) ||
        (v[FFN] && (st = get_size(p, v[FFN], "encoder.ffn", 1, 1 << 20, &e->ffn))) ||
        (v[STRIDE] && (st = get_size(p, v[STRIDE], "encoder.stride", 1, 1024, &e->stride))) ||
        (v[KLCE] && (st = get_size(p, v[KLCE], "encoder.k_lce", 0, 1 << 16, &e->k_lce))) ||
        (v[STD] && (st = get_double(p, v[STD], "encoder.init_std", &std))) ||
        (v[COMPRESS] && (st = get_size(p, v[COMPRESS], "encoder.compress", 0, 1 << 16,
                                       &e->compress))))
        return st;
    if (std < 0 || std > 10)
        return fail(p, v[STD], DV365_E_CONFIG, "encoder.init_std must be in [0, 10]");
    e->init_std = (float)std;
    if (p->cfg->dim % e->heads != 0)
        return fail(p, v[HEADS] ? v[HEADS] : n, DV365_E_CONFIG,
                    "dim (%zu) must be divisible by encoder.heads (%zu)", p->cfg->dim, e->heads);
    if (e->blocks == 0 && e->k_lce == 0)
        return fail(p, n, DV365_E_CONFIG, "the encoder needs blocks > 0 or k_lce > 0");
    if (e->compress > 0 && e->blocks == 0)
        return fail(p, v[COMPRESS], DV365_E_CONFIG,
                    "encoder.compress needs blocks > 0 (it compresses the funnel output)");
    p->compress_at = v[COMPRESS]; /* its upper bound T_last needs N: see read_root */
    return DV365_OK;
}

/* ------------------------------------------------------------ backbone - */

static dv365_status read_widths(parser *p, const yaml_node_t *n, const char *what, size_t **out,
                                size_t *count)
{
    dv365_status st = expect(p, n, YAML_SEQUENCE_NODE, what);
    if (st)
        return st;
    size_t len = seq_len(n);
    if (len > 64)
        return fail(p, n, DV365_E_CONFIG, "%s may list at most 64 layers", what);
    dv_free(*out);
    *count = 0;
    if (!(*out = dv_calloc(len ? len : 1, sizeof(size_t))))
        return oom();
    for (size_t i = 0; i < len; i++)
        if ((st = get_size(p, seq_item(p, n, i), what, 1, 1 << 20, &(*out)[i])))
            return st;
    *count = len;
    return DV365_OK;
}

static dv365_status add_task(dv365_config *cfg, const char *name, dv_task_kind kind, double weight,
                             bool log1p)
{
    dv_backbone_cfg *b = &cfg->backbone;
    size_t n = b->n_tasks;
    if (!dv_grow((void **)&b->task_names, n * sizeof(char *), (n + 1) * sizeof(char *)) ||
        !dv_grow((void **)&b->tasks, n * sizeof(dv_task), (n + 1) * sizeof(dv_task)) ||
        !(b->task_names[n] = dv_strdup(name)))
        return oom();
    b->tasks[n] = (dv_task){.kind = kind, .weight = weight, .log1p_target = log1p};
    b->n_tasks = n + 1;
    return DV365_OK;
}

static dv365_status read_tasks(parser *p, const yaml_node_t *n)
{
    size_t len;
    dv365_status st = read_list(p, n, "backbone.tasks", 256, "tasks", &len);
    if (st)
        return st;
    static const char *const keys[] = {"name", "type", "weight", "log1p"};
    for (size_t i = 0; i < len; i++) {
        yaml_node_t *item = seq_item(p, n, i), *v[4];
        const char *name, *type;
        double weight = 1.0;
        bool log1p = false;
        if ((st = read_keys_req(p, item, "a task", keys, 4, 2, v)) ||
            (st = get_name(p, v[0], "task name", &name)) ||
            (st = get_string(p, v[1], "task type", &type)) ||
            (v[2] && (st = get_double(p, v[2], "task weight", &weight))) ||
            (v[3] && (st = get_bool(p, v[3], "log1p", &log1p))))
            return st;
        bool binary = !strcmp(type, "binary");
        if (!binary && strcmp(type, "regression"))
            return fail(p, v[1], DV365_E_CONFIG,
                        "task type must be binary or regression, found '%s'", type);
        if (weight < 0)
            return fail(p, v[2], DV365_E_CONFIG, "task weight must be >= 0");
        if (log1p && binary)
            return fail(p, v[3], DV365_E_CONFIG, "log1p applies to regression tasks only");
        if (find_name(p->cfg->backbone.task_names, p->cfg->backbone.n_tasks, name) >= 0)
            return fail(p, v[0], DV365_E_CONFIG, "task '%s' is listed twice", name);
        if ((st = add_task(p->cfg, name, binary ? DV_TASK_BINARY : DV_TASK_REGRESSION, weight,
                           log1p)))
            return st;
    }
    return DV365_OK;
}

static dv365_status read_backbone(parser *p, const yaml_node_t *n)
{
    dv_backbone_cfg *b = &p->cfg->backbone;
    enum { DENSE, BOTTOM, TOP, ITEMS, TASKS, STD, EXTRA, NKEYS };
    static const char *const keys[NKEYS] = {"dense_features", "bottom",  "top",
                                            "item_tables",    "tasks",   "init_std",
                                            "extra_tokens"};
    yaml_node_t *v[NKEYS];
    dv365_status st;
    double std = b->init_std;
    if ((st = read_keys(p, n, "backbone", keys, NKEYS, v)) ||
        (v[DENSE] && (st = get_size(p, v[DENSE], "backbone.dense_features", 0, 1 << 16,
                                    &b->n_dense))) ||
        (v[BOTTOM] && (st = read_widths(p, v[BOTTOM], "backbone.bottom", &b->bottom,
                                        &b->n_bottom))) ||
        (v[TOP] && (st = read_widths(p, v[TOP], "backbone.top", &b->top, &b->n_top))) ||
        (v[STD] && (st = get_double(p, v[STD], "backbone.init_std", &std))) ||
        (v[EXTRA] && (st = get_size(p, v[EXTRA], "backbone.extra_tokens", 0, 4096,
                                    &b->extra_tokens))))
        return st;
    if (std < 0 || std > 10)
        return fail(p, v[STD], DV365_E_CONFIG, "backbone.init_std must be in [0, 10]");
    b->init_std = (float)std;
    if (v[ITEMS]) {
        if ((st = expect(p, v[ITEMS], YAML_MAPPING_NODE, "backbone.item_tables")))
            return st;
        for (int f = 0; f < DV_NUM_FIELDS; f++)
            b->item_field[f] = false;
        for (yaml_node_pair_t *kv = v[ITEMS]->data.mapping.pairs.start;
             kv < v[ITEMS]->data.mapping.pairs.top; kv++) {
            yaml_node_t *k = node_at(p, kv->key), *val = node_at(p, kv->value);
            const char *field;
            if ((st = get_string(p, k, "an id field", &field)))
                return st;
            long f = find_cname(field_names, DV_NUM_FIELDS, field);
            if (f < 0)
                return fail(p, k, DV365_E_CONFIG,
                            "unknown id field '%s' (media, author or topic)", field);
            if (b->item_field[f])
                return fail(p, k, DV365_E_CONFIG, "item table '%s' appears twice", field);
            if ((st = get_size(p, val, "item table rows", 1, MAX_TABLE_ROWS, &b->item_rows[f])))
                return st;
            b->item_field[f] = true;
        }
    }
    if (v[TASKS]) {
        for (size_t i = 0; i < b->n_tasks; i++)
            dv_free(b->task_names[i]);
        b->n_tasks = 0;
        if ((st = read_tasks(p, v[TASKS])))
            return st;
    }
    return DV365_OK;
}

/* ------------------------------------------------------------ training - */

static dv365_status read_positive(parser *p, const yaml_node_t *n, const char *what, double *out,
                                  bool zero_ok)
{
    dv365_status st = get_double(p, n, what, out);
    if (st == DV365_OK && (*out < 0 || (!zero_ok && *out == 0)))
        return fail(p, n, DV365_E_CONFIG, "%s must be %s", what, zero_ok ? ">= 0" : "> 0");
    return st;
}

static dv365_status read_optimizer(parser *p, const yaml_node_t *n)
{
    dv_training_cfg *t = &p->cfg->training;
    enum { TYPE, LR, B1, B2, EPS, WD, WARMUP, DECAY, TOTAL, MINLR, NKEYS };
    static const char *const keys[NKEYS] = {"type",   "lr",    "beta1",       "beta2",
                                            "eps",    "weight_decay", "warmup", "decay",
                                            "total_steps", "min_lr"};
    yaml_node_t *v[NKEYS];
    dv365_status st;
    const char *s;
    size_t warmup = t->dense_lr.warmup_steps, total = t->dense_lr.total_steps;
    if ((st = read_keys(p, n, "training.optimizer", keys, NKEYS, v)))
        return st;
    if (v[TYPE]) {
        if ((st = get_string(p, v[TYPE], "optimizer type", &s)))
            return st;
        if (strcmp(s, "adam") && strcmp(s, "adamw"))
            return fail(p, v[TYPE], DV365_E_CONFIG, "optimizer type must be adam or adamw");
        t->adamw = !strcmp(s, "adamw");
    }
    if (v[DECAY]) {
        static const char *const decays[] = {"constant", "linear", "cosine"};
        if ((st = get_string(p, v[DECAY], "decay", &s)))
            return st;
        long d = find_cname(decays, 3, s);
        if (d < 0)
            return fail(p, v[DECAY], DV365_E_CONFIG, "decay must be constant, linear or cosine");
        t->dense_lr.decay = (dv_lr_decay)d;
    }
    if ((v[LR] && (st = read_positive(p, v[LR], "lr", &t->dense_lr.base_lr, false))) ||
        (v[B1] && (st = get_double(p, v[B1], "beta1", &t->beta1))) ||
        (v[B2] && (st = get_double(p, v[B2], "beta2", &t->beta2))) ||
        (v[EPS] && (st = read_positive(p, v[EPS], "eps", &t->eps, false))) ||
        (v[WD] && (st = read_positive(p, v[WD], "weight_decay", &t->weight_decay, true))) ||
        (v[WARMUP] && (st = get_size(p, v[WARMUP], "warmup", 0, UINT32_MAX, &warmup))) ||
        (v[TOTAL] && (st = get_size(p, v[TOTAL], "total_steps", 0, UINT32_MAX, &total))) ||
        (v[MINLR] && (st = read_positive(p, v[MINLR], "min_lr", &t->dense_lr.min_lr, true))))
        return st;
    if (!(t->beta1 >= 0 && t->beta1 < 1) || !(t->beta2 >= 0 && t->beta2 < 1))
        return fail(p, n, DV365_E_CONFIG, "beta1 and beta2 must be in [0, 1)");
    t->dense_lr.warmup_steps = warmup;
    t->dense_lr.total_steps = total;
    if (dv_lr_schedule_check(&t->dense_lr) != DV365_OK)
        return fail(p, n, DV365_E_CONFIG,
                    "bad learning-rate schedule: need min_lr <= lr and, with a decay, "
                    "total_steps > warmup");
    return DV365_OK;
}

static dv365_status read_training(parser *p, const yaml_node_t *n)
{
    dv_training_cfg *t = &p->cfg->training;
    enum { GAP, BATCH, SEED, OPT, EMB, CLIP, NKEYS };
    static const char *const keys[NKEYS] = {"gap",  "batch_size",          "seed",
                                            "optimizer", "embedding_optimizer", "clip_grad_norm"};
    yaml_node_t *v[NKEYS];
    dv365_status st;
    size_t seed = t->seed;
    if ((st = read_keys(p, n, "training", keys, NKEYS, v)) ||
        (v[GAP] && (st = parse_duration(p, v[GAP], "training.gap", &t->gap_s))) ||
        (v[BATCH] && (st = get_size(p, v[BATCH], "training.batch_size", 1, 1 << 20,
                                    &t->batch_size))) ||
        (v[SEED] && (st = get_size(p, v[SEED], "training.seed", 0, UINT64_MAX, &seed))) ||
        (v[OPT] && (st = read_optimizer(p, v[OPT]))) ||
        (v[CLIP] && (st = read_positive(p, v[CLIP], "clip_grad_norm", &t->clip_norm, true))))
        return st;
    t->seed = seed;
    if (v[EMB]) {
        static const char *const ekeys[] = {"type", "lr", "eps"};
        yaml_node_t *ev[3];
        const char *s;
        if ((st = read_keys(p, v[EMB], "training.embedding_optimizer", ekeys, 3, ev)) ||
            (ev[0] && (st = get_string(p, ev[0], "embedding optimizer type", &s))))
            return st;
        if (ev[0] && strcmp(s, "rowwise_adagrad"))
            return fail(p, ev[0], DV365_E_CONFIG,
                        "the embedding optimizer must be rowwise_adagrad");
        if ((ev[1] && (st = read_positive(p, ev[1], "lr", &t->emb_lr, false))) ||
            (ev[2] && (st = read_positive(p, ev[2], "eps", &t->emb_eps, false))))
            return st;
    }
    return DV365_OK;
}

/* ------------------------------------------------------------ document - */

static dv365_status read_root(parser *p, const yaml_node_t *root)
{
    enum { VERSION, DIM, GAMMA, POOLING, VOCAB, TABLES, SLICES, ENCODER, BACKBONE, TRAINING,
           NKEYS };
    static const char *const keys[NKEYS] = {"version", "dim",      "watch_score_gamma",
                                            "pooling", "vocab",    "tables",
                                            "slices",  "encoder",  "backbone",
                                            "training"};
    yaml_node_t *v[NKEYS];
    dv365_config *cfg = p->cfg;
    dv365_status st;
    size_t version = 1;
    if ((st = read_keys(p, root, "the config", keys, NKEYS, v)))
        return st;
    if (v[VERSION] && (st = get_size(p, v[VERSION], "version", 1, 1, &version)))
        return fail(p, v[VERSION], DV365_E_VERSION, "config version must be 1, found '%s'",
                    v[VERSION]->type == YAML_SCALAR_NODE ? scalar(v[VERSION]) : "?");
    if ((st = require(p, root, v[DIM], "dim", "the config")) ||
        (st = get_size(p, v[DIM], "dim", 1, MAX_DIM, &cfg->dim)))
        return st;
    if (v[GAMMA]) {
        if ((st = get_double(p, v[GAMMA], "watch_score_gamma", &cfg->gamma)))
            return st;
        if (!(cfg->gamma > 0))
            return fail(p, v[GAMMA], DV365_E_CONFIG, "watch_score_gamma must be > 0");
    }
    if (v[POOLING]) {
        static const char *const pkeys[] = {"init_std"};
        yaml_node_t *pv[1];
        double std = cfg->init_std;
        if ((st = read_keys(p, v[POOLING], "pooling", pkeys, 1, pv)) ||
            (pv[0] && (st = get_double(p, pv[0], "pooling.init_std", &std))))
            return st;
        if (std < 0 || std > 10)
            return fail(p, pv[0], DV365_E_CONFIG, "pooling.init_std must be in [0, 10]");
        cfg->init_std = (float)std;
    }
    /* in dependency order: slices name vocabulary entries and tables */
    if ((st = require(p, root, v[VOCAB], "vocab", "the config")) ||
        (st = read_vocab(p, v[VOCAB])) ||
        (st = require(p, root, v[TABLES], "tables", "the config")) ||
        (st = read_tables(p, v[TABLES])) ||
        (v[ENCODER] && (st = read_encoder(p, v[ENCODER]))) ||
        (st = require(p, root, v[SLICES], "slices", "the config")) ||
        (st = read_slices(p, v[SLICES])) ||
        (v[BACKBONE] && (st = read_backbone(p, v[BACKBONE]))) ||
        (v[TRAINING] && (st = read_training(p, v[TRAINING]))))
        return st;
    size_t t_last = dv_config_funnel_tokens(cfg);
    if (cfg->encoder.compress > t_last)
        return fail(p, p->compress_at, DV365_E_CONFIG,
                    "encoder.compress must be in [1, %zu], the funnel's output tokens "
                    "(N = %zu slices, blocks %zu, stride %zu), or 0; found %zu",
                    t_last, cfg->n_slices, cfg->encoder.blocks, cfg->encoder.stride,
                    cfg->encoder.compress);
    /* the encoder's defaults may not fit a dim that has no encoder section */
    if (!v[ENCODER] && cfg->dim % cfg->encoder.heads != 0)
        return fail(p, root, DV365_E_CONFIG,
                    "dim (%zu) must be divisible by encoder.heads (%zu); add an encoder section",
                    cfg->dim, cfg->encoder.heads);
    return DV365_OK;
}

/* The backbone's default tasks (replaced by backbone.tasks when given). */
static dv365_status default_tasks(dv365_config *cfg)
{
    static const char *const binary[] = {"like", "comment", "share", "complete", "skip"};
    dv365_status st = DV365_OK;
    for (size_t i = 0; i < 5 && st == DV365_OK; i++)
        st = add_task(cfg, binary[i], DV_TASK_BINARY, 1.0, false);
    return st ? st : add_task(cfg, "watch_time", DV_TASK_REGRESSION, 0.1, true);
}

static dv365_status set_defaults(dv365_config *cfg)
{
    cfg->gamma = 1.0;
    cfg->init_std = 0.05f;
    cfg->encoder.blocks = 3;
    cfg->encoder.layers_per_block = 1;
    cfg->encoder.heads = 4;
    cfg->encoder.ffn = 1024;
    cfg->encoder.stride = 2;
    cfg->encoder.k_lce = 8;
    cfg->encoder.init_std = 0.02f;

    dv_backbone_cfg *b = &cfg->backbone;
    static const size_t item_rows[DV_NUM_FIELDS] = {65536, 16384, 1024};
    b->n_dense = 8;
    b->init_std = 0.05f;
    for (int f = 0; f < DV_NUM_FIELDS; f++) {
        b->item_field[f] = true;
        b->item_rows[f] = item_rows[f];
    }
    dv_training_cfg *t = &cfg->training;
    t->gap_s = 24 * 3600;
    t->batch_size = 64;
    t->seed = 1;
    t->adamw = true;
    t->beta1 = 0.9;
    t->beta2 = 0.999;
    t->eps = 1e-8;
    t->dense_lr = (dv_lr_schedule){.decay = DV_LR_CONSTANT, .base_lr = 1e-3};
    t->emb_lr = 0.05;
    t->emb_eps = 1e-8;

    static const size_t bottom[] = {64}, top[] = {256, 128};
    if (!(b->bottom = dv_malloc(sizeof bottom)) || !(b->top = dv_malloc(sizeof top)))
        return oom();
    memcpy(b->bottom, bottom, sizeof bottom);
    memcpy(b->top, top, sizeof top);
    b->n_bottom = 1;
    b->n_top = 2;
    return default_tasks(cfg);
}

dv365_status dv365_config_parse(const char *yaml, size_t len, dv365_config **out)
{
    dv_clear_error();
    DV_CHECK_NULL(yaml);
    DV_CHECK_NULL(out);
    return dv_config_parse_named(yaml, len, "<string>", out);
}

dv365_status dv_config_parse_named(const char *yaml, size_t len, const char *source,
                                   dv365_config **out)
{
    parser p = {.source = source};
    yaml_parser_t yp;
    dv365_status st = DV365_OK;
    if (memchr(yaml, '\0', len))
        return dv_error(DV365_E_PARSE, "%s: the config contains a NUL byte", source);
    if (!(p.cfg = dv_calloc(1, sizeof *p.cfg)))
        return oom();
    if ((st = set_defaults(p.cfg))) {
        dv365_config_free(p.cfg);
        return st;
    }
    if (!yaml_parser_initialize(&yp)) {
        dv365_config_free(p.cfg);
        return dv_error(DV365_E_NOMEM, "config: cannot initialize the YAML parser");
    }
    yaml_parser_set_input_string(&yp, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&yp, &p.doc)) {
        st = dv_error(DV365_E_PARSE, "%s:%zu:%zu: %s%s%s", source,
                      (size_t)yp.problem_mark.line + 1, (size_t)yp.problem_mark.column + 1,
                      yp.problem ? yp.problem : "malformed YAML", yp.context ? " " : "",
                      yp.context ? yp.context : "");
        yaml_parser_delete(&yp);
        dv365_config_free(p.cfg);
        return st;
    }
    yaml_parser_delete(&yp);
    yaml_node_t *root = yaml_document_get_root_node(&p.doc);
    if (root == NULL)
        st = dv_error(DV365_E_CONFIG, "%s: the config is empty", source);
    else
        st = read_root(&p, root);
    yaml_document_delete(&p.doc);
    if (st == DV365_OK) {
        p.cfg->yaml_text = dv_malloc(len + 1);
        if (!p.cfg->yaml_text) {
            st = dv_error(DV365_E_NOMEM, "config: out of memory");
        } else {
            memcpy(p.cfg->yaml_text, yaml, len);
            p.cfg->yaml_text[len] = '\0';
            p.cfg->yaml_len = len;
            p.cfg->fingerprint = XXH64(yaml, len, 0);
        }
    }
    if (st != DV365_OK) {
        dv365_config_free(p.cfg);
        return st;
    }
    *out = p.cfg;
    return DV365_OK;
}

dv365_status dv365_config_load(const char *path, dv365_config **out)
{
    dv_clear_error();
    DV_CHECK_NULL(path);
    DV_CHECK_NULL(out);
    void *text;
    size_t len;
    dv365_status st = dv_file_read_all(path, &text, &len);
    if (st)
        return st;
    st = dv_config_parse_named(text, len, path, out);
    dv_free(text);
    return st;
}

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        dv_free(names[i]);
    dv_free(names);
}

void dv365_config_free(dv365_config *cfg)
{
    if (!cfg)
        return;
    free_names(cfg->action_names, cfg->n_actions);
    dv_free(cfg->action_explicit);
    free_names(cfg->media_type_names, cfg->n_media_types);
    free_names(cfg->surface_names, cfg->n_surfaces);
    free_names(cfg->table_names, cfg->n_tables);
    dv_free(cfg->table_rows);
    for (size_t i = 0; i < cfg->n_windows; i++)
        dv_free(cfg->windows[i].name);
    dv_free(cfg->windows);
    for (size_t i = 0; i < cfg->n_defs; i++) {
        dv_slice_def *d = &cfg->defs[i];
        dv_free(d->name);
        dv_free(d->action_ok);
        dv_free(d->media_type_ok);
        dv_free(d->surface_ok);
        dv_free(d->window);
    }
    dv_free(cfg->defs);
    for (size_t i = 0; i < cfg->n_slices; i++)
        dv_free(cfg->slices[i].name);
    dv_free(cfg->slices);
    dv_free(cfg->backbone.bottom);
    dv_free(cfg->backbone.top);
    free_names(cfg->backbone.task_names, cfg->backbone.n_tasks);
    dv_free(cfg->backbone.tasks);
    dv_free(cfg->yaml_text);
    dv_free(cfg);
}

/* ------------------------------------------------------------ queries -- */

size_t dv_config_funnel_tokens(const dv365_config *cfg)
{
    const dv_encoder_cfg *e = &cfg->encoder;
    size_t t = cfg->n_slices;
    for (size_t b = 1; b < e->blocks; b++)
        t = (t + e->stride - 1) / e->stride;
    return e->blocks ? t : 0;
}

size_t dv_config_num_tokens(const dv365_config *cfg)
{
    const dv_encoder_cfg *e = &cfg->encoder;
    size_t t = dv_config_funnel_tokens(cfg);
    return (e->compress ? e->compress : t) + e->k_lce;
}

size_t dv365_config_dim(const dv365_config *cfg) { return cfg ? cfg->dim : 0; }
size_t dv365_config_num_slices(const dv365_config *cfg) { return cfg ? cfg->n_slices : 0; }
size_t dv365_config_num_tables(const dv365_config *cfg) { return cfg ? cfg->n_tables : 0; }

const char *dv365_config_slice_name(const dv365_config *cfg, size_t i)
{
    return cfg && i < cfg->n_slices ? cfg->slices[i].name : NULL;
}

const char *dv365_config_table_name(const dv365_config *cfg, size_t i)
{
    return cfg && i < cfg->n_tables ? cfg->table_names[i] : NULL;
}

size_t dv365_config_table_rows(const dv365_config *cfg, size_t i)
{
    return cfg && i < cfg->n_tables ? cfg->table_rows[i] : 0;
}

dv365_status dv365_config_slice_index(const dv365_config *cfg, const char *name, size_t *index)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(name);
    DV_CHECK_NULL(index);
    for (size_t i = 0; i < cfg->n_slices; i++)
        if (!strcmp(cfg->slices[i].name, name)) {
            *index = i;
            return DV365_OK;
        }
    return dv_error(DV365_E_NOT_FOUND, "no slice named '%s'", name);
}

static bool vocab_of(const dv365_config *cfg, dv365_vocab vocab, char *const **names, size_t *n)
{
    switch (vocab) {
    case DV365_VOCAB_ACTION: *names = cfg->action_names; *n = cfg->n_actions; return true;
    case DV365_VOCAB_MEDIA_TYPE: *names = cfg->media_type_names; *n = cfg->n_media_types; return true;
    case DV365_VOCAB_SURFACE: *names = cfg->surface_names; *n = cfg->n_surfaces; return true;
    }
    return false;
}

size_t dv365_config_vocab_size(const dv365_config *cfg, dv365_vocab vocab)
{
    char *const *names;
    size_t n;
    return cfg && vocab_of(cfg, vocab, &names, &n) ? n : 0;
}

dv365_status dv365_config_code(const dv365_config *cfg, dv365_vocab vocab, const char *name,
                               int32_t *code)
{
    dv_clear_error();
    DV_CHECK_NULL(cfg);
    DV_CHECK_NULL(name);
    DV_CHECK_NULL(code);
    char *const *names;
    size_t n;
    if (!vocab_of(cfg, vocab, &names, &n))
        return dv_error(DV365_E_INVALID, "dv365_config_code: unknown vocabulary %d", (int)vocab);
    long i = find_name(names, n, name);
    if (i < 0)
        return dv_error(DV365_E_NOT_FOUND, "no %s named '%s' in the config",
                        vocab == DV365_VOCAB_ACTION       ? "action"
                        : vocab == DV365_VOCAB_MEDIA_TYPE ? "media type"
                                                          : "surface",
                        name);
    *code = (int32_t)i;
    return DV365_OK;
}

size_t dv365_config_num_tasks(const dv365_config *cfg)
{
    return cfg ? cfg->backbone.n_tasks : 0;
}

const char *dv365_config_task_name(const dv365_config *cfg, size_t task)
{
    return cfg && task < cfg->backbone.n_tasks ? cfg->backbone.task_names[task] : NULL;
}

int dv365_config_task_is_binary(const dv365_config *cfg, size_t task)
{
    if (!cfg || task >= cfg->backbone.n_tasks)
        return -1;
    return cfg->backbone.tasks[task].kind == DV_TASK_BINARY;
}

size_t dv365_config_num_dense(const dv365_config *cfg) { return cfg ? cfg->backbone.n_dense : 0; }

const char *dv365_config_code_name(const dv365_config *cfg, dv365_vocab vocab, int32_t code)
{
    char *const *names;
    size_t n;
    if (!cfg || !vocab_of(cfg, vocab, &names, &n) || code < 0 || (size_t)code >= n)
        return NULL;
    return names[code];
}
