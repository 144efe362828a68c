"""``apo train`` under accelerate's FSDP2 on CPU processes (torchrun, gloo).

accelerate runs FSDP only on accelerators: for CPU processes it selects MULTI_CPU
and ignores the FSDP settings (``accelerate/state.py``). Run with the environment
``accelerate launch --config_file configs/accelerate/fsdp2.yaml`` sets
(:func:`launch_environment`), this launcher puts accelerate in its FSDP mode after
it chose MULTI_CPU; from there accelerate's own FSDP2 preparation (``fully_shard``,
its grouping of the embeddings and head), its sharded checkpoints and state-dict
gathering run as they do on GPUs, over gloo.

    torchrun --nproc_per_node 2 tests/trainer/fsdp_launch.py train CONFIG [overrides]
"""

import sys
from pathlib import Path

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

ROOT = Path(__file__).resolve().parents[2]
FSDP2_CONFIG = ROOT / "configs" / "accelerate" / "fsdp2.yaml"


def launch_environment(config: Path = FSDP2_CONFIG, processes: int = 2) -> dict[str, str]:
    """The variables ``accelerate launch --config_file CONFIG`` gives each process."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(
        ["--config_file", str(config), "--num_processes", str(processes), "train.py"]
    )
    validated = _validate_launch_command(args)
    args = validated[0] if isinstance(validated, tuple) else validated
    return {key: str(value) for key, value in prepare_multi_gpu_env(args).items()}


def _in_fsdp_mode(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # Both shared states: AcceleratorState copies PartialState's when re-created.
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        self.state.distributed_type = DistributedType.FSDP
        self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the environment

    return wrapped


if __name__ == "__main__":  # the reward workers re-import this module: only here
    accelerate.Accelerator.__init__ = _in_fsdp_mode(accelerate.Accelerator.__init__)
    from apo.cli import main

    sys.exit(main(sys.argv[1:]))
