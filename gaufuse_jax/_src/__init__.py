"""Implementations; the public names are re-exported by ``gaufuse_jax``, ``gaufuse_jax.viz``
and the application modules (``gaufuse_jax.train``, ``gaufuse_jax.ablation``,
``gaufuse_jax.evaluate_run``)."""
