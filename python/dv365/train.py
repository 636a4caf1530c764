"""Training: the model's tables and encoder inside the DLRM backbone."""
import ctypes

import numpy as np

from ._base import (ArgumentError, DTypeError, Error, Handle, Status, array, check, fspath,
                    new_handle, nthreads_arg, ptr, u64)
from ._lib import TRAIN_PROGRESS, lib
from .model import Model, _timeline_handles


class Trainer(Handle):
    """Trains a Model in place (dv365_trainer).  Belongs to one thread;
    nobody else may use the model during a step.  Keep the model open
    while the trainer lives (Model.close() refuses otherwise)."""
    _free_fn = "trainer_free"

    def __init__(self, model, _handle=None):
        if not isinstance(model, Model):
            raise DTypeError(Status.E_INVALID, "model must be a dv365.Model")
        self.model = model
        super().__init__(_handle if _handle is not None else new_handle(lib.trainer_create, model.ptr))
        model._trainers.add(self)
        cfg = model.config
        self.tasks = [name for name, _ in cfg.tasks]
        self.num_dense = cfg.num_dense

    @classmethod
    def resume(cls, path):
        """The newest checkpoint of path (or a step directory): a Trainer
        whose .model is the checkpoint's model; it continues bitwise like
        the run that saved it."""
        m, t = ctypes.c_void_p(), ctypes.c_void_p()
        check(lib.trainer_resume(fspath(path), ctypes.byref(m), ctypes.byref(t)))
        return cls(Model(m.value), _handle=t.value)

    @property
    def steps(self):
        """Optimizer steps taken (including those before a resume)."""
        return lib.trainer_steps(self.ptr)

    def _batch(self, timelines, label_times, item_ids, dense, labels):
        tls, handles = _timeline_handles(timelines, self.model.config)
        b = len(tls)
        lt = array(label_times, np.int64, "label_times", [(b,)])
        ids = array(item_ids, np.uint64, "item_ids", [(b, 3)])
        nt, nd = len(self.tasks), self.num_dense
        if dense is None:
            if nd:
                raise ArgumentError(Status.E_MISMATCH, "dense is None but the config has %d dense features" % nd)
        else:
            dense = array(dense, np.float32, "dense", [(b, nd)])
        lab = array(labels, np.float32, "labels", [(b, nt)]) if labels is not None else None
        return b, handles, lt, ids, (dense if nd else None), lab

    def step(self, timelines, label_times, item_ids, dense, labels, nthreads=1):
        """One optimizer step on B examples: timelines (B Timelines; events
        before label_time - training.gap are used), label_times [B] int64,
        item_ids [B, 3] uint64 (media, author, topic of the candidate),
        dense [B, num_dense] float32 (None without dense features), labels
        [B, num_tasks] float32 in config task order.  Returns the batch loss."""
        b, h, lt, ids, dense, lab = self._batch(timelines, label_times, item_ids, dense, labels)
        if lab is None:
            raise ArgumentError(Status.E_INVALID, "labels are required")
        loss = ctypes.c_double()
        check(lib.trainer_step(self.ptr, b, h, ptr(lt), ptr(ids), ptr(dense), ptr(lab),
                               ctypes.byref(loss), nthreads_arg(nthreads)))
        return loss.value

    def _task(self, task):
        if isinstance(task, str):
            if task not in self.tasks:
                raise Error(Status.E_NOT_FOUND, "no task %r (tasks: %s)" % (task, ", ".join(self.tasks)))
            return self.tasks.index(task)
        return u64(task, "task")

    def task_loss(self, task):
        """Unweighted batch-mean loss of task (index or name) in the last step."""
        out = ctypes.c_double()
        check(lib.trainer_task_loss(self.ptr, self._task(task), ctypes.byref(out)))
        return out.value

    def eval_reset(self):
        lib.trainer_eval_reset(self.ptr)

    def eval_batch(self, timelines, label_times, item_ids, dense, labels, nthreads=1):
        """Accumulate metrics over B examples; returns logits [B, num_tasks]."""
        b, h, lt, ids, dense, lab = self._batch(timelines, label_times, item_ids, dense, labels)
        if lab is None:
            raise ArgumentError(Status.E_INVALID, "labels are required")
        logits = np.empty((b, len(self.tasks)), dtype=np.float32)
        check(lib.trainer_eval_batch(self.ptr, b, h, ptr(lt), ptr(ids), ptr(dense), ptr(lab), ptr(logits),
                                     nthreads_arg(nthreads)))
        return logits

    def eval_result(self, task):
        """dict(ne, auc, mse) of task (index or name) since the reset; NaN
        where a metric does not apply."""
        ne, auc, mse = ctypes.c_double(), ctypes.c_double(), ctypes.c_double()
        check(lib.trainer_eval_result(self.ptr, self._task(task), ctypes.byref(ne), ctypes.byref(auc),
                                      ctypes.byref(mse)))
        return {"ne": ne.value, "auc": auc.value, "mse": mse.value}

    def eval_results(self):
        """{task name: eval_result(task)} for every task."""
        return {name: self.eval_result(i) for i, name in enumerate(self.tasks)}

    def eval_loss(self):
        """(mean loss per example, number of examples) since the reset."""
        loss, n = ctypes.c_double(), ctypes.c_size_t()
        check(lib.trainer_eval_loss(self.ptr, ctypes.byref(loss), ctypes.byref(n)))
        return loss.value, n.value

    def train_files(self, timelines_path, examples_path, steps=0, progress=None, nthreads=1):
        """Train `steps` steps of training.batch_size examples from files (0 =
        to the end of the epoch).  progress(step, total, loss) is called
        after each step; a truthy return stops (Error E_STATE); an exception
        it raises stops the run and is re-raised here."""
        raised = []

        def cb(_ctx, step, total, loss):
            try:
                return 1 if progress(step, total, loss) else 0
            except BaseException as e:  # never let an exception unwind through C
                raised.append(e)
                return 1

        fn = TRAIN_PROGRESS(cb) if progress is not None else TRAIN_PROGRESS()
        st = lib.trainer_train_files(self.ptr, fspath(timelines_path), fspath(examples_path),
                                     u64(steps, "steps"), fn, None, nthreads_arg(nthreads))
        if raised:
            raise raised[0]
        check(st)

    def eval_files(self, timelines_path, examples_path, nthreads=1):
        """Evaluate every example of a file (resets the metrics first)."""
        check(lib.trainer_eval_files(self.ptr, fspath(timelines_path), fspath(examples_path),
                                     nthreads_arg(nthreads)))

    def save(self, path):
        """Checkpoint into path (path/step-<N>/ + path/LATEST)."""
        check(lib.trainer_save(self.ptr, fspath(path)))
