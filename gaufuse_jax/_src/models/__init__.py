"""Flax WTAL backbones behind one interface (``backbone.Backbone``): RSKP (the authors'
``model/main_branch.py``), STPN + embedding and BaS-Net; ``registry`` maps config names to them."""
