"""Weight sync: push a learner's current weights into running vLLM engines.

One entry: `WeightSync(method, model, fleet, ...).push(version)` puts the learners'
current weights on every engine of `fleet` (m2rl.rollout) and returns each engine's load
time. Every learner builds one (the gathers are collective); only the driver, learner 0,
has the fleet. GRPO uses it after each step; OPD and eval reuse it to load a student's or
the next model's weights into an engine that is already running.

Methods (`choose_method`):
* bytes: CPU engines, or a learner sharing its GPU with an engine. The full state dict is
  gathered on learner 0 (ZeRO-3: consolidated from every learner), serialized with
  safetensors and sent as a message to each engine (`sender.state_dict_bytes`).
* nccl: engines on GPUs of their own. Every learner walks the parameters bucket by bucket
  (ZeRO-3: gathering each bucket first) and learner 0 broadcasts each flat bucket over a
  process group it shares with every engine worker (`sender.BroadcastSender`,
  `buckets`); the workers cut the buckets back into named tensors as they load.

The engine side is `extension.EngineWeights` (what a rollout worker does with the
messages in `OPS`) and `extension.WeightSyncExtension` (what runs in vLLM's workers).
With tied input/output embeddings the output head is sent too: vLLM keeps its own head on
CPU, which would otherwise stay stale.
"""
from __future__ import annotations

METHODS = ("auto", "nccl", "bytes")
OPS = ("load_bytes", "nccl_init", "nccl_recv")  # the messages an engine answers


def choose_method(requested: str, roles: list, gpus_per_node: int, num_nodes: int, tp: int) -> str:
    """The method for this job's role plan: nccl only where no engine shares a GPU with a
    learner (NCCL refuses two ranks on one GPU)."""
    from m2rl.roles import separate_gpus

    first = roles[0]
    if first.kind == "colocated" or not first.gpus:
        return "bytes"
    separate = separate_gpus(len(roles), num_nodes, gpus_per_node, first.rollouts, tp)
    if requested == "nccl" and not separate:
        raise RuntimeError("grpo.weight_sync=nccl needs engines on GPUs of their own (NCCL refuses two ranks "
                           "on one GPU): give the job more GPUs, or use weight_sync=auto")
    if requested == "auto":
        return "nccl" if separate else "bytes"
    return requested


class WeightSync:
    """The learners' current weights onto every engine of `fleet` (None off the driver).

    For nccl, `host:port` is where learner 0 hosts the broadcast group, `engines` the
    number of engines and `tp` the GPUs (vLLM workers) of each."""

    def __init__(self, method: str, model, fleet=None, host: str = "", port: int = 0, engines: int = 0,
                 tp: int = 1, is_driver: bool = True):
        self.method, self.model, self.fleet = method, model, fleet
        if method == "nccl":
            from m2rl.weightsync.sender import BroadcastSender

            self.sender = BroadcastSender(host, port, 1 + engines * tp, is_driver)
            self.buckets = self.sender.bucket_plan(model)  # names, dtypes and shapes: fixed for the run
            if fleet is not None:
                fleet.send_all(lambda w: {"op": "nccl_init", "host": host, "port": port, "rank_offset": 1 + w * tp,
                                          "world_size": 1 + engines * tp}, "nccl_init")
                fleet.replies("nccl_init")

    def push(self, version: int) -> list[float]:
        """Send the weights as `version`; each engine's load seconds (driver), [] elsewhere.
        Collective over the learners."""
        tag = ("load", version)
        if self.method == "nccl":
            if self.fleet is not None:
                self.fleet.send_all(lambda w: {"op": "nccl_recv", "plan": self.buckets, "version": version}, tag)
            self.sender.send(self.model, self.buckets)
        else:
            from m2rl.weightsync.sender import state_dict_bytes

            blob = state_dict_bytes(self.model)
            if self.fleet is not None:
                self.fleet.send_all(lambda w: {"op": "load_bytes", "blob": blob, "version": version}, tag)
        return [r["seconds"] for r in self.fleet.replies(tag)] if self.fleet is not None else []
