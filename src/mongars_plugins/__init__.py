"""monGARS bundled plugins, each registered through the ``mongars`` entry-point group."""
