"""Training on more than one process: DDP over gloo on CPU, launched by Lightning itself and by two
``torchrun`` node launchers. Each rank records what it saw (``ddp_probe.RankProbe``) and the test
compares the ranks with each other and with single-process references."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml
from conftest import ROOT, tiny_train_args
from torchmetrics.text import CHRFScore

from seq2seq import Translator
from seq2seq.data import TranslationDataModule
from seq2seq.module import CHECKPOINT_KEY

TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
QUICK_EVAL = ["--trainer.num_sanity_val_steps=0", "--model.eval_max_length=20"]


def env() -> dict[str, str]:
    """Offline, one thread per process, and ``tests`` importable (for the probe callback)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=path)


def probe(out: Path) -> str:
    return "--trainer.callbacks+=" + json.dumps(
        {"class_path": "ddp_probe.RankProbe", "init_args": {"out": str(out)}}
    )


def ranks(out: Path) -> list[dict]:
    records = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in records] == [2, 2]
    return records


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_replicas_agree(records: list[dict], checkpoint: dict) -> None:
    """Same tokenizers, identical parameters after training (which did change them), as saved."""
    first, second = records
    assert first["tokenizers"] == second["tokenizers"]
    final = first["final"]
    assert final.keys() == second["final"].keys() == checkpoint["state_dict"].keys()
    assert all(torch.equal(final[k], second["final"][k]) for k in final)
    assert all(torch.equal(final[k], checkpoint["state_dict"][k]) for k in final)
    assert all(not torch.equal(final[k], first["initial"][k]) for k in final)


def rows(record: dict) -> Counter:
    return Counter(sentence for batch in record["train"] for sentence in batch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Lightning's own launcher, map-style data ------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_workdir(tiny_checkpoint: Path) -> Path:
    return next(p for p in tiny_checkpoint.parents if (p / "cache").is_dir())


def test_ddp_on_two_cpu_processes(tmp_path: Path, tiny_workdir: Path, tiny_checkpoint: Path) -> None:
    """``--trainer.devices=2``: Lightning starts the second process itself."""
    args = tiny_train_args(
        tmp_path, f"--data.cache_dir={tiny_workdir / 'cache'}", "--trainer.strategy=ddp",
        "--trainer.devices=2", "--trainer.max_epochs=1", *QUICK_EVAL, probe(tmp_path / "probe"),
    )  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), *args],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=400,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    ckpt = load(next(tmp_path.rglob("last.ckpt")))
    assert CHECKPOINT_KEY in ckpt
    records = ranks(tmp_path / "probe")
    assert_replicas_agree(records, ckpt)
    # every rank takes half of the batches: half as many optimizer steps per epoch, no sentence twice
    with (tiny_checkpoint.parent.parent / "metrics.csv").open() as f:
        single = [r for r in csv.DictReader(f) if r["val/bleu"]]
    steps_per_epoch = int(single[0]["step"]) + 1
    assert ckpt["global_step"] == len(records[0]["train"]) == len(records[1]["train"]) == steps_per_epoch // 2
    assert not rows(records[0]) & rows(records[1])


# -- two torchrun node launchers, the default config, streaming -------------------------------------


