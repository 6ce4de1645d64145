# local/first_pass.sh (sourced by run.sh and local/lora_slu.sh): the decode options of a
# first pass.
# first_pass_opts MODEL LM: `speechlm decode` options for MODEL, a catalogue Whisper model
# (${nbest}-best, beam ${nbest}) or pocketsphinx (its lattice with the ARPA trigram LM,
# ${ps_nbest} paths); --lattice, --data-dir and --out are the caller's.
first_pass_opts() {
  if [ "$1" = pocketsphinx ]; then
    echo "--backend pocketsphinx --ps-lm $2 --nbest ${ps_nbest}"
  else
    echo "--backend whisper --model $1 --nbest ${nbest} --beam ${nbest}"
  fi
}
