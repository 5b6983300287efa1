"""weft's controller daemon (weftd), its northbound API and the `weft` command line."""
