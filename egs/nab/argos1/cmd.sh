# cmd.sh: how jobs are run (Kaldi style). This recipe's stages are single processes.
export train_cmd="utils/run.pl"
export decode_cmd="utils/run.pl"
