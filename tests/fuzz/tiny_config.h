/* tiny_config.h — a config small enough that its whole model (tables,
 * encoder, backbone) is a few KB of safetensors: the weights fuzz target
 * and the seed-corpus generator share it. */
#ifndef DV365_FUZZ_TINY_CONFIG_H
#define DV365_FUZZ_TINY_CONFIG_H

static const char tiny_config_yaml[] =
    "version: 1\n"
    "dim: 4\n"
    "vocab:\n"
    "  actions: [{name: view, explicit: false}, {name: like, explicit: true}]\n"
    "  media_types: [video]\n"
    "  surfaces: [feed]\n"
    "tables:\n"
    "  - {name: pos, rows: 3}\n"
    "  - {name: neg, rows: 2}\n"
    "slices:\n"
    "  - {name: liked, actions: [like], pool: {media: pos, topic: pos}, windows: [all, 7d]}\n"
    "  - {name: viewed, actions: [view], pool: {author: neg}, windows: [all]}\n"
    "encoder: {blocks: 1, layers_per_block: 1, heads: 2, ffn: 4, stride: 2, k_lce: 2}\n"
    "backbone:\n"
    "  dense_features: 1\n"
    "  bottom: [3]\n"
    "  top: [3]\n"
    "  item_tables: {media: 3, author: 2, topic: 2}\n"
    "  tasks: [{name: like, type: binary}, {name: watch, type: regression}]\n";

#endif
