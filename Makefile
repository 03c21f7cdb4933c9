# The two set-up commands (README): `make demo` runs the main job on the embedded
# default; `make test` runs the test suite against a real local Slurm cluster.
PY := .venv/bin/python

.PHONY: venv demo test cluster-up cluster-down

venv:
	@bash tools/bootstrap.sh

SFT_DEMO := sft.steps=300 sft.optim.lr=3e-3 sft.engine.micro_batch_size=32 sft.max_seq_len=256

demo: venv
	$(PY) -m m2rl.launch -m stage=sft domain=multi $(SFT_DEMO) $(ARGS)  # RL starts from SFT, as in the study
	$(PY) -m m2rl.launch -m domain=math,code,science,if grpo.init_from=sft/multi $(ARGS)
	$(PY) -m m2rl.launch -m domain=multi grpo.steps=16 grpo.init_from=sft/multi $(ARGS)  # the mixed arm: 2x a domain's steps, as in the study
	$(PY) -m m2rl.launch -m stage=eval eval.model=all $(ARGS)  # base + every export, one engine
	$(PY) -m m2rl.report runs/default

cluster-up:  # the tests' cluster: three simulated nodes on this machine
	@bash slurm/cluster.sh up --nodes 3

cluster-down:
	@bash slurm/cluster.sh down

test: venv cluster-up
	$(PY) -m pytest $(ARGS)