def torchrun(node: int, port: int, args: list[str]) -> list[str]:
    """One node's launcher of a two-node job, both nodes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
            f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}", *args]  # fmt: skip


def test_two_torchrun_nodes_train_the_default_config_streaming(tmp_path: Path) -> None:
    """``torchrun --nnodes 2`` twice, as on two machines: one model, each rank its own data."""
    port = free_port()
    train = [
        str(TRAIN_SCRIPT), "fit", "--config=configs/default.yaml", "--trainer.num_nodes=2",
        "--trainer.strategy=ddp", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
        f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}/runs",
        "--data.builtin_sizes=[1600, 40, 40]", "--data.spm_vocab_size=200", "--data.max_tokens=600",
        "--data.streaming=true", f"--data.cache_dir={tmp_path}/cache", *QUICK_EVAL, probe(tmp_path / "probe"),
    ]  # fmt: skip
    logs = [(tmp_path / f"node{n}.log").open("w") for n in (0, 1)]
    nodes = [
        subprocess.Popen(
            torchrun(n, port, train), stdout=logs[n], stderr=subprocess.STDOUT, env=env(), cwd=ROOT
        )
        for n in (0, 1)
    ]
    try:
        codes = [node.wait(timeout=400) for node in nodes]
    finally:
        for node, log in zip(nodes, logs, strict=True):
            node.kill()
            log.close()
    assert codes == [0, 0], "\n".join((tmp_path / f"node{n}.log").read_text()[-3000:] for n in (0, 1))

    last = next(tmp_path.rglob("last.ckpt"))
    records = ranks(tmp_path / "probe")
    assert_replicas_agree(records, load(last))

    # the streamed training split: each rank its own sentences, as many batches each, all of them once
    config = yaml.safe_load((last.parent.parent / "config.yaml").read_text())
    dm = TranslationDataModule(**config["data"])
    train_src = [src for src, _ in dm.reader.pairs(dm.train_stream)]
    corpus = Counter(tuple(ids) for ids in dm.src_tokenizer.encode(train_src))
    assert len(records[0]["train"]) == len(records[1]["train"]) > 2
    assert not rows(records[0]) & rows(records[1])
    assert rows(records[0]) + rows(records[1]) == corpus

    # validation: each rank decodes its own half; BLEU is computed from the summed n-gram counts
    val_src, refs = dm.splits["validation"].texts_src, dm.splits["validation"].texts_tgt
    assert sorted(records[0]["val_index"] + records[1]["val_index"]) == list(range(len(refs)))
    states = [r["bleu_states"][-1] for r in records]
    merged = {k: states[0][k] + states[1][k] for k in states[0]}
    assert all(s["preds_len"] > 0 and s["target_len"] > 0 for s in states)  # both ranks decoded
    assert merged["numerator"][0] > 0  # and some words are right
    # independent reference: sacreBLEU on the same checkpoint's translations, in one process
    translator = Translator.from_checkpoint(last)
    hyps = [t.text for t in translator.translate(val_src, beam_size=1, max_length=20, max_ratio=None)]
    # validation BLEU is unsmoothed (torchmetrics' SacreBLEUScore); counts are what DDP sums
    reference = sacrebleu.corpus_bleu(hyps, [refs], tokenize="13a", smooth_method="none")
    assert merged["numerator"].tolist() == reference.counts
    assert merged["denominator"].tolist() == reference.totals
    assert (merged["preds_len"], merged["target_len"]) == (reference.sys_len, reference.ref_len)
    logged = [r["metrics"][-1] for r in records]
    assert logged[0] == logged[1]
    assert logged[0]["val/bleu"] == pytest.approx(reference.score, abs=1e-3)
    # chrF: the same metric class in one process over all sentences at once
    chrf = 100 * CHRFScore()(hyps, [[r] for r in refs])
    assert logged[0]["val/chrf"] == pytest.approx(float(chrf), abs=1e-3)

    # the run folder (rank 0 writes it): both ranks' validation outputs, in corpus order, and the
    # test after fit of the default config, which rank 0 runs alone once the others are done
    run = last.parent.parent
    newest = max((run / "hypotheses").glob("val-step*.txt"))
    assert newest.read_text(encoding="utf-8") == "".join(h + "\n" for h in hyps)
    report = json.loads((run / "test_results.json").read_text())
    assert report["sentences"] == len(dm.splits["test"]) and report["updates"] == load(last)["global_step"]
    assert sorted(report["results"]) == ["best", "last"]
    test_hyps = (run / report["results"]["last"]["hypotheses"]).read_text(encoding="utf-8")
    assert len(test_hyps.splitlines()) == len(dm.splits["test"])


# -- SLURM: two tasks as srun starts them, preempted, requeued, resumed -----------------------------


def slurm_task(task: int, port: int, bin_dir: Path) -> dict[str, str]:
    """The environment ``srun`` gives task ``task`` of a 2-node job with 1 task per node (no SLURM
    here: ``scontrol`` is a stand-in on PATH)."""
    return env() | {
        "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "seq2seq", "SLURM_NODELIST": "127.0.0.1",
        "SLURM_NNODES": "2", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": str(task), "SLURM_NODEID": str(task), "SLURM_LOCALID": "0",
        "MASTER_PORT": str(port), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
    }  # fmt: skip


def test_slurm_job_requeues_on_preemption_and_resumes(tmp_path: Path, tiny_workdir: Path) -> None:
    """SIGUSR1 (``#SBATCH --signal=SIGUSR1@90``) makes Lightning's SLURMEnvironment save
    ``hpc_ckpt_1.ckpt`` and run ``scontrol requeue``; the requeued job, the same command, resumes there."""
    bin_dir, calls, pids = tmp_path / "bin", tmp_path / "scontrol.log", tmp_path / "pids"
    bin_dir.mkdir()
    # scontrol requeue: SLURM ends the job's tasks and queues the job again
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nkill -9 $(cat {pids})\n')
    (bin_dir / "scontrol").chmod(0o755)
    args = tiny_train_args(
        tmp_path, f"--data.cache_dir={tiny_workdir / 'cache'}", "--trainer.strategy=ddp",
        "--trainer.num_nodes=2", "--trainer.max_epochs=1", *QUICK_EVAL, probe(tmp_path / "probe"),
    )  # fmt: skip
    preempt = '--trainer.callbacks+={"class_path": "ddp_probe.Preempt", "init_args": {"step": 2}}'

    def job(*extra: str) -> list[int]:
        port = free_port()
        with (tmp_path / "job.log").open("a") as log:
            tasks = [
                subprocess.Popen([sys.executable, str(TRAIN_SCRIPT), *args, *extra], stdout=log,
                                 stderr=subprocess.STDOUT, env=slurm_task(t, port, bin_dir), cwd=ROOT)
                for t in (0, 1)
            ]  # fmt: skip
            pids.write_text(" ".join(str(t.pid) for t in tasks))
            try:
                return [t.wait(timeout=400) for t in tasks]
            finally:
                for t in tasks:
                    t.kill()

    assert job(preempt) == [-9, -9], (tmp_path / "job.log").read_text()[-4000:]
    assert calls.read_text().split() == ["requeue", "4242"]  # by rank 0 only, once
    hpc = tmp_path / "hpc_ckpt_1.ckpt"
    assert load(hpc)["global_step"] == 2

    # the job script always passes --ckpt_path last: it picks the hpc checkpoint, newer than any last.ckpt
    assert job("--ckpt_path=last") == [0, 0], (tmp_path / "job.log").read_text()[-4000:]
    records = ranks(tmp_path / "probe")
    assert [r["resumed"] for r in records] == [(str(hpc), 2)] * 2
    last = load(next(tmp_path.rglob("last.ckpt")))
    assert last["global_step"] == 2 + len(records[0]["train"]) == 2 + len(records[1]["train"])
    assert_replicas_agree(records, last)
