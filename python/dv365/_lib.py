"""Finding libdv365.so.1 and declaring the C prototypes (ctypes only).

The library is looked for, in order:
  1. the path in the environment variable DV365_LIBRARY;
  2. a build tree: going up from this package's directory, every
     ``build*/lib/libdv365.so.1`` beside a libdv365 source tree
     (``include/dv365.h``); the most recently built one wins;
  3. the library installed with this package (its libdir is recorded at
     install time in ``_install.py``; a DESTDIR staging copy is found too);
  4. the dynamic loader's search (``ctypes.util.find_library``,
     then ``libdv365.so.1``).

Every function is declared with argtypes and restype.  Pointers to arrays
are passed as c_void_p (the caller passes ``arr.ctypes.data``), handles
are c_void_p, out-parameters are POINTER(...).
"""
import ctypes
import ctypes.util
import glob
import os

SOVERSION_NAME = "libdv365.so.1"

c_int, c_uint, c_size, c_char_p, c_void_p = (ctypes.c_int, ctypes.c_uint, ctypes.c_size_t,
                                             ctypes.c_char_p, ctypes.c_void_p)
c_int32, c_int64, c_uint64, c_double = ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64, ctypes.c_double
P = ctypes.POINTER
status = c_int  # dv365_status (an int-sized enum)


class GenerateOptions(ctypes.Structure):
    """Mirror of struct dv365_generate_options (checked against
    dv365_generate_options_init's struct_size when used)."""
    _fields_ = [("struct_size", c_size), ("nthreads", c_int), ("batch", c_size),
                ("resume", c_int), ("method", c_int), ("created", c_int64),
                ("progress", c_void_p), ("progress_ctx", c_void_p)]


# int (*progress)(void *ctx, uint64_t step, uint64_t total, double loss)
TRAIN_PROGRESS = ctypes.CFUNCTYPE(c_int, c_void_p, c_uint64, c_uint64, c_double)
# int (*progress)(void *ctx, size_t done, size_t total)
GENERATE_PROGRESS = ctypes.CFUNCTYPE(c_int, c_void_p, c_size, c_size)

H = c_void_p      # an opaque handle
PH = P(c_void_p)  # handle out-parameter
A = c_void_p      # an array (numpy .ctypes.data) or NULL

