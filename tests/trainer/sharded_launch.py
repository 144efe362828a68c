"""``apo train`` under accelerate's FSDP2 or DeepSpeed on CPU processes (torchrun, gloo).

accelerate runs FSDP and DeepSpeed only on accelerators: for CPU processes it
selects MULTI_CPU and ignores their settings (``accelerate/state.py``). Run with
the environment ``accelerate launch --config_file CONFIG`` gives each process
(:func:`launch_environment`), this launcher puts accelerate in the config's mode
after it chose MULTI_CPU; from there accelerate's own preparation (FSDP2's
``fully_shard`` and its grouping of the embeddings and head; DeepSpeed's engine),
its sharded checkpoints and state-dict gathering run as they do on GPUs, over
gloo (DeepSpeed with ``DS_ACCELERATOR=cpu``).

    torchrun --nproc_per_node 2 tests/trainer/sharded_launch.py train CONFIG [overrides]
"""

import os
import sys
from pathlib import Path

import accelerate
from accelerate.state import PartialState
from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


def launch_environment(config: Path, processes: int = 2) -> dict[str, str]:
    """The variables ``accelerate launch --config_file CONFIG`` gives each process
    (the mode's own: FSDP_*, ACCELERATE_DEEPSPEED_*, ACCELERATE_USE_*), computed by
    accelerate's launch code."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    parser = launch_command_parser()
    args = parser.parse_args(
        ["--config_file", str(config), "--num_processes", str(processes), "train.py"]
    )
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:  # as accelerate's launch_command does before its DeepSpeed launcher
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    prefixes = ("FSDP_", "ACCELERATE_USE_", "ACCELERATE_DEEPSPEED_")
    return {k: str(v) for k, v in env.items() if k.startswith(prefixes)}


def _in_launched_mode(init):
    def wrapped(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true":
            mode = DistributedType.DEEPSPEED
            plugin = DeepSpeedPlugin()  # from the environment
            plugin.set_mixed_precision(self.state.mixed_precision)
            plugin.select(_from_accelerator_state=True)
            self.state.deepspeed_plugins = plugin
            self.deepspeed_engine_wrapped = None  # set in __init__ for DeepSpeed only
        else:
            mode = DistributedType.FSDP
            self.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the environment
        # Both shared states: AcceleratorState copies PartialState's when re-created.
        PartialState._shared_state["distributed_type"] = mode
        self.state.distributed_type = mode

    return wrapped


if __name__ == "__main__":  # the reward workers re-import this module: only here
    accelerate.Accelerator.__init__ = _in_launched_mode(accelerate.Accelerator.__init__)
    from apo.cli import main

    sys.exit(main(sys.argv[1:]))
