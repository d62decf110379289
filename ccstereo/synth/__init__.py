"""Synthetic binaural scenes from measured HRTFs, written in the FAIR-Play layout (``ccs-synth``)."""
