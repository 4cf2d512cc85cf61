"""Tier (a), pure (no torch): plugin/launch.py reads rank, world size, local rank and master from the
environment that torchrun, srun (one task per GPU) or mpirun sets; a missing mpi4py names the pip
install. The variable names are SLURM's and torchrun's documented ones (srun(1) "OUTPUT ENVIRONMENT
VARIABLES"; torch.distributed.run "Environment Variables")."""

import builtins

import pytest

from batchlaw.plugin.launch import detect, first_host, setup_env


def test_torchrun_variables_are_used_as_they_are():
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n7", "MASTER_PORT": "1234",
           "TORCHELASTIC_RUN_ID": "x", "SLURM_PROCID": "0", "SLURM_STEP_ID": "0", "SLURM_NTASKS": "2"}
    p = detect(env)
    assert (p.launcher, p.rank, p.world_size, p.local_rank, p.master_addr, p.master_port) == ("torchrun", 3, 4, 1, "n7", 1234)


def test_srun_one_task_per_gpu():
    env = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1",
           "SLURM_STEP_NODELIST": "gpu[003-006]", "SLURM_JOB_ID": "123456"}
    p = detect(env)
    assert (p.launcher, p.rank, p.world_size, p.local_rank, p.master_addr) == ("srun", 5, 8, 1, "gpu003")
    assert p.master_port == 10000 + 123456 % 20000  # same on every task of the step
    env |= {"MASTER_ADDR": "head", "MASTER_PORT": "4321"}  # exported by slurm/train.sbatch
    assert (detect(env).master_addr, detect(env).master_port) == ("head", 4321)
    setup_env(env)
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"]) == ("5", "8", "1")


@pytest.mark.parametrize("nodelist,first", [("n1", "n1"), ("n[1-2]", "n1"), ("gpu[003-004,9],cpu1", "gpu003"),
                                            ("a1,b[2-3]", "a1"), ("x-[07,09]", "x-07")])
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert first_host(nodelist) == first


def test_single_process_defaults():
    p = detect({})
    assert (p.launcher, p.rank, p.world_size, p.local_rank, p.master_addr) == ("single", 0, 1, 0, "127.0.0.1")
    assert 0 < p.master_port < 65536


def test_bad_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"environment SLURM_NTASKS = 'two': expected a non-negative integer"):
        detect({"SLURM_STEP_ID": "0", "SLURM_PROCID": "0", "SLURM_NTASKS": "two", "SLURM_LOCALID": "0",
                "SLURM_STEP_NODELIST": "n1", "SLURM_JOB_ID": "1"})
    with pytest.raises(ValueError, match="rank 4 / local rank 0 outside world size 4"):
        setup_env({"RANK": "4", "WORLD_SIZE": "4"})


def test_mpirun_without_mpi4py_names_the_pip_install(monkeypatch):
    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    with pytest.raises(ImportError, match="mpi4py is missing: pip install mpi4py mpich"):
        detect({"MPI_LOCALNRANKS": "2", "PMI_RANK": "0", "PMI_SIZE": "2"})


def test_rank_entry_point_reports_a_bad_environment_in_one_line(capsys, monkeypatch):
    from batchlaw.plugin.train import main

    for k in ("RANK", "WORLD_SIZE", "TORCHELASTIC_RUN_ID", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "1")
    monkeypatch.setenv("SLURM_STEP_ID", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_NTASKS", "x")
    assert main(["configs/runs/tiny-cpu.toml"]) == 2
    err = capsys.readouterr().err
    assert err == "batchlaw train: error: environment SLURM_NTASKS = 'x': expected a non-negative integer\n"


def test_port_is_derived_from_the_id_and_probed_on_when_taken(capsys):
    """One implementation of the rendezvous port (issue 13): job_port(id) in 10000-29999, below Linux's
    default ephemeral range 32768-60999 (ip(7), ip_local_port_range); a taken port is skipped, and
    `python -m batchlaw.plugin.launch --port-for ID` (what slurm/train.sbatch runs) prints the same."""
    import socket

    from batchlaw.plugin.launch import free_port, job_port, main

    assert [job_port(i) for i in (0, 1, 19999, 20000, 123456)] == [10000, 10001, 29999, 10000, 13456]
    seed = free_port(4242) - 10000  # an id whose derived port is free now (14242 or a little above)
    assert free_port(seed) == job_port(seed)
    with socket.socket() as held:
        held.bind(("", job_port(seed)))
        held.listen()
        port = free_port(seed)
        assert job_port(seed) < port <= job_port(seed) + 63
        assert main(["--port-for", str(seed)]) == 0 and capsys.readouterr().out == f"{port}\n"
    with pytest.raises(SystemExit):
        main(["--port-for", "12a"])
    assert "--port-for = '12a': expected a non-negative integer job id" in capsys.readouterr().err
