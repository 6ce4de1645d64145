# cmd.sh: how jobs are run. Local parallel jobs by default (run.pl style); for a Slurm
# cluster, export SLURM_OPTS (e.g. "-p cpu --mem 4G") and switch the two lines below.
export train_cmd="utils/run.pl"
export decode_cmd="utils/run.pl"
# export train_cmd="utils/slurm.pl"
# export decode_cmd="utils/slurm.pl"
