# local/first_pass.sh (sourced by run.sh and local/lora_slu.sh): the decode options of a
# first pass.
# first_pass_opts MODEL LM EXP: `speechlm decode` options for MODEL, a catalogue Whisper model
# (${nbest}-best, beam ${nbest}), pocketsphinx (its lattice with the ARPA trigram LM,
# ${ps_nbest} paths) or espnet (local/espnet_system.sh's model and graph under EXP: a CTC
# lattice over the graph, its N-best rescored by the attention decoder); --lattice,
# --data-dir and --out are the caller's.
first_pass_opts() {
  case $1 in
    pocketsphinx) echo "--backend pocketsphinx --ps-lm $2 --nbest ${ps_nbest}" ;;
    espnet) echo "--backend espnet --model-dir $(espnet_model_dir "$3") --graph $3/espnet/graph" \
      "--config ${espnet_decode_config}" ;;
    *) echo "--backend whisper --model $1 --nbest ${nbest} --beam ${nbest}" ;;
  esac
}
