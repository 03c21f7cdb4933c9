"""Pieces shared by the RL training stages (GRPO now; MT-OPD and the MGS arm reuse them).

    loss       advantages (GRPO's group-normalised estimator) and the token-level
               clipped policy-gradient loss with truncated importance sampling
    learner    a DeepSpeed learner taking those steps on a data-parallel shard
    metrics    per-step rewards per domain, loss statistics, time split, idle fractions
    sampler    which prompts a step trains on, as a function of the step (resumable)
"""
