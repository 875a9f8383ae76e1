"""GPU slots: runs at once on a multi-GPU machine spread over the GPUs, one per GPU first."""

import threading
import time

from unet_transfer.training.gpu_slots import gpu_slot, wants_a_slot


def test_runs_at_once_get_different_gpus_and_a_freed_gpu_is_taken_again(tmp_path):
    with gpu_slot(2, folder=tmp_path) as first, gpu_slot(2, folder=tmp_path) as second:
        assert {first, second} == {0, 1}
        taken = []
        waiting = threading.Thread(target=lambda: taken.append(enter_and_leave(tmp_path)))
        waiting.start()
        time.sleep(0.3)
        assert taken == []  # both GPUs busy: the third run waits
    waiting.join(timeout=5)
    assert taken in ([0], [1])


def enter_and_leave(folder):
    with gpu_slot(2, folder=folder, poll_s=0.05) as gpu:
        return gpu


def test_several_runs_per_gpu_spread_before_they_share(tmp_path):
    with gpu_slot(2, 2, tmp_path) as a, gpu_slot(2, 2, tmp_path) as b, gpu_slot(2, 2, tmp_path) as c, \
            gpu_slot(2, 2, tmp_path) as d:
        assert [a, b, c, d] == [0, 1, 0, 1]


def test_a_failed_run_frees_its_gpu(tmp_path):
    try:
        with gpu_slot(2, folder=tmp_path):
            raise RuntimeError("the run crashed")
    except RuntimeError:
        pass
    with gpu_slot(2, folder=tmp_path) as gpu:
        assert gpu == 0


def test_only_one_device_runs_on_multi_gpu_machines_choose(tmp_path):
    assert wants_a_slot("auto", 1, 4) and wants_a_slot("gpu", "1", 2)
    assert not wants_a_slot("auto", 1, 1)  # one GPU (or a cluster job that sees only its own)
    assert not wants_a_slot("cpu", 1, 4) and not wants_a_slot("gpu", 2, 4)  # CPU runs, multi-GPU runs
    with gpu_slot(1, folder=tmp_path) as gpu, gpu_slot(0, folder=tmp_path) as none:
        assert gpu is None and none is None
