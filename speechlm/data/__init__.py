"""Speech data: audio I/O, Kaldi data dirs, lhotse bridges, features and augmentation.

Modules (import the one you need; nothing heavy is imported here):

- :mod:`speechlm.data.audio`: ``read_audio``, ``audio_info``, ``write_wav``
- :mod:`speechlm.data.kaldi_dir`: ``KaldiDataDir``, ``read_data_dir``, ``write_data_dir``,
  ``validate_data_dir``
- :mod:`speechlm.data.lhotse_io`: ``data_dir_to_cuts``, ``cuts_to_data_dir``
- :mod:`speechlm.data.features`: ``FbankConfig``, ``compute_fbank``, ``GlobalCMVN``,
  ``compute_feats_for_data_dir``, ``merge_feats_jobs``
- :mod:`speechlm.data.perturb`: ``speed_perturb_data_dir``, ``combine_data_dirs``
"""
