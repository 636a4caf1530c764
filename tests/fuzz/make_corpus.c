/* make_corpus.c — writes the seed corpora of tests/fuzz/corpus/<target>/
 * with the library itself: small valid inputs (and their fuzz-input
 * framing) from which the fuzzers mutate.  The corpora are committed; run
 * this only when a format changes:
 *     build/tests/fuzz/make_corpus tests/fuzz/corpus */
#include "dv365.h"
#include "datafile.h"
#include "tiny_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef DV365_SOURCE_ROOT
#define DV365_SOURCE_ROOT "."
#endif

#define CHECK(call)                                                                       \
    do {                                                                                  \
        dv365_status st_ = (call);                                                        \
        if (st_ != DV365_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #call, dv365_last_error()); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static const char *g_root;

static void mkdir_p(const char *dir)
{
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        exit(1);
    }
}

/* Write prefix (0 or 1 byte, -1 = none) followed by data to root/target/name. */
static void seed(const char *target, const char *name, int prefix, const void *data, size_t size)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g_root, target);
    mkdir_p(path);
    snprintf(path, sizeof path, "%s/%s/%s", g_root, target, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || (prefix >= 0 && fputc(prefix, f) == EOF) ||
        (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void *slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

/* Seed a file written by the library into a target with a flag byte. */
static void seed_file(const char *target, const char *name, int prefix, const char *path)
{
    size_t n;
    void *buf = slurp(path, &n);
    seed(target, name, prefix, buf, n);
    free(buf);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void)
{
    g_rng = g_rng * 6364136223846793005u + 1442695040888963407u;
    return (uint32_t)(g_rng >> 33);
}

static void configs(void)
{
    const char *files[] = {"configs/small.yaml", "configs/default.yaml"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        size_t n;
        snprintf(path, sizeof path, "%s/%s", DV365_SOURCE_ROOT, files[i]);
        void *buf = slurp(path, &n);
        seed("config", strchr(files[i], '/') + 1, -1, buf, n);
        free(buf);
    }
    seed("config", "tiny.yaml", -1, tiny_config_yaml, sizeof tiny_config_yaml - 1);
}

static void weights(const char *tmp)
{
    char dir[4096], path[4096];
    dv365_config *cfg;
    CHECK(dv365_config_parse(tiny_config_yaml, sizeof tiny_config_yaml - 1, &cfg));
    snprintf(path, sizeof path, "%s/config.yaml", tmp);
    FILE *f = fopen(path, "wb");
    fputs(tiny_config_yaml, f);
    fclose(f);

    dv365_encoder *enc;
    CHECK(dv365_encoder_create(cfg, 3, &enc));
    snprintf(path, sizeof path, "%s/enc.safetensors", tmp);
    CHECK(dv365_encoder_save(enc, path));
    seed_file("weights", "encoder", 0, path);
    seed_file("safetensors", "encoder", -1, path);
    dv365_encoder_free(enc);

    const struct {
        dv365_adapter_kind kind;
        size_t out_dim;
        const char *name;
    } ad[] = {{DV365_ADAPTER_LINEAR, 2, "adapter-linear"},
              {DV365_ADAPTER_GATENET_VECTOR, 0, "adapter-gatenet-vector"},
              {DV365_ADAPTER_GATENET_BIT, 0, "adapter-gatenet-bit"},
              {DV365_ADAPTER_PREFIX, 3, "adapter-prefix"}};
    for (int i = 0; i < 4; i++) {
        dv365_adapter *a;
        CHECK(dv365_adapter_create(ad[i].kind, "a", 2, 3, ad[i].out_dim, 5, &a));
        snprintf(path, sizeof path, "%s/a.safetensors", tmp);
        CHECK(dv365_adapter_save(a, path));
        seed_file("weights", ad[i].name, 1, path);
        if (i == 0)
            seed_file("safetensors", ad[i].name, -1, path);
        dv365_adapter_free(a);
    }

    snprintf(path, sizeof path, "%s/config.yaml", tmp);
    dv365_model *m;
    CHECK(dv365_model_init(path, 9, &m));
    snprintf(dir, sizeof dir, "%s/model", tmp);
    CHECK(dv365_model_save(m, dir));
    snprintf(path, sizeof path, "%s/model/weights.safetensors", tmp);
    seed_file("weights", "model", 2, path);
    seed_file("safetensors", "model", -1, path);
    dv365_model_free(m);
    dv365_config_free(cfg);
}

static void blobs(void)
{
    const size_t shapes[][2] = {{1, 1}, {2, 3}, {3, 8}};
    for (int s = 0; s < 3; s++) {
        size_t k = shapes[s][0], d = shapes[s][1], n = dv365_blob_size(k, d);
        float U[24];
        for (size_t i = 0; i < k * d; i++)
            U[i] = (float)((int)(rnd() % 2001) - 1000) / 250.0f;
        unsigned char *b = malloc(n);
        CHECK(dv365_blob_encode(U, k, d, 0x1234 + (uint64_t)s, 1717200000, s == 2 ? DV365_Q4_GREEDY
                                                                                 : DV365_Q4_MINMAX,
                                b, n));
        char name[64];
        snprintf(name, sizeof name, "blob-%zux%zu", k, d);
        /* flag 1: the fuzzer fixes the checksum; dim for the raw path = flag>>1 + 1 */
        seed("blob", name, 1 | (int)((d - 1) << 1), b, n);
        free(b);
    }
}

/* Raw events for fuzz_timeline: int32 cutoff offset, then 28-byte events. */
static void timeline_events(void)
{
    for (int s = 0; s < 4; s++) {
        unsigned char buf[4 + 28 * 40];
        size_t n = 0;
        memset(buf, 0, 4); /* cutoff = base */
        n = 4;
        size_t events = 10 + 10 * (size_t)s;
        for (size_t e = 0; e < events; e++) {
            unsigned char *p = buf + n;
            p[0] = (unsigned char)((e % 7 == 6 ? 4 : 0) | (s == 3 && e == 5 ? 8 : 0));
            uint32_t v[4] = {rnd() % (30u * 86400u), rnd() % 1000, rnd(), rnd() % 50};
            memcpy(p + 1, v, 16);
            p[17] = (unsigned char)(rnd() % 8);
            p[18] = (unsigned char)(rnd() % 3);
            p[19] = (unsigned char)(rnd() % 5);
            uint32_t du = 500 + rnd() % 6000, dw = rnd() % 8000;
            memcpy(p + 20, &du, 4);
            memcpy(p + 24, &dw, 4);
            n += 28;
        }
        char name[64];
        snprintf(name, sizeof name, "events-%zu", events);
        seed("timeline", name, -1, buf, n);
    }
}

static void timeline_files(const char *tmp)
{
    char path[4096], ypath[4096];
    snprintf(ypath, sizeof ypath, "%s/configs/small.yaml", DV365_SOURCE_ROOT);
    dv365_config *cfg;
    CHECK(dv365_config_load(ypath, &cfg));
    snprintf(path, sizeof path, "%s/t.dvt", tmp);
    for (int variant = 0; variant < 2; variant++) {
        dv365_timeline_writer *w;
        CHECK(dv365_timeline_writer_open(path, cfg, &w));
        dv365_timeline *tl;
        CHECK(dv365_timeline_create(cfg, &tl));
        size_t users = variant == 0 ? 3 : 0;
        for (size_t u = 0; u < users; u++) {
            dv365_timeline_clear(tl);
            size_t n = u == 1 ? 0 : 4 + u;
            for (size_t e = 0; e < n; e++) {
                int64_t t = 1717200000 - (int64_t)(rnd() % (20u * 86400u));
                uint64_t media = rnd() % 100, author = rnd() % 10, topic = rnd() % 5;
                int32_t action = (int32_t)(rnd() % 8), mt = (int32_t)(rnd() % 3),
                        sf = (int32_t)(rnd() % 5);
                float du = (float)(rnd() % 60000), dw = (float)(rnd() % 60000);
                CHECK(dv365_timeline_append(tl, 1, &t, &media, &author, &topic, &action, &mt, &sf,
                                            &du, &dw));
            }
            CHECK(dv365_timeline_writer_add(w, 100 + 7 * (uint64_t)(2 - u), tl));
        }
        CHECK(dv365_timeline_writer_close(w));
        dv365_timeline_writer_free(w);
        dv365_timeline_free(tl);
        seed_file("timeline_file", variant == 0 ? "three-users" : "empty", 1, path);
        if (variant == 0)
            seed_file("timeline_file", "three-users-small-buffer", 3, path);
    }
    dv365_config_free(cfg);
}

static void example_files(const char *tmp)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/e.dve", tmp);
    const size_t shapes[][3] = {{2, 2, 2}, {0, 1, 0}}; /* n_dense, n_tasks, chunk rows */
    for (int s = 0; s < 2; s++) {
        dv365_example_writer *w;
        CHECK(dv_example_writer_open_ex(path, shapes[s][0], shapes[s][1], shapes[s][2], &w));
        for (int i = 0; i < 5; i++) {
            float dense[2] = {(float)i, 0.5f}, labels[2] = {(float)(i & 1), 3.0f};
            CHECK(dv365_example_writer_add(w, 100 + (uint64_t)i % 3, 1717200000 + i, rnd() % 100,
                                           rnd() % 10, rnd() % 5, shapes[s][0] ? dense : NULL,
                                           labels));
        }
        CHECK(dv365_example_writer_close(w));
        dv365_example_writer_free(w);
        seed_file("example_file", s == 0 ? "dense2-tasks2-chunk2" : "dense0-tasks1", 1, path);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    g_root = argv[1];
    mkdir_p(g_root);
    char tmp[] = "/tmp/dv365-corpus-XXXXXX";
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    configs();
    weights(tmp);
    blobs();
    timeline_events();
    timeline_files(tmp);
    example_files(tmp);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    return system(cmd) != 0;
}