# name: (restype, argtypes), in header order.
PROTOTYPES = {
    "dv365_version_number": (c_uint, []),
    "dv365_version_string": (c_char_p, []),
    "dv365_status_string": (c_char_p, [c_int]),
    "dv365_last_error": (c_char_p, []),
    # config
    "dv365_config_load": (status, [c_char_p, PH]),
    "dv365_config_parse": (status, [c_char_p, c_size, PH]),
    "dv365_config_free": (None, [H]),
    "dv365_config_dim": (c_size, [H]),
    "dv365_config_num_slices": (c_size, [H]),
    "dv365_config_slice_name": (c_char_p, [H, c_size]),
    "dv365_config_slice_index": (status, [H, c_char_p, P(c_size)]),
    "dv365_config_num_tables": (c_size, [H]),
    "dv365_config_table_name": (c_char_p, [H, c_size]),
    "dv365_config_table_rows": (c_size, [H, c_size]),
    "dv365_config_vocab_size": (c_size, [H, c_int]),
    "dv365_config_code": (status, [H, c_int, c_char_p, P(c_int32)]),
    "dv365_config_code_name": (c_char_p, [H, c_int, c_int32]),
    "dv365_config_num_tasks": (c_size, [H]),
    "dv365_config_task_name": (c_char_p, [H, c_size]),
    "dv365_config_task_is_binary": (c_int, [H, c_size]),
    "dv365_config_num_dense": (c_size, [H]),
    # timeline
    "dv365_timeline_create": (status, [H, PH]),
    "dv365_timeline_free": (None, [H]),
    "dv365_timeline_clear": (None, [H]),
    "dv365_timeline_append": (status, [H, c_size, A, A, A, A, A, A, A, A, A]),
    "dv365_timeline_size": (c_size, [H]),
    # workspace
    "dv365_workspace_create": (status, [PH]),
    "dv365_workspace_free": (None, [H]),
    "dv365_workspace_reserve": (status, [H, c_size]),
    "dv365_workspace_capacity": (c_size, [H]),
    # pooler
    "dv365_pooler_table": (status, [H, c_size, P(c_void_p), P(c_size)]),
    "dv365_hash_row": (c_size, [c_uint64, c_size]),
    "dv365_pool_forward": (status, [H, H, H, c_int64, A, A, A]),
    # encoder
    "dv365_encoder_create": (status, [H, c_uint64, PH]),
    "dv365_encoder_free": (None, [H]),
    "dv365_encoder_num_tokens": (c_size, [H]),
    "dv365_encoder_num_params": (c_size, [H]),
    "dv365_encode": (status, [H, H, c_size, A, A, c_int]),
    "dv365_encoder_load": (status, [H, c_char_p, PH]),
    "dv365_encoder_save": (status, [H, c_char_p]),
    # model
    "dv365_model_init": (status, [c_char_p, c_uint64, PH]),
    "dv365_model_load": (status, [c_char_p, PH]),
    "dv365_model_save": (status, [H, c_char_p]),
    "dv365_model_free": (None, [H]),
    "dv365_model_config": (H, [H]),
    "dv365_model_pooler": (H, [H]),
    "dv365_model_encoder": (H, [H]),
    "dv365_model_num_slices": (c_size, [H]),
    "dv365_model_dim": (c_size, [H]),
    "dv365_model_num_tokens": (c_size, [H]),
    "dv365_model_fingerprint": (c_uint64, [H]),
    "dv365_model_embed": (status, [H, H, c_size, P(c_void_p), A, A, c_int]),
    # data files
    "dv365_timeline_writer_open": (status, [c_char_p, H, PH]),
    "dv365_timeline_writer_add": (status, [H, c_uint64, H]),
    "dv365_timeline_writer_count": (c_size, [H]),
    "dv365_timeline_writer_close": (status, [H]),
    "dv365_timeline_writer_free": (None, [H]),
    "dv365_timeline_reader_open": (status, [c_char_p, H, PH]),
    "dv365_timeline_reader_next": (status, [H, P(c_uint64), H, P(c_int)]),
    "dv365_timeline_reader_seek": (status, [H, c_uint64]),
    "dv365_timeline_reader_rewind": (status, [H]),
    "dv365_timeline_reader_count": (c_size, [H]),
    "dv365_timeline_reader_num_events": (c_size, [H]),
    "dv365_timeline_reader_free": (None, [H]),
    "dv365_example_writer_open": (status, [c_char_p, c_size, c_size, PH]),
    "dv365_example_writer_add": (status, [H, c_uint64, c_int64, c_uint64, c_uint64, c_uint64, A, A]),
    "dv365_example_writer_count": (c_size, [H]),
    "dv365_example_writer_close": (status, [H]),
    "dv365_example_writer_free": (None, [H]),
    "dv365_example_reader_open": (status, [c_char_p, PH]),
    "dv365_example_reader_count": (c_size, [H]),
    "dv365_example_reader_num_dense": (c_size, [H]),
    "dv365_example_reader_num_tasks": (c_size, [H]),
    "dv365_example_reader_next": (status, [H, P(c_uint64), P(c_int64), P(c_uint64), P(c_uint64),
                                           P(c_uint64), A, A, P(c_int)]),
    "dv365_example_reader_seek": (status, [H, c_size]),
    "dv365_example_reader_free": (None, [H]),
    "dv365_csv_to_timelines": (status, [c_char_p, H, ctypes.c_char, c_char_p, P(c_size)]),
    "dv365_csv_to_examples": (status, [c_char_p, ctypes.c_char, c_char_p, P(c_size)]),
    # training
    "dv365_trainer_create": (status, [H, PH]),
    "dv365_trainer_free": (None, [H]),
    "dv365_trainer_steps": (c_uint64, [H]),
    "dv365_trainer_step": (status, [H, c_size, P(c_void_p), A, A, A, A, P(c_double), c_int]),
    "dv365_trainer_task_loss": (status, [H, c_size, P(c_double)]),
    "dv365_trainer_eval_reset": (None, [H]),
    "dv365_trainer_eval_batch": (status, [H, c_size, P(c_void_p), A, A, A, A, A, c_int]),
    "dv365_trainer_eval_result": (status, [H, c_size, P(c_double), P(c_double), P(c_double)]),
    "dv365_trainer_eval_loss": (status, [H, P(c_double), P(c_size)]),
    "dv365_trainer_train_files": (status, [H, c_char_p, c_char_p, c_uint64, TRAIN_PROGRESS,
                                           c_void_p, c_int]),
    "dv365_trainer_eval_files": (status, [H, c_char_p, c_char_p, c_int]),
    "dv365_trainer_save": (status, [H, c_char_p]),
    "dv365_trainer_resume": (status, [c_char_p, PH, PH]),
    # 4-bit rows and blobs
    "dv365_q4_row_bytes": (c_size, [c_size]),
    "dv365_q4_quantize": (status, [A, c_size, c_size, c_int, A, c_size]),
    "dv365_q4_dequantize": (status, [A, c_size, c_size, c_size, A]),
    "dv365_blob_size": (c_size, [c_size, c_size]),
    "dv365_blob_encode": (status, [A, c_size, c_size, c_uint64, c_int64, c_int, A, c_size]),
    "dv365_blob_inspect": (status, [A, c_size, P(c_uint64), P(c_int64), P(c_size), P(c_size)]),
    "dv365_blob_decode": (status, [A, c_size, c_uint64, c_size, c_size, A]),
    # adapters
    "dv365_adapter_create": (status, [c_int, c_char_p, c_size, c_size, c_size, c_uint64, PH]),
    "dv365_adapter_free": (None, [H]),
    "dv365_adapter_info": (status, [H, P(c_int), P(c_size), P(c_size), P(c_size)]),
    "dv365_adapter_output_size": (c_size, [H]),
    "dv365_adapter_num_params": (c_size, [H]),
    "dv365_adapter_params": (c_void_p, [H]),
    "dv365_adapter_forward": (status, [H, H, c_size, A, A, c_int]),
    "dv365_adapter_backward": (status, [H, H, c_size, A, A, A, A, c_int]),
    "dv365_adapter_save": (status, [H, c_char_p]),
    "dv365_adapter_load": (status, [c_char_p, c_char_p, PH]),
    # store
    "dv365_store_open": (status, [c_char_p, c_uint, c_size, PH]),
    "dv365_store_close": (None, [H]),
    "dv365_store_info": (status, [H, P(c_uint64), P(c_uint64), P(c_int64), P(c_size), P(c_size),
                                  P(c_size)]),
    "dv365_store_get": (status, [H, c_uint64, A, c_size, P(c_size)]),
    "dv365_store_age": (status, [H, c_uint64, c_int64, P(c_int64)]),
    "dv365_store_reader_create": (status, [H, PH]),
    "dv365_store_reader_free": (None, [H]),
    "dv365_store_reader_begin": (status, [H]),
    "dv365_store_reader_end": (None, [H]),
    "dv365_store_reader_info": (status, [H, P(c_uint64), P(c_uint64), P(c_int64), P(c_size),
                                         P(c_size), P(c_size)]),
    "dv365_store_reader_get": (status, [H, c_uint64, P(c_void_p), P(c_size)]),
    "dv365_store_begin_generation": (status, [H, c_uint64, c_int64, PH]),
    "dv365_store_resume_generation": (status, [H, PH]),
    "dv365_store_put": (status, [H, c_uint64, A, c_size]),
    "dv365_store_checkpoint": (status, [H, A, c_size]),
    "dv365_store_generation_checkpoint": (status, [H, A, c_size, P(c_size)]),
    "dv365_store_generation_info": (status, [H, P(c_uint64), P(c_uint64), P(c_int64), P(c_size)]),
    "dv365_store_commit_generation": (status, [H]),
    "dv365_store_abort_generation": (status, [H]),
    "dv365_store_generation_free": (None, [H]),
    "dv365_generate_options_init": (None, [P(GenerateOptions)]),
    "dv365_generate": (status, [H, c_char_p, c_int64, H, P(GenerateOptions)]),
}


