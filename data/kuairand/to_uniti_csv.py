#!/usr/bin/env python3
"""Turn the KuaiRand-1K log into libdv365's timeline CSV (docs/data.md).

Each log row is one exposure of a video to a user.  It becomes one `view`
event, plus one explicit event per flag that is set, all at the same time
and with the same ids, duration and dwell:

    is_like -> like, is_follow -> follow, is_comment -> comment,
    is_forward -> share, is_hate -> hide, is_profile_enter -> profile_visit

Columns: time_ms = time_ms (the converter floors it to unix seconds);
media_id = video_id; author_id, and topic_id = the first id in `tag`
(0 when the video has no tag), come from KuaiRand-Pure's
video_features_basic_pure.csv; media_type = video_type lower-cased
(normal / ad / unknown); surface = "tab" + tab (tab1, tab2, tab11, tab14);
duration_ms = duration_ms (0 = unknown); dwell_ms = play_time_ms.

Usage: to_uniti_csv.py [--users 1,2,3] OUT.csv   (stdlib only)
"""
import argparse
import csv
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LOG = os.path.join(HERE, "kuairand-1k", "log_random_4_22_to_5_08_1k.csv")
VIDEOS = os.path.join(HERE, "kuairand-pure", "video_features_basic_pure.csv")

FLAGS = [("is_like", "like"), ("is_follow", "follow"), ("is_comment", "comment"),
         ("is_forward", "share"), ("is_hate", "hide"), ("is_profile_enter", "profile_visit")]
COLUMNS = ["user_id", "time_ms", "media_id", "author_id", "topic_id", "action",
           "media_type", "surface", "duration_ms", "dwell_ms"]


def load_videos():
    videos = {}
    with open(VIDEOS, newline="") as f:
        for r in csv.DictReader(f):
            tag = r["tag"].split(",")[0] if r["tag"] else "0"
            videos[r["video_id"]] = (r["author_id"], str(int(float(tag))),
                                     r["video_type"].lower())
    return videos


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", help="comma-separated user ids to keep (default: all)")
    ap.add_argument("out", help="output CSV path")
    args = ap.parse_args()
    keep = set(args.users.split(",")) if args.users else None
    videos = load_videos()
    rows = 0
    with open(LOG, newline="") as f, open(args.out, "w", newline="") as out:
        w = csv.writer(out, lineterminator="\n")
        w.writerow(COLUMNS)
        for r in csv.DictReader(f):
            if keep is not None and r["user_id"] not in keep:
                continue
            author, topic, mtype = videos[r["video_id"]]
            actions = ["view"] + [a for flag, a in FLAGS if r[flag] == "1"]
            for a in actions:
                w.writerow([r["user_id"], r["time_ms"], r["video_id"], author, topic, a, mtype,
                            "tab" + r["tab"], r["duration_ms"], r["play_time_ms"]])
                rows += 1
    print(f"wrote {rows} events to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
