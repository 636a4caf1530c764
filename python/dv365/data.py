"""Data files: timeline files (one record per user) and example files."""
import ctypes

import numpy as np

from ._base import (ArgumentError, DTypeError, Handle, Status, array, check, fspath, i64,
                    new_handle, ptr, size, u64)
from ._lib import lib
from .model import Timeline, as_config


class TimelineWriter(Handle):
    """Write users' timelines to a file; it appears under path only after
    close() succeeds.  Leaving a ``with`` block by an exception abandons the
    file.  config: a Config, a Model or a YAML path."""
    _free_fn = "timeline_writer_free"

    def __init__(self, path, config):
        self.config = as_config(config)
        super().__init__(new_handle(lib.timeline_writer_open, fspath(path), self.config.ptr))

    def add(self, user_id, timeline):
        if not isinstance(timeline, Timeline):
            raise DTypeError(Status.E_INVALID, "timeline must be a dv365.Timeline")
        check(lib.timeline_writer_add(self.ptr, u64(user_id, "user_id"), timeline.handle(self.config)))

    def __len__(self):
        return lib.timeline_writer_count(self.ptr)

    def close(self):
        """Finish the file and move it into place (then free the writer)."""
        if self.closed:
            return
        try:
            check(lib.timeline_writer_close(self.ptr))
        finally:
            super().close()

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            super().close()  # free without closing: nothing under path
        else:
            self.close()


class TimelineReader(Handle):
    """Read a timeline file sequentially: iterate for (user_id, Timeline).
    The timelines live in C (no columns in Python) and work with any model
    of the same config."""
    _free_fn = "timeline_reader_free"

    def __init__(self, path, config):
        self.config = as_config(config)
        super().__init__(new_handle(lib.timeline_reader_open, fspath(path), self.config.ptr))

    def __len__(self):
        return lib.timeline_reader_count(self.ptr)

    @property
    def num_events(self):
        return lib.timeline_reader_num_events(self.ptr)

    def next(self):
        """(user_id, Timeline) of the next user, or None at the end."""
        r = self.ptr
        tl = new_handle(lib.timeline_create, self.config.ptr)
        uid, done = ctypes.c_uint64(), ctypes.c_int()
        try:
            check(lib.timeline_reader_next(r, ctypes.byref(uid), tl, ctypes.byref(done)))
        except BaseException:
            lib.timeline_free(tl)
            raise
        if done.value:
            lib.timeline_free(tl)
            return None
        return uid.value, Timeline._wrap(tl, self.config)

    def __iter__(self):
        while True:
            item = self.next()
            if item is None:
                return
            yield item

    def seek(self, user_id):
        check(lib.timeline_reader_seek(self.ptr, u64(user_id, "user_id")))

    def rewind(self):
        check(lib.timeline_reader_rewind(self.ptr))


class ExampleWriter(Handle):
    """Write training examples (user id, label time, candidate ids, dense
    features, labels); the file appears only after close() succeeds."""
    _free_fn = "example_writer_free"

    def __init__(self, path, n_dense, n_tasks):
        self.n_dense, self.n_tasks = size(n_dense, "n_dense"), size(n_tasks, "n_tasks")
        super().__init__(new_handle(lib.example_writer_open, fspath(path), self.n_dense, self.n_tasks))

    def add(self, user_id, label_time, media_id, author_id, topic_id, dense, labels):
        dense = array(dense if dense is not None else [], np.float32, "dense", [(self.n_dense,)])
        labels = array(labels, np.float32, "labels", [(self.n_tasks,)])
        check(lib.example_writer_add(self.ptr, u64(user_id, "user_id"), i64(label_time, "label_time"),
                                     u64(media_id, "media_id"), u64(author_id, "author_id"),
                                     u64(topic_id, "topic_id"), ptr(dense) if self.n_dense else None,
                                     ptr(labels)))

    def __len__(self):
        return lib.example_writer_count(self.ptr)

    def close(self):
        if self.closed:
            return
        try:
            check(lib.example_writer_close(self.ptr))
        finally:
            super().close()

    def __exit__(self, exc_type, *exc):
        if exc_type is not None:
            super().close()
        else:
            self.close()


class ExampleReader(Handle):
    """Read an example file: iterate for dicts (user_id, label_time,
    media_id, author_id, topic_id, dense, labels), or read() columns."""
    _free_fn = "example_reader_free"

    def __init__(self, path):
        super().__init__(new_handle(lib.example_reader_open, fspath(path)))
        self.n_dense = lib.example_reader_num_dense(self._ptr)
        self.n_tasks = lib.example_reader_num_tasks(self._ptr)

    def __len__(self):
        return lib.example_reader_count(self.ptr)

    def seek(self, index):
        check(lib.example_reader_seek(self.ptr, size(index, "index")))

    def next(self):
        ids = [ctypes.c_uint64() for _ in range(4)]
        t, done = ctypes.c_int64(), ctypes.c_int()
        dense = np.empty(self.n_dense, dtype=np.float32)
        labels = np.empty(self.n_tasks, dtype=np.float32)
        check(lib.example_reader_next(self.ptr, ctypes.byref(ids[0]), ctypes.byref(t), ctypes.byref(ids[1]),
                                      ctypes.byref(ids[2]), ctypes.byref(ids[3]),
                                      ptr(dense) if self.n_dense else None, ptr(labels), ctypes.byref(done)))
        if done.value:
            return None
        return {"user_id": ids[0].value, "label_time": t.value, "media_id": ids[1].value,
                "author_id": ids[2].value, "topic_id": ids[3].value, "dense": dense, "labels": labels}

    def __iter__(self):
        while True:
            e = self.next()
            if e is None:
                return
            yield e

    def read(self, n=None):
        """Up to n examples (all remaining by default) as columns:
        user_id, label_time [B]; item_ids [B, 3]; dense [B, n_dense]; labels [B, n_tasks]."""
        rows = []
        while n is None or len(rows) < n:
            e = self.next()
            if e is None:
                break
            rows.append(e)
        b = len(rows)
        return {"user_id": np.array([e["user_id"] for e in rows], dtype=np.uint64),
                "label_time": np.array([e["label_time"] for e in rows], dtype=np.int64),
                "item_ids": np.array([[e["media_id"], e["author_id"], e["topic_id"]] for e in rows],
                                     dtype=np.uint64).reshape(b, 3),
                "dense": np.array([e["dense"] for e in rows], dtype=np.float32).reshape(b, self.n_dense),
                "labels": np.array([e["labels"] for e in rows], dtype=np.float32).reshape(b, self.n_tasks)}


def _delimiter(d):
    if d is None:
        return b"\0"
    if d not in (",", "\t", ";", "|"):
        raise ArgumentError(Status.E_INVALID, "delimiter must be one of , \\t ; | or None, got %r" % (d,))
    return d.encode()


def csv_to_timelines(csv_path, config, out_path, delimiter=None):
    """Convert a CSV/TSV of events into a timeline file; returns the rows read."""
    rows = ctypes.c_size_t()
    check(lib.csv_to_timelines(fspath(csv_path), as_config(config).ptr, _delimiter(delimiter),
                               fspath(out_path), ctypes.byref(rows)))
    return rows.value


def csv_to_examples(csv_path, out_path, delimiter=None):
    """Convert a CSV/TSV of examples into an example file; returns the rows read."""
    rows = ctypes.c_size_t()
    check(lib.csv_to_examples(fspath(csv_path), _delimiter(delimiter), fspath(out_path), ctypes.byref(rows)))
    return rows.value
