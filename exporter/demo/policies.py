"""The simulation's named policies for what AWS does not document (kept apart so the CLI needs no moto to list them).

`fifo`: a model's throughput goes to its oldest running job first, what it cannot use to the next; `shared`: evenly
among the model's running jobs. Both start Scheduled jobs in submission order (AWS: "when it reaches its turn").
"""

POLICIES = ("fifo", "shared")
