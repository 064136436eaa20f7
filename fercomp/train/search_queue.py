"""Where a search's trials come from: one Optuna study in a storage that several workers share.

A grid search puts every combination it will train into the study's trial queue once
(`study.enqueue_trial`), and workers claim queued trials one at a time. A claim is Optuna's
storage-level compare-and-set (WAITING -> RUNNING, refused if another worker got there first; a
row update in an RDB, an appended log entry in a journal), so no combination is trained twice,
however many processes or machines pull from the study. Optuna's GridSampler alone does not
promise that under concurrency (it can hand the same grid point to two workers), which is why
the queue and not the sampler decides here. A worker stops when the queue is empty; it never
creates a trial of its own.

Storages: an SQLite file (the default, `<search>/study.db`, one machine), an RDB URL
(postgresql://..., mysql://..., several machines), or Optuna's journal file on a shared
filesystem (`journal:/shared/search.log`, or any path ending in .log / .journal).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

STUDY_NAME = "fercomp-search"
QUEUED_ATTR = "fercomp_queued"  # study user attr: the grid is in the queue (set once, under the setup lock)
WORKER_ATTR = "worker"  # trial user attr: host:pid of the worker that trained it
JOURNAL_PREFIX = "journal:"
JOURNAL_SUFFIXES = (".log", ".journal")


def default_storage_url(out: str | Path) -> str:
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def open_storage(url: str):
    """An Optuna storage from --storage: an RDB URL (sqlite:///, postgresql://, mysql://) or a journal file."""
    import optuna

    text = url.strip()
    journal = text.startswith(JOURNAL_PREFIX) or ("://" not in text and text.endswith(JOURNAL_SUFFIXES))
    try:
        if journal:
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage

            path = Path(text.removeprefix(JOURNAL_PREFIX)).expanduser().resolve()
            if not path.parent.is_dir():
                raise ConfigError(f"--storage {url}: folder {path.parent} does not exist")
            # The open(O_EXCL) lock works on NFS too, where symlink locks may not.
            return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        if "://" not in text:
            raise ConfigError(f"--storage {url}: expected an RDB URL (sqlite:///file.db, postgresql://..., "
                              f"mysql://...) or a journal file (journal:PATH or a path ending in .log)")
        if not text.startswith("sqlite"):
            return optuna.storages.RDBStorage(text)  # PostgreSQL / MySQL lock the claimed row (SELECT ... FOR UPDATE)
        # Busy SQLite: wait for the file lock instead of failing.
        storage = optuna.storages.RDBStorage(text, engine_kwargs={"connect_args": {"timeout": 60}})
        _serialize_sqlite(storage.engine)
        return storage
    except ConfigError:
        raise
    except Exception as exc:  # a driver missing, a server unreachable, a bad URL
        raise ConfigError(f"--storage {url}: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def _serialize_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock when it begins (BEGIN IMMEDIATE).

    SQLite ignores SELECT ... FOR UPDATE, and Python's sqlite3 starts transactions deferred, so two
    workers can both read a trial as WAITING and both claim it (seen in this project's concurrency
    test). SQLAlchemy's documented pysqlite recipe: let the driver emit no BEGIN of its own, and
    begin each transaction IMMEDIATE, so a claim's read and write are one serialized step.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are dropped


def enqueue_once(study, combinations: list[dict[str, Any]]) -> None:
    """Put each combination in the study's queue, once per study (the caller holds the setup lock)."""
    if study.user_attrs.get(QUEUED_ATTR):
        return
    for params in combinations:
        study.enqueue_trial(params, skip_if_exists=True)
    study.set_user_attr(QUEUED_ATTR, True)


def claim(study):
    """The next queued trial, now RUNNING and ours; None when the queue is empty.

    `set_trial_state_values(..., RUNNING)` succeeds for exactly one caller per WAITING trial; a
    worker that loses the race tries the next one.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = study._storage  # the study's own (cached) view of the storage, as Study.ask uses it
    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr(WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        return trial
    return None


def fail_dead_local_claims(study) -> list[int]:
    """Mark FAIL the RUNNING trials claimed by a worker of this machine that no longer lives
    (killed, out of memory), so a resume queues their combinations again; -> their numbers.

    A Ctrl-C or SIGTERM marks a worker's trial FAIL itself; a SIGKILL leaves it RUNNING forever.
    Claims of other machines are left alone: their workers may well be alive.
    """
    from optuna.trial import TrialState

    host = socket.gethostname()
    storage = study._storage
    study_id = storage.get_study_id_from_name(study.study_name)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drain(study, objective: Callable[[Any], float]) -> int:
    """Train queued trials until none is left; -> how many this worker finished.

    A pruned trial is told PRUNED; an interruption (Ctrl-C, SIGTERM) or an error marks the trial
    FAIL and propagates, so a resumed search queues that combination again.
    """
    import optuna
    from optuna.trial import TrialState

    done = 0
    while (trial := claim(study)) is not None:
        try:
            value = objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)
        done += 1
    return done