def _package_dir():
    return os.path.dirname(os.path.abspath(__file__))


def _build_tree_candidates():
    """build*/lib/libdv365.so.1 in the libdv365 source trees above us."""
    found = []
    d = _package_dir()
    while True:
        if os.path.isfile(os.path.join(d, "include", "dv365.h")):
            found += glob.glob(os.path.join(d, "build*", "lib", SOVERSION_NAME))
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    found = [p for p in found if os.path.isfile(p)]
    found.sort(key=lambda p: os.path.getmtime(p), reverse=True)
    return found


def _installed_candidates():
    """The libdir recorded when meson installed this package, also under a
    DESTDIR when the package itself runs from a staging directory."""
    try:
        from . import _install  # generated by meson at install time
    except ImportError:
        return []
    out = [os.path.join(_install.LIBDIR, SOVERSION_NAME)]
    here = _package_dir()
    pkg = os.path.normpath(_install.PACKAGE_DIR)
    if here != pkg and here.endswith(pkg):
        destdir = here[: len(here) - len(pkg)]
        out.insert(0, destdir + os.path.normpath(_install.LIBDIR) + os.sep + SOVERSION_NAME)
    return [p for p in out if os.path.isfile(p)]


def find_library():
    """The path (or loader name) of the libdv365 to load; see the module doc."""
    env = os.environ.get("DV365_LIBRARY")
    if env:
        return env
    for p in _build_tree_candidates() + _installed_candidates():
        return p
    return ctypes.util.find_library("dv365") or SOVERSION_NAME


class _Missing:
    """Stands in for a function this (older) library does not export."""

    def __init__(self, name, path):
        self.name, self.path = name, path

    def __call__(self, *args):
        from ._base import Error, Status
        raise Error(Status.E_NOT_FOUND, "%s is not in %s (an older libdv365?)" % (self.name, self.path))


class Lib:
    """The loaded library: one attribute per dv365_* function."""

    def __init__(self, path):
        env = os.environ.get("DV365_LIBRARY")
        try:
            self.cdll = ctypes.CDLL(path)
        except OSError as e:
            how = "DV365_LIBRARY=%s" % env if env else "searched the build tree, the install and the loader path"
            raise ImportError("dv365: cannot load libdv365 (%s; %s): %s" % (path, how, e)) from None
        self.path = getattr(self.cdll, "_name", path)
        self.missing = []
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(self.cdll, name)
            except AttributeError:
                self.missing.append(name)
                setattr(self, name[len("dv365_"):], _Missing(name, path))
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name[len("dv365_"):], fn)


lib = Lib(find_library())
